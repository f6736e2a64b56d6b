# mmdet's RetinaNet with ConvViT-S as it comes: FPN's start_level=1 skips level 0 (stride 4),
# whose parameters still train through the later levels.
_base_ = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['mixedconv'], allow_failed_imports=False)
model = dict(
    backbone=dict(_delete_=True, type='ConvViT', arch='s', img_size=(800, 800),
                  out_indices=(0, 1, 2, 3), final_norm=False),
    neck=dict(in_channels=[128, 256, 384, 384]))
