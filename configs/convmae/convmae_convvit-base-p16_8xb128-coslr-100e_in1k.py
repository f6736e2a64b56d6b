# ConvMAE-B fine-tuning on ImageNet-1K. Reproduces Alpha-VL/ConvMAE FINETUNE.md (single-node
# command), main_finetune.py and util/lr_sched.py; every value with its source is in
# docs/recipes.md: 100 epochs, batch 1024 (8 x 128, last partial batch dropped), AdamW
# lr 5e-4 x 1024 / 256, wd 0.05, layer decay 0.65, drop path 0.1, RandAugment m9, mixup 0.8,
# cutmix 1.0, label smoothing 0.1, random erasing 0.25; per-iteration warmup from 0 over 5
# epochs, then cosine to 1e-6 x each layer's lr scale. Reported top-1: 85.0 (1600-ep weights).
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py',
    'mmpretrain::_base_/schedules/imagenet_bs1024_adamw_swin.py',
    'mmpretrain::_base_/default_runtime.py',
    '../_base_/imagenet_bicubic_pipelines.py',
]

custom_imports = dict(imports=['mixedconv'], allow_failed_imports=False)

# encoder checkpoint: a released ConvMAE checkpoint or tools/export_encoder.py output
pretrained = 'checkpoints/convmae_convvit-base-p16_1600e_in1k.pth'

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='ConvViT',
        arch='b',
        img_size=224,
        out_type='avg_featmap',
        drop_path_rate=0.1,
        learnable_pos_embed=True,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=None,
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=768,
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        init_cfg=[dict(type='TruncNormal', layer='Linear', std=2e-5)]),
    train_cfg=dict(augments=[dict(type='Mixup', alpha=0.8), dict(type='CutMix', alpha=1.0)]))

train_dataloader = dict(batch_size=128, drop_last=True,
                        dataset=dict(pipeline={{_base_.finetune_train_pipeline}}))
val_dataloader = dict(batch_size=128, dataset=dict(pipeline={{_base_.bicubic_test_pipeline}}))
test_dataloader = val_dataloader

# layer-wise lr decay; norms, biases and position embeddings get no weight decay
optim_wrapper = dict(
    _delete_=True,
    type='AmpOptimWrapper',
    dtype='bfloat16',
    optimizer=dict(type='AdamW', lr=2e-3, weight_decay=0.05, betas=(0.9, 0.999), eps=1e-8),
    constructor='LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=0.65))

# util/lr_sched.py: min_lr 1e-6 is applied before each group's layer-decay scale
param_scheduler = [
    dict(type='WarmupCosineLR', warmup=5, eta_min=1e-6, by_epoch=True, begin=0, end=100,
         convert_to_iter_based=True),
]

train_cfg = dict(by_epoch=True, max_epochs=100, val_interval=1)
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=3))
randomness = dict(seed=0, diff_rank_seed=True)

# stop at the first NaN / inf loss; save RNG states in checkpoints so that --resume is exact
custom_hooks = [dict(type='FiniteLossHook'), dict(type='RNGStateHook')]
# the recipe's lr is for a total batch of 1024; other totals rescale it linearly
auto_scale_lr = dict(enable=True, base_batch_size=1024)
