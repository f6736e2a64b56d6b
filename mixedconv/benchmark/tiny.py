"""Shrink the real recipes to tiny models and images, for CPU tests and the embedded benchmark.

The configs under ``configs/`` are the real recipes; :func:`shrink` rewrites only sizes
(architecture, image size, batch, iterations, workers), data roots and what a CPU cannot run
(AMP, SyncBN), so the tests and the embedded benchmark run the same components and pipelines
as a real run.
"""
import torch
from mmengine.logging import print_log

from ..families import (FAMILIES, MAE, PLAINVIT, TINY_DECODER, method_of_model_type,
                        mmpretrain_arch_of_plain)
from .recipes import adapt_backbone, adapt_heads, base_dataset, disable_amp, set_data_root

SIZE = 64  # image side, pixels (a 4x4 grid of 16-pixel patches)
ARCHS = {
    **{name: dict(family.tiny) for name, family in FAMILIES.items()},
    # mmpretrain's MAE encoder, for the MAE baseline: PlainViT's tiny sizes, its names
    'MAEViT': mmpretrain_arch_of_plain(PLAINVIT.tiny),
}
HEAD_CHANNELS = 32
COCO_CLASSES = ('rectangle', 'ellipse', 'triangle')
# the first ADE20K classes: label values 1..4 of generated label maps keep their meaning
ADE_CLASSES = ('wall', 'building', 'sky', 'floor')


def _shrink_backbone(backbone, arch=None):
    """64 px images; the tiny arch of the backbone's family, or ``arch`` (a checkpoint's,
    which must load into it)."""
    kind = backbone['type']
    backbone['img_size'] = SIZE
    if kind not in FAMILIES:  # mmpretrain's MAE encoder
        backbone['arch'] = ARCHS[kind]
        return
    arch = ARCHS[kind] if arch is None else arch
    adapt_backbone(backbone, arch)
    shrink_windows(backbone)
    if 'pyramid_norm_cfg' in backbone:
        backbone['pyramid_norm_cfg'] = dict(type='BN')


def shrink_windows(backbone):
    """Windowed attention that still has windows in a tiny model on 64 px images (a 4x4 stage-3
    grid): 2x2 windows and only the last block global, so both the windowed and the global
    blocks (and their tables) run; moving the recipe's global blocks to a depth of 2 would make
    every block global."""
    if backbone.get('window_size'):
        backbone['window_size'] = 2
        backbone['global_blocks'] = (FAMILIES[backbone['type']].depth(backbone['arch']) - 1, )
    return backbone


def no_amp_without_cuda(cfg):
    """AmpOptimWrapper needs an accelerator: on CPU train in float32 (and say so)."""
    if not torch.cuda.is_available() and disable_amp(cfg):
        print_log('no CUDA device: AmpOptimWrapper -> OptimWrapper (float32)', logger='current')


def _loader(loader, batch_size):
    loader.update(batch_size=batch_size, num_workers=0, persistent_workers=False)
    return loader


def shrink_pretrain(cfg, data_root, iters=2, batch_size=8):
    """A pretraining config (mmpretrain): tiny encoder/decoder, 64 px, ``iters`` iterations."""
    model = cfg.model
    _shrink_backbone(model.backbone)
    if model.get('neck', {}).get('type') == 'ReconstructionDecoder':
        model.neck.update(TINY_DECODER)
        if 'in_dim' in model.neck:
            model.neck.in_dim = PLAINVIT.tiny['embed_dim']
    elif method_of_model_type(model.type) is MAE:  # mmpretrain's own MAE
        model.neck.update(num_patches=(SIZE // 16) ** 2, embed_dim=PLAINVIT.tiny['embed_dim'],
                          **{f'decoder_{k}': v for k, v in TINY_DECODER.items()})
        model.head.update(norm_pix=True)
    if 'hc_hidden_dim' in model:
        model.update(hc_hidden_dim=32, hc_out_dim=16)
    set_data_root(cfg, data_root)
    dataset = base_dataset(_loader(cfg.train_dataloader, batch_size))
    dataset.update(data_prefix='train', ann_file='')
    for step in dataset.pipeline:
        if step['type'] == 'RandomResizedCrop':
            step['scale'] = SIZE
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=iters)
    _common(cfg, iters)
    return cfg


def shrink_transfer(cfg, data_root, iters=2, batch_size=2, arch=None):
    """A Mask R-CNN (mmdet) or UperNet (mmseg) transfer config: tiny backbone (or ``arch``,
    the arch of the checkpoint it loads) and heads, 64 px images from a generated dataset at
    ``data_root``, ``iters`` training iterations followed by one evaluation."""
    model = cfg.model
    _shrink_backbone(model.backbone, arch)
    adapt_heads(cfg)
    if not torch.cuda.is_available():  # SyncBN runs on CUDA only (not on gloo/CPU)
        for value in cfg.values():
            sync_bn_to_bn(value)
    if cfg.default_scope == 'mmdet':
        _shrink_detection(cfg, data_root)
    elif cfg.default_scope == 'mmseg':
        _shrink_segmentation(cfg, data_root)
    else:
        raise ValueError(f'not a transfer config (default_scope {cfg.default_scope!r})')
    _loader(cfg.train_dataloader, batch_size)
    for split in ('val_dataloader', 'test_dataloader'):
        _loader(cfg[split], 1)
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=iters, val_interval=iters)
    cfg.param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0,
                                end=iters)]
    _common(cfg, iters)
    return cfg


def sync_bn_to_bn(node):
    """Replace every ``SyncBN`` norm config under ``node`` by ``BN`` (in place): SyncBN
    needs CUDA tensors."""
    if isinstance(node, dict):
        if node.get('type') == 'SyncBN':
            node['type'] = 'BN'
        for value in node.values():
            sync_bn_to_bn(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            sync_bn_to_bn(value)


def _shrink_detection(cfg, data_root):
    model = cfg.model
    for augment in model.data_preprocessor.get('batch_augments') or []:
        augment['size'] = (SIZE, SIZE)
    if model.data_preprocessor.get('pad_size_divisor', 1) > SIZE:
        model.data_preprocessor.pad_size_divisor = SIZE
    _narrow_detection_heads(model)
    heads = model.roi_head
    heads.bbox_head.num_classes = len(COCO_CLASSES)
    heads.mask_head.num_classes = len(COCO_CLASSES)
    model.test_cfg.rcnn.score_thr = 0.0  # keep low-score boxes: a 2-step model is weak
    set_data_root(cfg, data_root)
    for split in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        dataset = base_dataset(cfg[split])
        dataset.metainfo = dict(classes=COCO_CLASSES)
        dataset.pop('filter_cfg', None)
        for step in dataset.pipeline:
            if step['type'] in ('RandomResize', 'Resize'):
                step['scale'] = (SIZE, SIZE)
            if step['type'] == 'RandomCrop':
                step['crop_size'] = (SIZE, SIZE)
            if step['type'] == 'Pad' and step.get('size'):
                step['size'] = (SIZE, SIZE)
    if cfg.train_dataloader.dataset.type == 'RepeatDataset':
        cfg.train_dataloader.dataset.times = 1


def _narrow_detection_heads(model, width=HEAD_CHANNELS):
    """The recipe's 256-channel neck, RPN and RoI heads and 512 sampled RoIs per image
    narrowed to ``width`` channels and 64 RoIs: about 20x faster CPU iterations with the
    same components."""
    model.neck.out_channels = width
    model.rpn_head.update(in_channels=width, feat_channels=width)
    heads = model.roi_head
    heads.bbox_roi_extractor.out_channels = width
    heads.mask_roi_extractor.out_channels = width
    heads.bbox_head.update(in_channels=width, conv_out_channels=width, fc_out_channels=2 * width)
    heads.mask_head.update(in_channels=width, conv_out_channels=width)
    model.train_cfg.rpn.sampler.num = 64
    model.train_cfg.rcnn.sampler.num = 64


def _shrink_segmentation(cfg, data_root):
    model = cfg.model
    crop = (SIZE, SIZE)
    model.data_preprocessor.size = crop
    for head in (model.decode_head, model.auxiliary_head):
        head.update(norm_cfg=dict(type='BN', requires_grad=True), channels=HEAD_CHANNELS,
                    num_classes=len(ADE_CLASSES))
    model.test_cfg = dict(mode='slide', crop_size=crop, stride=(SIZE * 2 // 3,) * 2)
    set_data_root(cfg, data_root)
    for split in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        dataset = base_dataset(cfg[split])
        dataset.metainfo = dict(classes=ADE_CLASSES)
        for step in dataset.pipeline:
            if step['type'] in ('RandomResize', 'Resize'):
                step['scale'] = (SIZE * 4, SIZE)
            if step['type'] == 'RandomCrop':
                step['crop_size'] = crop


def _common(cfg, iters):
    no_amp_without_cuda(cfg)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=max(1, iters // 5),
                                    log_metric_by_epoch=False)  # evaluations logged by iter
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=iters, by_epoch=False)
    cfg.log_processor = dict(cfg.get('log_processor') or {}, by_epoch=False)  # "Iter(train)"
    cfg.pop('auto_scale_lr', None)
    cfg.randomness = dict(seed=0)
