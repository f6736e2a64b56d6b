# MAE ViT-B/16 baseline (He et al. 2022) through mmpretrain's own MAE implementation, with the
# recipe of facebookresearch/mae main_pretrain.py (1600 epochs, batch 4096, lr
# 1.5e-4 x 4096 / 256), so that MAE, ConvMAE and MixedAE are pretrained and transferred under
# one protocol; every value with its source is in docs/recipes.md. Changes to mmpretrain's
# config: bf16 AMP; the same unlabelled ImageNet train folder as the other pretraining configs;
# the last partial batch dropped; weight decay on the class and mask tokens (timm's
# add_weight_decay exempts only 1-D parameters and biases); per-iteration warmup from 0 (the
# official util/lr_sched.py).
_base_ = 'mmpretrain::mae/mae_vit-base-p16_8xb512-amp-coslr-1600e_in1k.py'

custom_imports = dict(imports=['mixedconv'], allow_failed_imports=False)

train_pipeline = [
    dict(type='CheckedLoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=224, crop_ratio_range=(0.2, 1.0), backend='pillow',
         interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackInputs'),
]
# restated without the `_scope_` key the cross-package base adds (default_collate rejects it)
train_dataloader = dict(
    drop_last=True,
    collate_fn=dict(_delete_=True, type='default_collate'),
    dataset=dict(_delete_=True, type='CustomDataset', data_root='data/imagenet',
                 data_prefix='train', with_label=False, pipeline=train_pipeline))

# main_pretrain.py: timm add_weight_decay, no decay for 1-D parameters (every one is a norm
# weight or a bias) and biases; the position embeddings are fixed (no gradient)
optim_wrapper = dict(type='AmpOptimWrapper', dtype='bfloat16',
                     paramwise_cfg=dict(_delete_=True, norm_decay_mult=0.0, bias_decay_mult=0.0))
param_scheduler = [
    dict(type='WarmupCosineLR', warmup=40, eta_min=0.0, by_epoch=True, begin=0, end=1600,
         convert_to_iter_based=True),
]

# stop at the first NaN / inf loss; save RNG states in checkpoints so that --resume is exact
custom_hooks = [dict(type='FiniteLossHook'), dict(type='RNGStateHook')]
# mmpretrain's recipe is for a total batch of 4096; other totals rescale the lr linearly
auto_scale_lr = dict(enable=True)
