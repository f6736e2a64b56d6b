# mmdet's Mask R-CNN with a ViT-Ti whose blocks 4, 6, 8, 12 are rescaled to strides 4-32.
_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['mixedconv'], allow_failed_imports=False)
model = dict(
    backbone=dict(_delete_=True, type='PlainViT', arch='tiny', img_size=(800, 800),
                  out_indices=(3, 5, 7, 11), rescale_to_pyramid=True, final_norm=False),
    neck=dict(in_channels=[192, 192, 192, 192]))
