# Shared by the Mask R-CNN transfer recipes: mmdet's Mask R-CNN + FPN and its LSJ pipeline at
# 1024 (scale 0.1-2.0, fixed-size padding), AdamW, bf16 AMP (the official runs use fp16; bf16 is
# our stated choice), trained for a number of iterations as detectron2 does (train.max_iter;
# each recipe sets it, its schedule and its evaluation / checkpoint periods). What detectron2's
# Mask R-CNN does differently from mmdet's defaults is set here (docs/recipes.md lists every
# value with its official source):
# - images resized with PIL bilinear (antialiased when downscaling), as detectron2's
#   ResizeScale / ResizeShortestEdge, not OpenCV's;
# - test: longest side 1024, padded to 1024x1024 (detectron2 LSJ test augmentation and the
#   ViTDet square pad; the official FPN backbone needs exactly 1024x1024); the predicted boxes
#   are scaled to the original image, clipped to it and the empty ones dropped, the masks
#   pasted into the clipped boxes (detectron2's detector_postprocess: ClippedFCNMaskHead);
# - box deltas decoded with dw, dh clamped from above only (detectron2's Box2BoxTransform;
#   mmdet also clamps them from below);
# - RPN assigner without a low-IoU floor and RoI assigner without low-quality matches;
# - RoI pooling in float32 with float32 boxes under AMP, as detectron2's ROIPooler (mmcv 2.1's
#   RoIAlign has no bfloat16 kernel, and bfloat16 boxes are off by up to 2 px near 1024);
# - an endless shuffled sample stream (detectron2's TrainingSampler: InfiniteSampler);
# - DDP gradients all-reduced in float16 (train.ddp.fp16_compression=True of the official
#   recipes; default_hooks.fp16_compression.enabled=False turns it off);
# - warmup from 0.001x; AdamW eps 1e-8.
# Each recipe sets the backbone, the neck's in_channels, lr / wd / layer decay, schedule,
# batch and auto_scale_lr.
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::common/lsj-100e_coco-instance.py',
]
custom_imports = dict(
    imports=['mixedconv', 'mixedconv.models.roi_extractor', 'mixedconv.models.mask_head',
             'mixedconv.models.box_coder'],
    allow_failed_imports=False)

image_size = (1024, 1024)
box_coder = dict(type='UpperClampedDeltaXYWHBBoxCoder')
model = dict(
    data_preprocessor=dict(
        pad_size_divisor=1024,
        batch_augments=[dict(type='BatchFixedSizePad', size=image_size, pad_mask=True)]),
    rpn_head=dict(anchor_generator=dict(center_offset=0.0), bbox_coder=box_coder),
    roi_head=dict(
        bbox_head=dict(bbox_coder=box_coder),
        bbox_roi_extractor=dict(type='Float32SingleRoIExtractor'),
        mask_roi_extractor=dict(type='Float32SingleRoIExtractor'),
        mask_head=dict(type='ClippedFCNMaskHead', box_rescale='per_axis')),
    train_cfg=dict(
        rpn=dict(assigner=dict(min_pos_iou=0.0)),
        rcnn=dict(assigner=dict(match_low_quality=False))))
# mmdet's LSJ pipelines, restated to load images through CheckedLoadImageFromFile (a corrupt
# image is named, with the fix, instead of failing inside the decoder) and to resize with PIL
# bilinear as detectron2's ResizeTransform (mmcv's default is OpenCV bilinear, which does not
# antialias when downscaling)
resize_backend = dict(backend='pillow', interpolation='bilinear')
train_pipeline = [
    dict(type='CheckedLoadImageFromFile', backend_args=None),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomResize', scale=image_size, ratio_range=(0.1, 2.0), keep_ratio=True,
         **resize_backend),
    dict(type='RandomCrop', crop_type='absolute_range', crop_size=image_size,
         recompute_bbox=True, allow_negative_crop=True),
    dict(type='FilterAnnotations', min_gt_bbox_wh=(1e-2, 1e-2)),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(times=1, dataset=dict(pipeline=train_pipeline)))
test_pipeline = [
    dict(type='CheckedLoadImageFromFile', backend_args=None),
    dict(type='Resize', scale=image_size, keep_ratio=True, **resize_backend),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
# iteration-based; each recipe sets max_iters, val_interval and the checkpoint interval
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop')
log_processor = dict(by_epoch=False)
default_hooks = dict(
    checkpoint=dict(by_epoch=False),
    fp16_compression=dict(type='Fp16CompressionHook'))
optim_wrapper = dict(
    _delete_=True,
    type='AmpOptimWrapper',
    dtype='bfloat16',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1),
    constructor='LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=0.8))
# each recipe sets its schedule (iteration-based, as detectron2's)
param_scheduler = None

# stop at the first NaN / inf loss; save RNG states in checkpoints so that --resume is exact
custom_hooks = [dict(type='FiniteLossHook'), dict(type='RNGStateHook')]
