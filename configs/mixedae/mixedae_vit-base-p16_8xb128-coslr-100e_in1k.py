# Fine-tuning of a MixedAE ViT-B/16 encoder on ImageNet-1K: the same protocol and PlainViT as
# the MAE baseline (../mae/mae_vit-base-p16_8xb128-coslr-100e_in1k.py), so the two compare
# directly. Segment embeddings, decoder and projection head of the checkpoint are not loaded.
_base_ = '../mae/mae_vit-base-p16_8xb128-coslr-100e_in1k.py'

pretrained = 'work_dirs/mixedae_vit-base-p16_8xb256-amp-coslr-1600e_in1k/epoch_1600.pth'

model = dict(backbone=dict(init_cfg=dict(type='Pretrained', checkpoint=pretrained)))
