# Shared by the Mask R-CNN transfer recipes: mmdet's Mask R-CNN + FPN and its LSJ pipeline at
# 1024 (scale 0.1-2.0, fixed-size padding), 25 real epochs (mmdet's base repeats the data 4
# times for its "100e"), AdamW, bf16 AMP (the official runs use fp16; bf16 is our stated
# choice). What detectron2's Mask R-CNN does differently from mmdet's defaults is set here
# (docs/recipes.md lists every value with its official source):
# - test: longest side 1024, padded to 1024x1024 (detectron2 LSJ test augmentation and the
#   ViTDet square pad; the official FPN backbone needs exactly 1024x1024);
# - RPN assigner without a low-IoU floor and RoI assigner without low-quality matches;
# - RoI pooling in float32 with float32 boxes under AMP, as detectron2's ROIPooler (mmcv 2.1's
#   RoIAlign has no bfloat16 kernel, and bfloat16 boxes are off by up to 2 px near 1024);
# - warmup from 0.001x; AdamW eps 1e-8; evaluation every epoch.
# Each recipe sets the backbone, the neck's in_channels, lr / wd / layer decay, schedule,
# batch and auto_scale_lr.
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::common/lsj-100e_coco-instance.py',
]
custom_imports = dict(imports=['mixedconv', 'mixedconv.models.roi_extractor'],
                      allow_failed_imports=False)

image_size = (1024, 1024)
model = dict(
    data_preprocessor=dict(
        pad_size_divisor=1024,
        batch_augments=[dict(type='BatchFixedSizePad', size=image_size, pad_mask=True)]),
    rpn_head=dict(anchor_generator=dict(center_offset=0.0)),
    roi_head=dict(
        bbox_roi_extractor=dict(type='Float32SingleRoIExtractor'),
        mask_roi_extractor=dict(type='Float32SingleRoIExtractor')),
    train_cfg=dict(
        rpn=dict(assigner=dict(min_pos_iou=0.0)),
        rcnn=dict(assigner=dict(match_low_quality=False))))
# mmdet's LSJ pipelines, restated to load images through CheckedLoadImageFromFile (a corrupt
# image is named, with the fix, instead of failing inside the decoder)
train_pipeline = [
    dict(type='CheckedLoadImageFromFile', backend_args=None),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomResize', scale=image_size, ratio_range=(0.1, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_type='absolute_range', crop_size=image_size,
         recompute_bbox=True, allow_negative_crop=True),
    dict(type='FilterAnnotations', min_gt_bbox_wh=(1e-2, 1e-2)),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(dataset=dict(times=1, dataset=dict(pipeline=train_pipeline)))
test_pipeline = [
    dict(type='CheckedLoadImageFromFile', backend_args=None),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
train_cfg = dict(val_interval=1)
optim_wrapper = dict(
    _delete_=True,
    type='AmpOptimWrapper',
    dtype='bfloat16',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1),
    constructor='LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=0.8))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=250),
    dict(type='MultiStepLR', begin=0, end=25, by_epoch=True, milestones=[22, 24], gamma=0.1),
]

# stop at the first NaN / inf loss; save RNG states in checkpoints so that --resume is exact
custom_hooks = [dict(type='FiniteLossHook'), dict(type='RNGStateHook')]
