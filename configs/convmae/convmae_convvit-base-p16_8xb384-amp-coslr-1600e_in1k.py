# ConvMAE-B pretraining on ImageNet-1K (Gao et al. 2022). Reproduces Alpha-VL/ConvMAE
# PRETRAIN.md (3 nodes x 8 GPUs x 128 = batch 3072, here 8 GPUs x 384) and main_pretrain.py;
# every value with its source is in docs/recipes.md: 1600 epochs, 40 warmup, AdamW
# (0.9, 0.95), wd 0.05, lr = blr 1.5e-4 x 3072 / 256, bf16 AMP (fp16 runs of this length hit
# NaN).
_base_ = ['../_base_/pretrain_in1k_adamw-coslr-1600e.py']

model = dict(
    type='ConvMAE',
    backbone=dict(type='ConvViT', arch='b', img_size=224, learnable_pos_embed=False),
    neck=dict(type='ReconstructionDecoder', embed_dim=512, depth=8, num_heads=16, mlp_ratio=4.),
    mask_ratio=0.75,
    norm_pix=True,
    skip_masked=True,
    data_preprocessor=dict(type='SelfSupDataPreprocessor', mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375], to_rgb=True))

train_dataloader = dict(batch_size=384)
# weight decay as timm's add_weight_decay (main_pretrain.py): none for 1-D parameters (norms)
# and biases, decay for everything else, the mask token included. The position embeddings are
# fixed sin-cos tables (no gradient), so their exemption changes nothing.
optim_wrapper = dict(
    optimizer=dict(lr=1.5e-4 * 3072 / 256),
    paramwise_cfg=dict(custom_keys=dict(pos_embed=dict(decay_mult=0.0))))
# the lr above is for a total batch of 3072 images; other totals rescale it linearly
auto_scale_lr = dict(enable=True, base_batch_size=3072)
