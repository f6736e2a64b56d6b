# COCO Mask R-CNN with a plain ViT-B (MixedAE, MAE or any timm-style encoder), ViTDet recipe
# (mixedae.md transfer protocol): last-block map + simple feature pyramid, window attention
# (14) with global attention in blocks 3, 6, 9, 12, relative position bias, LSJ at 1024,
# 100 epochs (25 x 4 repeats), batch 64, AdamW lr 1e-4, wd 0.1, layer decay 0.7, drop path 0.1.
# Published for MAE ViT-B: 51.6 box AP / 45.9 mask AP.
#
# Pretrained encoder: --cfg-options model.backbone.init_cfg.checkpoint=PATH
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::common/lsj-100e_coco-instance.py',
]
custom_imports = dict(imports=['mixedconv'], allow_failed_imports=False)

pretrained = 'checkpoints/mixedae_vit-b_1600e_encoder.pth'
image_size = (1024, 1024)
head_norm_cfg = dict(type='LayerNorm2d', eps=1e-6)
model = dict(
    data_preprocessor=dict(
        batch_augments=[dict(type='BatchFixedSizePad', size=image_size, pad_mask=True)]),
    backbone=dict(
        _delete_=True,
        type='PlainViT',
        arch='base',
        img_size=image_size,
        out_indices=(11, ),
        window_size=14,
        global_blocks=(2, 5, 8, 11),
        use_rel_pos=True,
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(
        _delete_=True,
        type='SimpleFeaturePyramid',
        in_channels=768,
        out_channels=256,
        scale_factors=(4.0, 2.0, 1.0, 0.5),
        norm_cfg=head_norm_cfg,
        num_outs=5),
    rpn_head=dict(num_convs=2),
    roi_head=dict(
        bbox_head=dict(
            type='Shared4Conv1FCBBoxHead', conv_out_channels=256, norm_cfg=head_norm_cfg),
        mask_head=dict(norm_cfg=head_norm_cfg)))

train_dataloader = dict(batch_size=4)
optim_wrapper = dict(
    _delete_=True,
    type='AmpOptimWrapper',
    dtype='bfloat16',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.1),
    constructor='LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=0.7))
auto_scale_lr = dict(enable=True, base_batch_size=64)
