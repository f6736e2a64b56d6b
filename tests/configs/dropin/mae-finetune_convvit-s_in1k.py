# mmpretrain's MAE fine-tuning (its own layer-decay constructor) with ConvViT-S.
_base_ = 'mmpretrain::mae/benchmarks/vit-base-p16_8xb128-coslr-100e_in1k.py'
custom_imports = dict(imports=['mixedconv'], allow_failed_imports=False)
model = dict(
    backbone=dict(_delete_=True, type='ConvViT', arch='s', img_size=224,
                  out_type='avg_featmap'),
    head=dict(in_channels=384))
