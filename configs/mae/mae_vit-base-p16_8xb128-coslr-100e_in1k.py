# Fine-tuning of an MAE ViT-B/16 encoder on ImageNet-1K with the toolkit's PlainViT (MAE
# protocol, facebookresearch/mae FINETUNE.md): 100 epochs, batch 1024 (8 x 128), AdamW lr
# 5e-4 x 1024 / 256, wd 0.05,
# layer decay 0.65, drop path 0.1, mean pooling, RandAugment, mixup 0.8, cutmix 1.0, label
# smoothing 0.1, random erasing 0.25 (mmpretrain's MAE benchmark, whose data and schedule this
# inherits). The checkpoint of mmpretrain's MAE (MAEViT names) is renamed by PlainViT on load.
_base_ = 'mmpretrain::mae/benchmarks/vit-base-p16_8xb128-coslr-100e_in1k.py'

custom_imports = dict(imports=['mixedconv'], allow_failed_imports=False)

# a pretraining checkpoint (the backbone. prefix is stripped) or an exported encoder
pretrained = 'work_dirs/mae_vit-base-p16_8xb512-amp-coslr-1600e_in1k/epoch_1600.pth'

model = dict(
    backbone=dict(
        _delete_=True,
        type='PlainViT',
        arch='base',
        img_size=224,
        patch_size=16,
        out_type='avg_featmap',
        final_norm=False,
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)))

# the base's pipelines, restated to load images through CheckedLoadImageFromFile (a corrupt
# image is named, with the fix, instead of failing inside the decoder)
train_pipeline = [
    dict(type='CheckedLoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=224, backend='pillow', interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='RandAugment', policies='timm_increasing', num_policies=2, total_level=10,
         magnitude_level=9, magnitude_std=0.5,
         hparams=dict(pad_val=[104, 116, 124], interpolation='bicubic')),
    dict(type='RandomErasing', erase_prob=0.25, mode='rand', min_area_ratio=0.02,
         max_area_ratio=1 / 3, fill_color=[103.53, 116.28, 123.675],
         fill_std=[57.375, 57.12, 58.395]),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='CheckedLoadImageFromFile'),
    dict(type='ResizeEdge', scale=256, edge='short', backend='pillow', interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

# layer-wise lr decay; norms, biases, tokens and position embeddings get no weight decay
optim_wrapper = dict(
    _delete_=True,
    type='AmpOptimWrapper',
    dtype='bfloat16',
    optimizer=dict(type='AdamW', lr=5e-4 * 1024 / 256, weight_decay=0.05, betas=(0.9, 0.999),
                   eps=1e-8),
    constructor='LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=0.65))

auto_scale_lr = dict(enable=True, base_batch_size=1024)

# stop at the first NaN / inf loss; save RNG states in checkpoints so that --resume is exact
custom_hooks = [dict(type='FiniteLossHook'), dict(type='RNGStateHook')]
