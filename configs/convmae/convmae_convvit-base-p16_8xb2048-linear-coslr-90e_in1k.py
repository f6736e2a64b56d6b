# Linear probing of ConvMAE-B on ImageNet-1K (MAE protocol: frozen encoder, mean-pooled
# stage-3 tokens, BatchNorm without affine, LARS lr 6.4 for batch 16384, 90 epochs).
# Reported top-1: 70.9 (Gao et al. 2022, table 1).
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs32_pil_resize.py',
    'mmpretrain::_base_/schedules/imagenet_bs1024_adamw_swin.py',
    'mmpretrain::_base_/default_runtime.py',
]

custom_imports = dict(imports=['mixedconv'], allow_failed_imports=False)

pretrained = 'checkpoints/convmae_convvit-base-p16_1600e_in1k.pth'

train_dataloader = dict(batch_size=2048, drop_last=True)
val_dataloader = dict(drop_last=False)
test_dataloader = dict(drop_last=False)

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='ConvViT',
        arch='b',
        img_size=224,
        out_type='avg_featmap',
        frozen_stages=2,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(type='ClsBatchNormNeck', input_features=768),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=768,
        loss=dict(type='CrossEntropyLoss'),
        init_cfg=[dict(type='TruncNormal', layer='Linear', std=0.01)]))

optim_wrapper = dict(
    _delete_=True,
    type='AmpOptimWrapper',
    dtype='bfloat16',
    optimizer=dict(type='LARS', lr=6.4, weight_decay=0.0, momentum=0.9))

param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0, end=10,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=80, by_epoch=True, begin=10, end=90, eta_min=0.0,
         convert_to_iter_based=True),
]

train_cfg = dict(by_epoch=True, max_epochs=90)
default_hooks = dict(
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=3),
    logger=dict(type='LoggerHook', interval=10))
randomness = dict(seed=0, diff_rank_seed=True)

# stop at the first NaN / inf loss; save RNG states in checkpoints so that --resume is exact
custom_hooks = [dict(type='FiniteLossHook'), dict(type='RNGStateHook')]
# the recipe's lr is for a total batch of 16384; other totals rescale it linearly
auto_scale_lr = dict(enable=True, base_batch_size=16384)
