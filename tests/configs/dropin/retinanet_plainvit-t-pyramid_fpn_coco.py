# mmdet's RetinaNet with a ViT-Ti pyramid of the three levels it reads (strides 8, 16, 32);
# FPN then starts at the first input, as mmdet's Swin RetinaNet does.
_base_ = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['mixedconv'], allow_failed_imports=False)
model = dict(
    backbone=dict(_delete_=True, type='PlainViT', arch='tiny', img_size=(800, 800),
                  out_indices=(5, 7, 11), rescale_to_pyramid=True, final_norm=False),
    neck=dict(in_channels=[192, 192, 192], start_level=0))
