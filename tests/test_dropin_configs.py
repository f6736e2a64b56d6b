"""The libraries' own configs with our backbones dropped in as a user would.

Each child config under ``tests/configs/dropin/`` holds only what a user changes in a config
shipped with mmdet, mmseg or mmpretrain: ``custom_imports``, the backbone dict, the input
channels of what reads it (and, where mmdet's own Swin configs do the same, the neck's
``start_level``; for mmseg's MAE the optimizer constructor). The test takes the place of the
user's data and schedule: generated COCO / ADE20K / image-folder data at 64 px, two training
iterations, one evaluation with the library's metric, and the family's tiny preset for the
arch (the channels of what reads the backbone follow it).
"""
import glob
import json
import math
import os.path as osp
import re

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

from mixedconv.benchmark.recipes import adapt_backbone, base_dataset, set_data_root
from mixedconv.benchmark.tiny import COCO_CLASSES, no_amp_without_cuda, sync_bn_to_bn
from mixedconv.data import make_ade20k, make_coco, make_image_folder
from mixedconv.dropin import backbone_out_channels, backbone_readers, check_config
from mixedconv.families import FAMILIES
from mixedconv.registry import MODELS

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CHILDREN = osp.join(ROOT, 'tests', 'configs', 'dropin')
CONFIGS = sorted(osp.basename(p) for p in glob.glob(osp.join(CHILDREN, '*.py')))
# image side: not a multiple of 16, so configs without a size divisor pad inside the backbone;
# classifiers take multiples of 16
SIZE = 72
CLS_SIZE = 64
# the metric each library's evaluator reports
METRICS = {'mmdet': 'coco/bbox_mAP', 'mmseg': 'mIoU', 'mmpretrain': 'accuracy/top1'}


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp('dropin_data')
    make_coco(str(root / 'coco'), num_train=4, num_val=2)
    make_ade20k(str(root / 'ade'), num_train=4, num_val=2)
    make_image_folder(str(root / 'images'), num_images=8)
    return root


def child(name):
    return Config.fromfile(osp.join(CHILDREN, name))


def tiny_backbone(model):
    """The family's tiny preset for the arch the user wrote, and the channels of the backbone's
    readers mapped from the user's arch to it (position by position)."""
    backbone = model.backbone
    family = FAMILIES[backbone.type]
    user = backbone_out_channels(backbone)
    adapt_backbone(backbone, dict(family.tiny))
    backbone.img_size = 64
    tiny = dict(zip(user, backbone_out_channels(backbone)))
    for _, reader in backbone_readers(model):
        for key in ('in_channels', 'embed_dim'):
            value = reader.get(key)
            if isinstance(value, int):
                reader[key] = tiny[value]
            elif isinstance(value, (list, tuple)):
                reader[key] = [tiny[v] for v in value]


def _small_scales(node, size):
    """Every resize / crop size of a pipeline (nested choices too) -> ``size`` px."""
    if isinstance(node, dict):
        for key in ('scale', 'crop_size'):
            if key in node:
                node[key] = size if isinstance(node[key], int) else (size, size)
        if 'scales' in node:
            node['scales'] = [(size, size)]
        for value in node.values():
            _small_scales(value, size)
    elif isinstance(node, (list, tuple)):
        for value in node:
            _small_scales(value, size)


def _set_key(node, key, value):
    """Set ``key`` to ``value`` wherever it occurs under ``node`` (in place)."""
    if isinstance(node, dict):
        for k in node:
            if k == key:
                node[k] = value
            else:
                _set_key(node[k], key, value)
    elif isinstance(node, (list, tuple)):
        for item in node:
            _set_key(item, key, value)


def small_detr(model):
    """The DETR family at CPU size: 30 queries (at 72 px the encoder has fewer tokens than
    DINO's 900) and one encoder and one decoder layer."""
    if 'num_queries' in model:
        model.num_queries = model.test_cfg.max_per_img = 30
        for part in ('encoder', 'decoder'):
            model[part].num_layers = 1


def user_data_and_schedule(cfg, data, work_dir):
    """What the user's data and schedule would set: roots, sizes, batches, 2 iterations."""
    scope = cfg.default_scope
    if scope == 'mmdet':
        set_data_root(cfg, str(data / 'coco') + '/')
        _set_key(cfg.model, 'num_classes', len(COCO_CLASSES))
        _set_key(cfg.model.test_cfg, 'score_thr', 0.0)  # a 2-step model scores low
        small_detr(cfg.model)
    elif scope == 'mmseg':
        set_data_root(cfg, str(data / 'ade'))
        cfg.model.data_preprocessor.size = (SIZE, SIZE)
        cfg.model.test_cfg = dict(mode='whole')
    for split in ('train_dataloader', 'test_dataloader'):
        loader = cfg[split]
        loader.update(batch_size=2, num_workers=0, persistent_workers=False)
        dataset = base_dataset(loader)
        _small_scales(dataset.pipeline, CLS_SIZE if scope == 'mmpretrain' else SIZE)
        if scope == 'mmdet':
            dataset.metainfo = dict(classes=COCO_CLASSES)
        elif scope == 'mmpretrain':
            loader.dataset = dict(type='CustomDataset', data_root=str(data / 'images'),
                                  pipeline=dataset.pipeline)
    if cfg.train_dataloader.dataset.type == 'RepeatDataset':
        cfg.train_dataloader.dataset.times = 1
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=2, val_interval=100)
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0,
                                end=2)]
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=2, by_epoch=False)
    cfg.log_processor = dict(by_epoch=False)
    cfg.pop('auto_scale_lr', None)
    no_amp_without_cuda(cfg)
    sync_bn_to_bn(cfg.model)
    cfg.work_dir = str(work_dir)
    return cfg


@pytest.mark.parametrize('name', CONFIGS)
def test_child_config_fits_the_library_model_at_its_arch(name):
    """The channels the child config gives its neck and heads are those of the arch it
    names (checked on the meta device, as mixedconv.train does)."""
    cfg = child(name)
    check_config(cfg)
    assert set(cfg.model.backbone) - {'_delete_'} and cfg.custom_imports.imports == ['mixedconv']


@pytest.mark.parametrize('name', CONFIGS)
def test_library_config_trains_and_evaluates(name, data, tmp_path):
    cfg = child(name)
    tiny_backbone(cfg.model)
    cfg = user_data_and_schedule(cfg, data, tmp_path / 'work')
    if cfg.model.get('pretrained'):  # mmseg's MAE config loads the encoder this way
        encoder = MODELS.build(dict(cfg.model.backbone, init_cfg=None))
        cfg.model.pretrained = str(tmp_path / 'encoder.pth')
        torch.save({'model': encoder.state_dict()}, cfg.model.pretrained)
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert runner.iter == 2
    losses = [v for k, v in runner.message_hub.log_scalars.items()
              if k.startswith('train/loss') and k.count('/') == 1]
    assert losses and all(math.isfinite(v.current()) for v in losses)
    backbone = runner.model.backbone
    assert type(backbone).__name__ == cfg.model.backbone.type
    if cfg.model.get('pretrained'):
        report = backbone.load_report
        assert report.missing == [] and len(report.matched) > 20
    metrics = runner.test()
    assert math.isfinite(metrics[METRICS[cfg.default_scope]])


def four_level_pyramid_from_start_level_1():
    """The PlainViT RetinaNet with a four-level pyramid (strides 4-32) under FPN
    start_level=1: nothing reads fpn1 (stride 4)."""
    cfg = child('retinanet_plainvit-t-pyramid_fpn_coco.py')
    cfg.model.backbone.out_indices = (3, 5, 7, 11)
    cfg.model.neck.update(in_channels=[192] * 4, start_level=1)
    return cfg


def test_head_that_skips_a_pyramid_level_fails_at_the_first_step(data, tmp_path):
    """mmdet's RetinaNet reads FPN levels from start_level=1: a four-level PlainViT pyramid
    would leave fpn1 untrained (and DDP stopped at iteration 2); the first step says so."""
    cfg = four_level_pyramid_from_start_level_1()
    tiny_backbone(cfg.model)
    runner = Runner.from_cfg(user_data_and_schedule(cfg, data, tmp_path / 'work'))
    with pytest.raises(ValueError, match=r'output 0 \(block 0, fpn1, stride 4\).*start_level=0'):
        runner.train()


def two_process_retinanet(cfg, data, tmp_path):
    """``cfg`` at the tests' size, run by tools/dist_train.sh as 2 CPU processes (gloo) with
    find_unused_parameters off; the completed process and the logged training iterations."""
    from test_distributed import dist_train
    tiny_backbone(cfg.model)
    cfg = user_data_and_schedule(cfg, data, tmp_path / 'work')
    assert not cfg.get('find_unused_parameters')
    cfg.train_dataloader.batch_size = 1  # 4 images: 2 per rank, 2 steps
    cfg.test_dataloader = cfg.test_cfg = cfg.test_evaluator = None
    config = tmp_path / 'retinanet.py'
    cfg.dump(str(config))
    out = dist_train(config, tmp_path / 'work')
    assert 'distributed backend nccl -> gloo' in out.stdout + out.stderr
    log = glob.glob(str(tmp_path / 'work' / '*' / 'vis_data' / 'scalars.json'))
    iters = [json.loads(line)['iter'] for line in open(log[0]) if '"loss"' in line] if log else []
    return out, iters


def test_two_processes_train_a_pyramid_of_the_levels_the_head_reads(data, tmp_path):
    """RetinaNet reads strides 8-32: the PlainViT pyramid builds those three branches only,
    so no parameter goes without gradient and DDP trains 2 iterations on both ranks."""
    cfg = child('retinanet_plainvit-t-pyramid_fpn_coco.py')
    out, iters = two_process_retinanet(cfg, data, tmp_path)
    assert out.returncode == 0, out.stderr[-4000:]
    assert iters == [1, 2]


def test_two_processes_stop_at_the_first_step_when_the_head_skips_a_level(data, tmp_path):
    """Both ranks stop at the first step with the backbone's error naming the unread fpn1,
    before DDP could stop at the second with its reduction error (or wait on a peer)."""
    out, iters = two_process_retinanet(four_level_pyramid_from_start_level_1(), data, tmp_path)
    assert out.returncode != 0 and iters == []
    for rank in (0, 1):
        assert re.search(rf'\[rank{rank}\]: ValueError: .*output 0 \(block 0, fpn1, stride 4\)'
                         r'.*start_level=0', out.stderr), out.stderr[-4000:]
    assert 'did not receive grad' not in out.stderr  # DDP's own error
