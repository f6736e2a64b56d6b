# COCO Mask R-CNN with ConvViT-B, multi-scale recipe of the ConvMAE paper (convmae.md sec. 4):
# stage-1/2/3 maps and a max-pooled /32 level into a standard FPN, window attention (16) in
# stage 3 with 4 global blocks, relative position bias, LSJ at 1024, 25 epochs, batch 32,
# AdamW lr 8e-5, wd 0.1. Published: 53.2 box AP / 47.1 mask AP.
# The layer decay rate (0.8) is ours: the recipe does not state one.
#
# Pretrained encoder (official release, tools/export_encoder.py output or a ConvMAE
# pretraining checkpoint): --cfg-options model.backbone.init_cfg.checkpoint=PATH
_base_ = ['../_base_/mask-rcnn_lsj-1024-25e_coco.py']

pretrained = 'checkpoints/convmae_convvit-b_1600e_encoder.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='ConvViT',
        arch='b',
        img_size=(1024, 1024),
        out_indices=(0, 1, 2, 3),
        out_level4='maxpool',
        window_size=16,
        global_blocks=(2, 5, 8, 10),
        use_rel_pos=True,
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[256, 384, 768, 768]))

train_dataloader = dict(batch_size=4)
optim_wrapper = dict(optimizer=dict(lr=8e-5))
auto_scale_lr = dict(enable=True, base_batch_size=32)
