# ADE20K UperNet with a plain ViT-B (MixedAE, MAE or any timm-style encoder). Reproduces
# open-mmlab/mmsegmentation configs/mae/mae-base_upernet_8xb2-amp-160k_ade20k-512x512.py and
# mmseg/models/backbones/mae.py; every value with its source is in docs/recipes.md.
# Published for MAE ViT-B: 48.1 mIoU.
# - features after blocks 4, 6, 8, 12 rescaled to strides 4, 8, 16, 32; the class token is
#   kept, with BEiT's class-token rows in each block's zero-initialised relative position
#   table; layer scale 1; no final norm; LayerNorm eps 1e-6; drop path 0.1;
# - crop 512, 160k iterations (poly over all iterations from 0 times a 1500-iteration warmup,
#   as mmcv 1.x ran the mmseg 0.x config behind the published 48.1: the schedule of the ConvMAE
#   recipe this inherits), batch 16, AdamW lr 1e-4, wd 0.05, layer decay 0.65 with only 1-D
#   parameters exempt from weight decay (mmseg's constructor), slide inference.
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
        window_size=0,
        rel_pos_type='bias',
        with_cls_token=True,
        final_norm=False,
        fixed_pos_embed=False,
        norm_eps=1e-6,
        qkv_bias=True,
        layer_scale_init=1.0,
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[768, 768, 768, 768]),
    auxiliary_head=dict(in_channels=768))
optim_wrapper = dict(paramwise_cfg=dict(layer_decay_rate=0.65, no_decay_names=()))
