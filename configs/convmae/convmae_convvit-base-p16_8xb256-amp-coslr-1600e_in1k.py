# ConvMAE-B pretraining on ImageNet-1K (Gao et al. 2022; Alpha-VL/ConvMAE PRETRAIN.md): 1600 epochs,
# 40 warmup, effective batch 2048 (8 GPUs x 256), AdamW (0.9, 0.95), wd 0.05,
# lr 1.5e-4 x 2048 / 256, bf16 AMP (fp16 runs of this length hit NaN).
_base_ = ['../_base_/pretrain_in1k_adamw-coslr-1600e.py']

model = dict(
    type='ConvMAE',
    backbone=dict(type='ConvViT', arch='b', img_size=224),
    neck=dict(type='ReconstructionDecoder', embed_dim=512, depth=8, num_heads=16, mlp_ratio=4.),
    mask_ratio=0.75,
    norm_pix=True,
    skip_masked=True,
    data_preprocessor=dict(type='SelfSupDataPreprocessor', mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375], to_rgb=True))

# no weight decay on norms, biases, the mask token and position embeddings
optim_wrapper = dict(paramwise_cfg=dict(
    custom_keys=dict(mask_token=dict(decay_mult=0.0), pos_embed=dict(decay_mult=0.0))))
