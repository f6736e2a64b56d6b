# COCO Mask R-CNN with ConvViT-B, multi-scale recipe of the ConvMAE paper (convmae.md sec. 4):
# stage-1/2/3 maps and a max-pooled /32 level into a standard FPN, window attention (16) in
# stage 3 with 4 global blocks, relative position bias, LSJ at 1024, 25 epochs, batch 32,
# AdamW lr 8e-5, wd 0.1. Published: 53.2 box AP / 47.1 mask AP.
# The layer decay rate (0.8) is ours: the recipe does not state one.
#
# Pretrained encoder (official release, tools/export_encoder.py output or a ConvMAE
# pretraining checkpoint): --cfg-options model.backbone.init_cfg.checkpoint=PATH
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::common/lsj-100e_coco-instance.py',
]
custom_imports = dict(imports=['mixedconv'], allow_failed_imports=False)

pretrained = 'checkpoints/convmae_convvit-b_1600e_encoder.pth'
image_size = (1024, 1024)
model = dict(
    data_preprocessor=dict(
        batch_augments=[dict(type='BatchFixedSizePad', size=image_size, pad_mask=True)]),
    backbone=dict(
        _delete_=True,
        type='ConvViT',
        arch='b',
        img_size=image_size,
        out_indices=(0, 1, 2, 3),
        out_level4='maxpool',
        window_size=16,
        global_blocks=(2, 5, 8, 10),
        use_rel_pos=True,
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[256, 384, 768, 768]))

# real 25 epochs (the base config repeats the data 4 times for its "100e")
train_dataloader = dict(batch_size=4, dataset=dict(times=1))
optim_wrapper = dict(
    _delete_=True,
    type='AmpOptimWrapper',
    dtype='bfloat16',
    optimizer=dict(type='AdamW', lr=8e-5, betas=(0.9, 0.999), weight_decay=0.1),
    constructor='LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=0.8))
auto_scale_lr = dict(enable=True, base_batch_size=32)
