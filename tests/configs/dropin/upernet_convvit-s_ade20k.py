# mmseg's UperNet with ConvViT-S; the base model's ResNet weights (model.pretrained) go.
_base_ = 'mmseg::upernet/upernet_r50_4xb4-80k_ade20k-512x512.py'
custom_imports = dict(imports=['mixedconv'], allow_failed_imports=False)
model = dict(
    pretrained=None,
    backbone=dict(_delete_=True, type='ConvViT', arch='s', img_size=(512, 512),
                  out_indices=(0, 1, 2, 3), final_norm=False),
    decode_head=dict(in_channels=[128, 256, 384, 384]),
    auxiliary_head=dict(in_channels=384))
