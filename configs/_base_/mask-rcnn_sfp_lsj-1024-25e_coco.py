# ViTDet-style Mask R-CNN (Li et al. 2022; detectron2 configs/common/models/mask_rcnn_vitdet.py):
# one stride-16 backbone map, a simple feature pyramid (scales 4, 2, 1, 0.5, plus a pooled
# level for the RPN), two RPN convs, 4conv1fc box head and LayerNorm in the pyramid and the
# RoI heads. Schedule of the ViTDet recipes: 184375 iterations with steps at 163889 and 177546
# (x0.1), warmup 250 iterations from 0.001 (projects/ViTDet/configs/COCO/*_100ep.py), evaluation
# and checkpoints every 5000 iterations (detectron2 configs/common/train.py); the iteration
# counts assume the recipe's total batch. Weight decay follows detectron2's
# get_default_optimizer_params(weight_decay_norm=0, overrides={'pos_embed': {'weight_decay': 0}})
# (configs/common/optim.py and the recipes' optimizer.params.overrides): biases and relative
# position tables are decayed, only the parameters of torch norm modules (the backbone's
# nn.LayerNorm; not the pyramid's and heads' LayerNorm2d, detectron2's own LN) and pos_embed
# are not.
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
# mmengine's LinearLR reaches its end factor at step end - 1: end=251 is detectron2's
# 250-iteration warmup (0.001 at iteration 0, 1.0 from iteration 250)
max_iters = 184375
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=251),
    dict(type='MultiStepLR', begin=0, end=max_iters, by_epoch=False,
         milestones=[163889, 177546], gamma=0.1),
]
train_cfg = dict(max_iters=max_iters, val_interval=5000)
default_hooks = dict(checkpoint=dict(interval=5000))
optim_wrapper = dict(paramwise_cfg=dict(
    decay_rule='detectron2', weight_decay_norm=0.0,
    overrides=dict(pos_embed=dict(weight_decay=0.0))))
