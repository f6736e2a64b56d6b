# ADE20K UperNet with ConvViT-B. Reproduces Alpha-VL/ConvMAE
# SEG/configs/convmae/upernet_convmae_base_512_slide_160k_ade20k.py, SEG/backbone/convmae.py and
# SEG/mmcv_custom/layer_decay_optimizer_constructor.py; every value with its source is in
# docs/recipes.md. Published: 51.7 mIoU.
# - [stage-1 256, stage-2 384, stage-3 768, /32 level 768] into UperNet (768 channels),
#   auxiliary FCN head on level 2; the /32 level is the official conv3x3 stride 2 with
#   padding 0 + SyncBN + GELU (15x15 at 512); all stage-3 blocks global with a relative
#   position table each, layer scale 1, LayerNorm eps 1e-5, no final norm, trained position
#   embedding; drop path 0.2;
# - crop 512, 160k iterations, batch 16, AdamW lr 1e-4, wd 0.05, layer decay 0.75; the
#   official constructor exempts only 1-D parameters from weight decay (its 'pos_embed' test
#   compares against the prefixed name and never matches), hence no_decay_names=(); poly
#   decay over all 160k iterations from iteration 0, multiplied by the 1500-iteration warmup
#   (mmcv's warmup); slide inference.
#
# Pretrained encoder: --cfg-options model.backbone.init_cfg.checkpoint=PATH
_base_ = [
    'mmseg::_base_/models/upernet_r50.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_160k.py',
]
custom_imports = dict(imports=['mixedconv'], allow_failed_imports=False)

pretrained = 'checkpoints/convmae_convvit-b_1600e_encoder.pth'
crop_size = (512, 512)
model = dict(
    data_preprocessor=dict(size=crop_size),
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='ConvViT',
        arch='b',
        img_size=crop_size,
        out_indices=(0, 1, 2, 3),
        out_level4='conv',
        level4_cfg=dict(padding=0, norm_cfg=dict(type='SyncBN'), act_cfg=dict(type='GELU')),
        window_size=0,
        rel_pos_type='bias',
        final_norm=False,
        learnable_pos_embed=True,
        norm_eps=1e-5,
        layer_scale_init=1.0,
        drop_path_rate=0.2,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[256, 384, 768, 768], channels=768, num_classes=150),
    auxiliary_head=dict(in_channels=768, in_index=2, num_classes=150),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(341, 341)))

optim_wrapper = dict(
    _delete_=True,
    type='AmpOptimWrapper',
    dtype='bfloat16',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05),
    constructor='LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=0.75, no_decay_names=()))
# mmcv 1.x (the official runs): lr = base x (1 - iter / 160000) x warmup, the warmup rising
# linearly from 1e-6 to 1 at iteration 1500. mmengine's LinearLR and PolyLR reach their end
# values at step end - 1, hence end=1501 and end=160001 (never reached) for those formulas.
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1501),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=0, end=160001, by_epoch=False),
]
# mmseg's ADE20K pipelines, restated to load images through CheckedLoadImageFromFile (a
# corrupt image is named, with the fix, instead of failing inside the decoder)
train_pipeline = [
    dict(type='CheckedLoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=(2048, 512), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='CheckedLoadImageFromFile'),
    dict(type='Resize', scale=(2048, 512), keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(batch_size=2, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(batch_size=1, dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
auto_scale_lr = dict(enable=True, base_batch_size=16)

# stop at the first NaN / inf loss; save RNG states in checkpoints so that --resume is exact
custom_hooks = [dict(type='FiniteLossHook'), dict(type='RNGStateHook')]
