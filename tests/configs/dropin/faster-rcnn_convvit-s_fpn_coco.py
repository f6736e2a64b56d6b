# mmdet's Faster R-CNN with ConvViT-S: the four levels (strides 4-32) into FPN.
_base_ = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['mixedconv'], allow_failed_imports=False)
model = dict(
    backbone=dict(_delete_=True, type='ConvViT', arch='s', img_size=(800, 800),
                  out_indices=(0, 1, 2, 3), final_norm=False),
    neck=dict(in_channels=[128, 256, 384, 384]))
