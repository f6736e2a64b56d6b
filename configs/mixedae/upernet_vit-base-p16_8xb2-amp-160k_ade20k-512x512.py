# ADE20K UperNet with a plain ViT-B (MixedAE, MAE or any timm-style encoder), MAE protocol
# (mixedae.md): features after blocks 4, 6, 8, 12 rescaled to strides 4, 8, 16, 32, relative
# position bias added at transfer (zero-init), layer scale 1 (as mmseg's MAE config), crop 512,
# 160k iterations, batch 16, AdamW lr 1e-4, wd 0.05, layer decay 0.65, drop path 0.1, slide
# inference. Published for MAE ViT-B: 48.1 mIoU.
#
# Pretrained encoder: --cfg-options model.backbone.init_cfg.checkpoint=PATH
_base_ = ['../convmae/upernet_convvit-base-p16_8xb2-amp-160k_ade20k-512x512.py']

pretrained = 'checkpoints/mixedae_vit-b_1600e_encoder.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='PlainViT',
        arch='base',
        img_size=(512, 512),
        out_indices=(3, 5, 7, 11),
        rescale_to_pyramid=True,
        pyramid_norm_cfg=dict(type='SyncBN', requires_grad=True),
        use_rel_pos=True,
        layer_scale_init=1.0,
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[768, 768, 768, 768]),
    auxiliary_head=dict(in_channels=768))
optim_wrapper = dict(paramwise_cfg=dict(layer_decay_rate=0.65))
