# Shared by the ConvMAE and MixedAE pretraining recipes (MAE's, He et al. 2022; facebookresearch/
# mae main_pretrain.py and util/lr_sched.py): unlabelled ImageNet-1K train folder,
# RandomResizedCrop(224, 0.2-1.0, bicubic) + flip, no colour jitter, last partial batch
# dropped, AdamW (0.9, 0.95), wd 0.05 on every parameter but the 1-D ones and biases (timm's
# add_weight_decay), lr 1.5e-4 x batch / 256 for a total batch of 2048, per-iteration warmup
# from 0 over 40 epochs then cosine to 0 at 1600, bf16 AMP (long fp16 runs of ConvMAE hit
# NaN).
_base_ = ['mmpretrain::_base_/default_runtime.py']
custom_imports = dict(imports=['mixedconv'], allow_failed_imports=False)

data_root = 'data/imagenet'
train_pipeline = [
    # names an unreadable image (skip_corrupt=True: skip it with a warning instead)
    dict(type='CheckedLoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=224, crop_ratio_range=(0.2, 1.0), backend='pillow',
         interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=256,
    num_workers=8,
    persistent_workers=True,
    drop_last=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='CustomDataset', data_root=data_root, data_prefix='train',
                 with_label=False, pipeline=train_pipeline))

optim_wrapper = dict(
    type='AmpOptimWrapper',
    dtype='bfloat16',
    optimizer=dict(type='AdamW', lr=1.5e-4 * 2048 / 256, betas=(0.9, 0.95), weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0))
param_scheduler = [
    dict(type='WarmupCosineLR', warmup=40, eta_min=0.0, by_epoch=True, begin=0, end=1600,
         convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=1600)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=100),
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=3))
randomness = dict(seed=0, diff_rank_seed=True)
# the lr above is for a total batch of 2048 images; other totals rescale it linearly
auto_scale_lr = dict(enable=True, base_batch_size=2048)

# stop at the first NaN / inf loss; save RNG states in checkpoints so that --resume is exact
custom_hooks = [dict(type='FiniteLossHook'), dict(type='RNGStateHook')]
