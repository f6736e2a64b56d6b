# mmpretrain's ViT classifier with PlainViT's class token.
_base_ = 'mmpretrain::vision_transformer/vit-base-p16_64xb64_in1k.py'
custom_imports = dict(imports=['mixedconv'], allow_failed_imports=False)
model = dict(
    backbone=dict(_delete_=True, type='PlainViT', arch='tiny', img_size=224,
                  out_type='cls_token'),
    head=dict(in_channels=192))
