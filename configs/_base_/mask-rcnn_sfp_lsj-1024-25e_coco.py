# ViTDet-style Mask R-CNN (Li et al. 2022): one stride-16 backbone map, a simple feature
# pyramid (scales 4, 2, 1, 0.5, plus a pooled level for the RPN), two RPN convs, 4conv1fc box
# head and LayerNorm in the pyramid and the RoI heads.
_base_ = ['./mask-rcnn_lsj-1024-25e_coco.py']

head_norm_cfg = dict(type='LayerNorm2d', eps=1e-6)
model = dict(
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
