# COCO Mask R-CNN with ConvViT-B, ViTDet-style recipe of Official-ConvMAE-Det (convmae.md
# sec. 4): only the stage-3 map, a simple feature pyramid (scales 4, 2, 1, 0.5), window 14 with
# global attention in stage-3 blocks 1, 4, 7, 10, relative position bias, layer decay 0.8,
# lr 1e-4, wd 0.1, batch 16, 25 epochs. Published: 53.9 box AP / 47.6 mask AP.
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
        use_rel_pos=True,
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)))

train_dataloader = dict(batch_size=2)
auto_scale_lr = dict(enable=True, base_batch_size=16)
