# MixedAE ViT-B/16 pretraining, 800-epoch schedule (40 warmup epochs, then cosine).
_base_ = 'mixedae_vit-base-p16_8xb256-amp-coslr-1600e_in1k.py'

param_scheduler = [
    dict(type='WarmupCosineLR', warmup=40, eta_min=0.0, by_epoch=True, begin=0, end=800,
         convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=800)
