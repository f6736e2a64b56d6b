# MAE ViT-B under the same UperNet protocol as MixedAE (the leaderboard baseline).
# Pretrained encoder: --cfg-options model.backbone.init_cfg.checkpoint=PATH
_base_ = ['../mixedae/upernet_vit-base-p16_8xb2-amp-160k_ade20k-512x512.py']
model = dict(backbone=dict(init_cfg=dict(checkpoint='checkpoints/mae_pretrain_vit_base.pth')))
