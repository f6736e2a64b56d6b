# Linear probing of ConvMAE-B on ImageNet-1K. Reproduces Alpha-VL/ConvMAE FINETUNE.md (linear
# probing, single-node command: 8 GPUs x 512 = batch 4096), main_linprobe.py and util/lars.py;
# every value with its source is in docs/recipes.md. Reported top-1: 70.9 (Gao et al. 2022,
# table 1).
# - frozen encoder, mean-pooled stage-3 tokens, BatchNorm without affine, linear head;
# - LARS in MoCo v3's form (momentum 0.9, trust coefficient 0.001, the lr applied to the
#   momentum buffer, no trust ratio and no weight decay for the head bias), lr = blr 0.1 x 4096 /
#   256 = 1.6, wd 0, per-iteration warmup from 0 over 10 epochs then cosine to 0, 90 epochs
#   (util/lr_sched.py);
# - bicubic RandomResizedCrop(224) + flip; test: bicubic resize of the short side to 256,
#   centre crop 224.
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs32_pil_resize.py',
    'mmpretrain::_base_/schedules/imagenet_bs1024_adamw_swin.py',
    'mmpretrain::_base_/default_runtime.py',
    '../_base_/imagenet_bicubic_pipelines.py',
]

custom_imports = dict(imports=['mixedconv'], allow_failed_imports=False)

pretrained = 'checkpoints/convmae_convvit-base-p16_1600e_in1k.pth'

# torchvision interpolation=3 (PIL bicubic) in both pipelines of main_linprobe.py; its test
# pipeline is the fine-tuning one
train_pipeline = [
    dict(type='CheckedLoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=224, backend='pillow', interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
train_dataloader = dict(batch_size=512, drop_last=True, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(drop_last=False, dataset=dict(pipeline={{_base_.bicubic_test_pipeline}}))
test_dataloader = val_dataloader

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='ConvViT',
        arch='b',
        img_size=224,
        out_type='avg_featmap',
        frozen_stages=3,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(type='ClsBatchNormNeck', input_features=768),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=768,
        loss=dict(type='CrossEntropyLoss'),
        init_cfg=[dict(type='TruncNormal', layer='Linear', std=0.01)]))

optim_wrapper = dict(
    _delete_=True,
    type='AmpOptimWrapper',
    dtype='bfloat16',
    # MoCo v3's LARS as main_linprobe.py uses it: the lr multiplies the momentum buffer, and
    # parameters of at most one dimension (the head bias; the BatchNorm has no affine
    # parameters) get neither weight decay nor the trust ratio
    optimizer=dict(type='MoCoV3LARS', lr=0.1 * 4096 / 256, weight_decay=0.0, momentum=0.9,
                   trust_coefficient=0.001))

param_scheduler = [
    dict(type='WarmupCosineLR', warmup=10, eta_min=0.0, by_epoch=True, begin=0, end=90,
         convert_to_iter_based=True),
]

train_cfg = dict(by_epoch=True, max_epochs=90)
default_hooks = dict(
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=3),
    logger=dict(type='LoggerHook', interval=10))
randomness = dict(seed=0, diff_rank_seed=True)

# stop at the first NaN / inf loss; save RNG states in checkpoints so that --resume is exact
custom_hooks = [dict(type='FiniteLossHook'), dict(type='RNGStateHook')]
# the recipe's lr is for a total batch of 4096; other totals rescale it linearly
auto_scale_lr = dict(enable=True, base_batch_size=4096)
