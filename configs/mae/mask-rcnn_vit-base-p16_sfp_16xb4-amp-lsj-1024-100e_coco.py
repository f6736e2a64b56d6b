# MAE ViT-B under the same ViTDet protocol as MixedAE (the leaderboard baseline). Takes the
# official MAE release or an encoder exported from configs/mae pretraining
# (tools/export_encoder.py): --cfg-options model.backbone.init_cfg.checkpoint=PATH
_base_ = ['../mixedae/mask-rcnn_vit-base-p16_sfp_16xb4-amp-lsj-1024-100e_coco.py']
model = dict(backbone=dict(init_cfg=dict(checkpoint='checkpoints/mae_pretrain_vit_base.pth')))
