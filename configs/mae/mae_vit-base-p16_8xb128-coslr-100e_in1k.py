# Fine-tuning of an MAE ViT-B/16 encoder on ImageNet-1K with the toolkit's PlainViT. Reproduces
# facebookresearch/mae FINETUNE.md (ViT-B), main_finetune.py and util/lr_sched.py (through
# mmpretrain's MAE benchmark, whose data pipeline this inherits); every value with its source
# is in docs/recipes.md: 100 epochs, batch 1024 (8 x 128, last partial batch dropped), AdamW
# lr 5e-4 x 1024 / 256, wd 0.05, layer decay 0.65, drop path 0.1, mean pooling, RandAugment,
# mixup 0.8, cutmix 1.0, label smoothing 0.1, random erasing 0.25; per-iteration warmup from 0
# over 5 epochs, then cosine to 1e-6 x each layer's lr scale. The checkpoint of mmpretrain's
# MAE (MAEViT names) is renamed by PlainViT on load.
_base_ = [
    'mmpretrain::mae/benchmarks/vit-base-p16_8xb128-coslr-100e_in1k.py',
    '../_base_/imagenet_bicubic_pipelines.py',
]

custom_imports = dict(imports=['mixedconv'], allow_failed_imports=False)

# a pretraining checkpoint (the backbone. prefix is stripped) or an exported encoder
pretrained = 'work_dirs/mae_vit-base-p16_8xb512-amp-coslr-1600e_in1k/epoch_1600.pth'

model = dict(
    backbone=dict(
        _delete_=True,
        type='PlainViT',
        arch='base',
        img_size=224,
        patch_size=16,
        out_type='avg_featmap',
        final_norm=False,
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)))

# the base's pipelines, with images loaded through CheckedLoadImageFromFile
train_dataloader = dict(drop_last=True,
                        dataset=dict(pipeline={{_base_.finetune_train_pipeline}}))
val_dataloader = dict(dataset=dict(pipeline={{_base_.bicubic_test_pipeline}}))
test_dataloader = val_dataloader

# layer-wise lr decay; norms, biases, tokens and position embeddings get no weight decay
optim_wrapper = dict(
    _delete_=True,
    type='AmpOptimWrapper',
    dtype='bfloat16',
    optimizer=dict(type='AdamW', lr=5e-4 * 1024 / 256, weight_decay=0.05, betas=(0.9, 0.999),
                   eps=1e-8),
    constructor='LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=0.65))

# util/lr_sched.py: min_lr 1e-6 is applied before each group's layer-decay scale
param_scheduler = [
    dict(type='WarmupCosineLR', warmup=5, eta_min=1e-6, by_epoch=True, begin=0, end=100,
         convert_to_iter_based=True),
]

auto_scale_lr = dict(enable=True, base_batch_size=1024)

# stop at the first NaN / inf loss; save RNG states in checkpoints so that --resume is exact
custom_hooks = [dict(type='FiniteLossHook'), dict(type='RNGStateHook')]
