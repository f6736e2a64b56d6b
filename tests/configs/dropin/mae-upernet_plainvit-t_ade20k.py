# mmseg's MAE UperNet (Feature2Pyramid neck) with PlainViT as mmseg's MAE backbone; mmseg's
# layer-decay constructor cannot assign PlainViT's layers, ours reads the same paramwise_cfg.
_base_ = 'mmseg::mae/mae-base_upernet_8xb2-amp-160k_ade20k-512x512.py'
custom_imports = dict(imports=['mixedconv'], allow_failed_imports=False)
model = dict(
    pretrained='checkpoints/mae_vit-tiny_encoder.pth',
    backbone=dict(_delete_=True, type='PlainViT', arch='tiny', img_size=(512, 512),
                  out_indices=(3, 5, 7, 11), rel_pos_type='bias', with_cls_token=True,
                  layer_scale_init=1.0, final_norm=False),
    neck=dict(embed_dim=192),
    decode_head=dict(in_channels=[192, 192, 192, 192]),
    auxiliary_head=dict(in_channels=192))
optim_wrapper = dict(constructor='LayerDecayOptimWrapperConstructor')
