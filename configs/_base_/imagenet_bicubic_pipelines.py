# ImageNet pipelines of MAE's fine-tuning protocol (facebookresearch/mae main_finetune.py, as
# mmpretrain's MAE benchmark states it), with images loaded through CheckedLoadImageFromFile.
# Named apart from train_pipeline / test_pipeline so that a config whose other base defines
# those can use them as {{_base_.finetune_train_pipeline}} / {{_base_.bicubic_test_pipeline}}.
finetune_train_pipeline = [
    dict(type='CheckedLoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=224, backend='pillow', interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='RandAugment', policies='timm_increasing', num_policies=2, total_level=10,
         magnitude_level=9, magnitude_std=0.5,
         hparams=dict(pad_val=[104, 116, 124], interpolation='bicubic')),
    dict(type='RandomErasing', erase_prob=0.25, mode='rand', min_area_ratio=0.02,
         max_area_ratio=1 / 3, fill_color=[103.53, 116.28, 123.675],
         fill_std=[57.375, 57.12, 58.395]),
    dict(type='PackInputs'),
]
# bicubic resize of the short side to 256, centre crop 224 (torchvision interpolation=3)
bicubic_test_pipeline = [
    dict(type='CheckedLoadImageFromFile'),
    dict(type='ResizeEdge', scale=256, edge='short', backend='pillow', interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]
