# MAE ViT-B/16 baseline (He et al. 2022) through mmpretrain's own MAE implementation and
# recipe (1600 epochs, batch 4096, lr 1.5e-4 x 4096 / 256), so that MAE, ConvMAE and MixedAE
# are pretrained and transferred under one protocol. Changes: bf16 AMP, and the dataset reads
# the same unlabelled ImageNet train folder as the other pretraining configs.
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
    collate_fn=dict(_delete_=True, type='default_collate'),
    dataset=dict(_delete_=True, type='CustomDataset', data_root='data/imagenet',
                 data_prefix='train', with_label=False, pipeline=train_pipeline))

optim_wrapper = dict(type='AmpOptimWrapper', dtype='bfloat16')

# stop at the first NaN / inf loss; save RNG states in checkpoints so that --resume is exact
custom_hooks = [dict(type='FiniteLossHook'), dict(type='RNGStateHook')]
# mmpretrain's recipe is for a total batch of 4096; other totals rescale the lr linearly
auto_scale_lr = dict(enable=True)
