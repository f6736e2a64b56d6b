# COCO Mask R-CNN with ConvViT-B, ViTDet-style recipe of Official-ConvMAE-Det (convmae.md
# sec. 4): only the stage-3 map, a simple feature pyramid (scales 4, 2, 1, 0.5), window 14 with
# global attention in stage-3 blocks 1, 4, 7, 10, relative position bias, layer decay 0.8,
# lr 1e-4, batch 16, 25 epochs. Published: 53.9 box AP / 47.6 mask AP.
#
# Pretrained encoder: --cfg-options model.backbone.init_cfg.checkpoint=PATH
_base_ = ['./mask-rcnn_convvit-base-p16_fpn_8xb4-amp-lsj-1024-25e_coco.py']

head_norm_cfg = dict(type='LayerNorm2d', eps=1e-6)
model = dict(
    backbone=dict(
        out_indices=(2, ),
        window_size=14,
        global_blocks=(1, 4, 7, 10)),
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

train_dataloader = dict(batch_size=2)
optim_wrapper = dict(optimizer=dict(lr=1e-4))
auto_scale_lr = dict(enable=True, base_batch_size=16)
