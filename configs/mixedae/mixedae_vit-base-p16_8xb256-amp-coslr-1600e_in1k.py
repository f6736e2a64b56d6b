# MixedAE ViT-B/16 pretraining on ImageNet-1K (Chen et al. 2023). No official code was
# released; the recipe is MAE's (facebookresearch/mae main_pretrain.py), which the paper
# compares against: 1600 epochs, 40 warmup, batch 2048 source images (8 GPUs x 256, i.e. 64
# mixed images per GPU at mix_ratio 0.25), AdamW (0.9, 0.95), wd 0.05, lr 1.5e-4 x 2048 / 256,
# bf16 AMP, RandomResizedCrop(0.2-1.0) + flip, no colour jitter. The per-GPU batch must be a
# multiple of 1 / mix_ratio (drop_last keeps the last batch so).
_base_ = ['../_base_/pretrain_in1k_adamw-coslr-1600e.py']

# the encoder is a PlainViT (timm names) with a frozen sin-cos position embedding
model = dict(
    type='MixedAE',
    backbone=dict(type='PlainViT', arch='base', img_size=224, patch_size=16,
                  fixed_pos_embed=True),
    neck=dict(type='ReconstructionDecoder', in_dim=768, embed_dim=512, depth=8, num_heads=16,
              mlp_ratio=4., patch_size=16),
    mix_ratio=0.25,
    segment_embed='encoder',
    homologous_blocks=None,  # all encoder blocks
    hc_weight=0.1,
    hc_temperature=0.2,
    hc_hidden_dim=2048,
    hc_out_dim=256,
    norm_pix=True,
    data_preprocessor=dict(type='SelfSupDataPreprocessor', mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375], to_rgb=True))

# weight decay as MAE's main_pretrain.py (timm's add_weight_decay, the base's norm and bias
# rules): none for 1-D parameters (norms) and biases, decay for everything else, the class and
# mask tokens and the segment embeddings included. The position embedding is a fixed sin-cos
# table (no gradient).
