# mmseg's FCN with ViT-Ti maps after blocks 4, 6, 8, 12: the head reads the last, the
# auxiliary head the third.
_base_ = 'mmseg::fcn/fcn_r50-d8_4xb4-80k_ade20k-512x512.py'
custom_imports = dict(imports=['mixedconv'], allow_failed_imports=False)
model = dict(
    pretrained=None,
    backbone=dict(_delete_=True, type='PlainViT', arch='tiny', img_size=(512, 512),
                  out_indices=(3, 5, 7, 11), final_norm=False),
    decode_head=dict(in_channels=192),
    auxiliary_head=dict(in_channels=192))
