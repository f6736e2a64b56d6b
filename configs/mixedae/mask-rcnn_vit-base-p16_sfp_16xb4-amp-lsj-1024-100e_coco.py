# COCO Mask R-CNN with a plain ViT-B (MixedAE, MAE or any timm-style encoder), ViTDet recipe.
# Reproduces facebookresearch/detectron2 projects/ViTDet/configs/COCO/mask_rcnn_vitdet_b_100ep.py
# and detectron2/modeling/backbone/vit.py; every value with its source is in docs/recipes.md.
# Published for MAE ViT-B: 51.6 box AP / 45.9 mask AP.
# - last-block map + simple feature pyramid; window 14 with global attention in blocks
#   2, 5, 8, 11 (0-based); decomposed relative position per block; no class token and no final
#   norm; the 14x14 position embedding (class row dropped) is trained and interpolated at
#   every forward;
# - LSJ at 1024, 184375 iterations at batch 64 (100 epochs), AdamW lr 1e-4, wd 0.1, layer
#   decay 0.7, drop path 0.1; detectron2's weight-decay rule (biases and relative position
#   tables decayed, norm layers and pos_embed not).
#
# Pretrained encoder: --cfg-options model.backbone.init_cfg.checkpoint=PATH
_base_ = ['../_base_/mask-rcnn_sfp_lsj-1024-25e_coco.py']

pretrained = 'checkpoints/mixedae_vit-b_1600e_encoder.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='PlainViT',
        arch='base',
        img_size=(1024, 1024),
        out_indices=(11, ),
        window_size=14,
        global_blocks=(2, 5, 8, 11),
        rel_pos_type='decomposed',
        with_cls_token=False,
        final_norm=False,
        pretrain_img_size=224,
        fixed_pos_embed=False,
        norm_eps=1e-6,
        qkv_bias=True,
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)))

train_dataloader = dict(batch_size=4)
optim_wrapper = dict(paramwise_cfg=dict(layer_decay_rate=0.7))
auto_scale_lr = dict(enable=True, base_batch_size=64)
