# MixedAE ViT-B/16 pretraining, 800-epoch schedule (40 warmup epochs, then cosine).
_base_ = 'mixedae_vit-base-p16_8xb256-amp-coslr-1600e_in1k.py'

param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0, end=40,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=760, by_epoch=True, begin=40, end=800,
         convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=800)
