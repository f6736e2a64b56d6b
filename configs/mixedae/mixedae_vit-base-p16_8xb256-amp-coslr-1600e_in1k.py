# MixedAE ViT-B/16 pretraining on ImageNet-1K (Chen et al. 2023; mixedae.md): MAE's recipe,
# 1600 epochs, 40 warmup, batch 2048 source images (8 GPUs x 256, i.e. 64 mixed images per
# GPU at mix_ratio 0.25), AdamW (0.9, 0.95), wd 0.05, lr 1.5e-4 x 2048 / 256, bf16 AMP,
# RandomResizedCrop(0.2-1.0) + flip, no colour jitter.
_base_ = ['mmpretrain::_base_/default_runtime.py']

custom_imports = dict(imports=['mixedconv'], allow_failed_imports=False)

# dataset: an ImageNet train folder read without labels
data_root = 'data/imagenet'
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=224, crop_ratio_range=(0.2, 1.0), backend='pillow',
         interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackInputs'),
]
# the per-GPU batch must be a multiple of 1 / mix_ratio; drop_last keeps it so
train_dataloader = dict(
    batch_size=256,
    num_workers=8,
    persistent_workers=True,
    drop_last=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='CustomDataset', data_root=data_root, data_prefix='train',
                 with_label=False, pipeline=train_pipeline))

# model: the encoder is a PlainViT (timm names) with a frozen sin-cos position embedding
model = dict(
    type='MixedAE',
    backbone=dict(type='PlainViT', arch='base', img_size=224, patch_size=16,
                  fixed_pos_embed=True),
    neck=dict(type='ReconstructionDecoder', in_dim=768, embed_dim=512, depth=8, num_heads=16,
              mlp_ratio=4., patch_size=16),
    mix_ratio=0.25,
    segment_embed='encoder',
    homologous_blocks=None,  # all encoder blocks
    hc_weight=0.1,
    hc_temperature=0.2,
    hc_hidden_dim=2048,
    hc_out_dim=256,
    norm_pix=True,
    data_preprocessor=dict(type='SelfSupDataPreprocessor', mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375], to_rgb=True))

# optimizer: no weight decay on norms, biases, tokens, position and segment embeddings
optim_wrapper = dict(
    type='AmpOptimWrapper',
    dtype='bfloat16',
    optimizer=dict(type='AdamW', lr=1.5e-4 * 2048 / 256, betas=(0.9, 0.95), weight_decay=0.05),
    paramwise_cfg=dict(
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        custom_keys=dict(mask_token=dict(decay_mult=0.0), pos_embed=dict(decay_mult=0.0),
                         cls_token=dict(decay_mult=0.0), segment_embed=dict(decay_mult=0.0))))

param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0, end=40,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=1560, by_epoch=True, begin=40, end=1600,
         convert_to_iter_based=True),
]

train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=1600)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=100),
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=3))
randomness = dict(seed=0, diff_rank_seed=True)
# the lr above is for a total batch of 2048 images; other batch sizes rescale it with
# --auto-scale-lr
auto_scale_lr = dict(base_batch_size=2048)
