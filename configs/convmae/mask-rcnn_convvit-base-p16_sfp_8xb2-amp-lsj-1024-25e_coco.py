# COCO Mask R-CNN with ConvViT-B, ViTDet-style recipe. Reproduces OpenGVLab/Official-ConvMAE-Det
# projects/ConvMAEDet/configs/COCO/mask_rcnn_vitdet_convmae_b_25ep.py and
# projects/ConvMAEDet/modeling/convmae.py; every value with its source is in docs/recipes.md.
# Published: 53.9 box AP / 47.6 mask AP.
# - only the stage-3 map into a simple feature pyramid (scales 4, 2, 1, 0.5); window 14 with
#   global attention in stage-3 blocks 1, 4, 7, 10; ViTDet's decomposed relative position per
#   block; no final norm; the 14x14 position embedding is trained and interpolated at every
#   forward; stage-1/2 LayerNorm eps 1e-6 (the official CBlock takes the model's norm layer);
# - layer decay 0.8, lr 1e-4, wd 0.1, batch 16, 184375 iterations (25 epochs), evaluation
#   every 7500 and checkpoints every 2500 iterations; detectron2's
#   weight-decay rule (biases and relative position tables decayed, norm layers and pos_embed
#   not); the position embedding trains at the full lr: the official get_vit_lr_decay_rate
#   (projects/ConvMAEDet/modeling/convmae.py) has no case for pos_embed, which therefore gets
#   the last layer id (scale 0.8 ** 0), where our get_layer_depth puts it in layer 0.
#
# Pretrained encoder: --cfg-options model.backbone.init_cfg.checkpoint=PATH
_base_ = ['../_base_/mask-rcnn_sfp_lsj-1024-25e_coco.py']

pretrained = 'checkpoints/convmae_convvit-b_1600e_encoder.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='ConvViT',
        arch='b',
        img_size=(1024, 1024),
        out_indices=(2, ),
        window_size=14,
        global_blocks=(1, 4, 7, 10),
        rel_pos_type='decomposed',
        final_norm=False,
        pretrain_img_size=224,
        learnable_pos_embed=True,
        norm_eps=1e-6,
        cblock_norm_eps=1e-6,
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)))

optim_wrapper = dict(paramwise_cfg=dict(
    overrides=dict(pos_embed=dict(weight_decay=0.0, lr_scale=1.0))))
train_dataloader = dict(batch_size=2)
train_cfg = dict(val_interval=7500)
default_hooks = dict(checkpoint=dict(interval=2500))
auto_scale_lr = dict(enable=True, base_batch_size=16)
