# ADE20K UperNet with ConvViT-B (convmae.md sec. 5): [stage-1 256, stage-2 384, stage-3 768,
# conv3x3-s2(stage-3) 768] into UperNet (768 channels), auxiliary FCN head on level 2,
# relative position bias per block, layer scale 1, drop path 0.2, crop 512, 160k iterations,
# batch 16, AdamW lr 1e-4, wd 0.05, layer decay 0.75, slide inference. Published: 51.7 mIoU.
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
        use_rel_pos=True,
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
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    constructor='LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=0.75))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=1500, end=160000, by_epoch=False),
]
train_dataloader = dict(batch_size=2)
val_dataloader = dict(batch_size=1)
test_dataloader = val_dataloader
auto_scale_lr = dict(enable=True, base_batch_size=16)

# stop at the first NaN / inf loss; save RNG states in checkpoints so that --resume is exact
custom_hooks = [dict(type='FiniteLossHook'), dict(type='RNGStateHook')]
