# Shared by the Mask R-CNN transfer recipes: mmdet's Mask R-CNN + FPN and its LSJ pipeline at
# 1024 (scale 0.1-2.0, fixed-size padding), 25 real epochs (mmdet's base repeats the data 4
# times for its "100e"), AdamW with layer-wise lr decay, bf16 AMP. Each recipe sets the
# backbone, the neck's in_channels, lr / wd / decay rate, batch and auto_scale_lr.
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::common/lsj-100e_coco-instance.py',
]
custom_imports = dict(imports=['mixedconv'], allow_failed_imports=False)

image_size = (1024, 1024)
model = dict(
    data_preprocessor=dict(
        batch_augments=[dict(type='BatchFixedSizePad', size=image_size, pad_mask=True)]))
train_dataloader = dict(dataset=dict(times=1))
optim_wrapper = dict(
    _delete_=True,
    type='AmpOptimWrapper',
    dtype='bfloat16',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.1),
    constructor='LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=0.8))

# stop at the first NaN / inf loss; save RNG states in checkpoints so that --resume is exact
custom_hooks = [dict(type='FiniteLossHook'), dict(type='RNGStateHook')]
