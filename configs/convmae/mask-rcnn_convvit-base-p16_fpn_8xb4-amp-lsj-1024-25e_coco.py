# COCO Mask R-CNN with ConvViT-B, multi-scale FPN recipe of ConvMAE. Reproduces Alpha-VL/ConvMAE
# DET/configs/convmae/convmae_base_mask_rcnn_FPN_25ep.py (and the _100ep.py it imports) and
# DET/models/convmae.py; every value with its source is in docs/recipes.md. Published: 53.2
# box AP / 47.1 mask AP.
# - stage-1/2/3 maps and a max-pooled /32 level into an FPN with SyncBN, 2-conv RPN, 4conv1fc
#   box head and 4-conv mask head with SyncBN (detectron2 NaiveSyncBN);
# - stage 3: window 16, global attention in blocks 0, 3, 6, 10 as the official forward runs
#   them (its global_attn_index attribute (0, 4, 8, 10) is never read), one relative position
#   table for all windowed blocks and one for all global blocks, no final norm; the position
#   embedding is resized once on load and frozen;
# - AdamW lr 8e-5, no layer decay; wd 0.1 on everything but norm layers, pos_embed and the
#   relative position tables (detectron2 get_default_optimizer_params with weight_decay_norm=0
#   and those two overrides; biases decayed). mmengine's norm_decay_mult finds the same norm
#   layers here: its norm types (_BatchNorm, _InstanceNorm, GroupNorm, LayerNorm) cover every
#   norm of this model (nn.LayerNorm, SyncBatchNorm), and the one module type they add
#   (LayerNorm2d, our counterpart of detectron2's LN, which detectron2 decays) is not in it;
#   tests/test_layer_decay.py checks the groups. Batch 32, 92187 iterations (the 100-epoch
#   config's 368750 // 4), cosine over the whole run, warmup 0.5% (461 iterations) from
#   0.001; evaluation and checkpoints every 3688 iterations;
# - images padded to 1024x1024 with the raw pixel value 128 at train and test time; the test
#   boxes are then scaled by the larger of the two original / padded size ratios, clipped to
#   the original image and the empty ones dropped (the official lsj_postprocess).
#
# Pretrained encoder (official release, tools/export_encoder.py output or a ConvMAE
# pretraining checkpoint): --cfg-options model.backbone.init_cfg.checkpoint=PATH
_base_ = ['../_base_/mask-rcnn_lsj-1024-25e_coco.py']

pretrained = 'checkpoints/convmae_convvit-b_1600e_encoder.pth'
norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    backbone=dict(
        _delete_=True,
        type='ConvViT',
        arch='b',
        img_size=(1024, 1024),
        out_indices=(0, 1, 2, 3),
        out_level4='maxpool',
        window_size=16,
        global_blocks=(0, 3, 6, 10),
        rel_pos_type='shared',
        final_norm=False,
        learnable_pos_embed=False,
        norm_eps=1e-6,
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[256, 384, 768, 768], norm_cfg=norm_cfg),
    rpn_head=dict(num_convs=2),
    roi_head=dict(
        bbox_head=dict(type='Shared4Conv1FCBBoxHead', conv_out_channels=256,
                       norm_cfg=norm_cfg),
        mask_head=dict(norm_cfg=norm_cfg, box_rescale='max')))

# detectron2's FixedSizeCrop, the official LSJ crop at train and test time, pads bottom/right to
# 1024x1024 with the raw pixel value 128 (not the mean pixel that padding after normalisation
# gives), before the horizontal flip
image_size = (1024, 1024)
raw_pad = dict(type='Pad', size=image_size, pad_val=dict(img=(128, 128, 128), seg=255))
train_pipeline = [
    dict(type='CheckedLoadImageFromFile', backend_args=None),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomResize', scale=image_size, ratio_range=(0.1, 2.0), keep_ratio=True,
         **_base_.resize_backend),
    dict(type='RandomCrop', crop_type='absolute_range', crop_size=image_size,
         recompute_bbox=True, allow_negative_crop=True),
    dict(type='FilterAnnotations', min_gt_bbox_wh=(1e-2, 1e-2)),
    raw_pad,
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='CheckedLoadImageFromFile', backend_args=None),
    dict(type='Resize', scale=image_size, keep_ratio=True, **_base_.resize_backend),
    raw_pad,
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(batch_size=4, dataset=dict(dataset=dict(pipeline=train_pipeline)))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
optim_wrapper = dict(
    optimizer=dict(lr=8e-5),
    constructor='DefaultOptimWrapperConstructor',
    paramwise_cfg=dict(
        _delete_=True,
        norm_decay_mult=0.0,
        custom_keys=dict(pos_embed=dict(decay_mult=0.0),
                         relative_position_bias_table=dict(decay_mult=0.0))))
# detectron2's WarmupParamScheduler: 0.5% of 92187 = 460.9 warmup iterations (0..460) rising
# from 0.001 to the cosine's value, times a cosine over all iterations. mmengine's LinearLR
# reaches its end factor at step end - 1, so end=462 reaches 1 at iteration 461, the first
# one after detectron2's warmup.
max_iters = 92187
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=462),
    dict(type='CosineAnnealingLR', T_max=max_iters, eta_min=0.0, by_epoch=False, begin=0,
         end=max_iters),
]
train_cfg = dict(max_iters=max_iters, val_interval=3688)
default_hooks = dict(checkpoint=dict(interval=3688))
auto_scale_lr = dict(enable=True, base_batch_size=32)
