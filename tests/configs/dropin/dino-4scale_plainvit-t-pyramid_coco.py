# mmdet's DINO (no padding to a size divisor: inputs of any size) with a ViT-Ti pyramid of
# strides 8, 16, 32.
_base_ = 'mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py'
custom_imports = dict(imports=['mixedconv'], allow_failed_imports=False)
model = dict(
    backbone=dict(_delete_=True, type='PlainViT', arch='tiny', img_size=(800, 800),
                  out_indices=(5, 7, 11), rescale_to_pyramid=True, final_norm=False),
    neck=dict(in_channels=[192, 192, 192]))
