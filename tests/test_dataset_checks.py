"""The training and test tools check the datasets they are given before the first iteration:
COCO annotation files and ADE20K label maps that cannot give a meaningful result are named
with the fix, and only the paths a dataset really reads are required (mmdet's own
Mask2Former instance config, whose inherited panoptic folder CocoDataset never reads,
trains)."""
import json
import os
import os.path as osp
import shutil
import subprocess
import sys

import numpy as np
import pytest
from mmengine.config import Config
from PIL import Image

from mixedconv.benchmark.tiny import shrink_transfer
from mixedconv.data import make_ade20k, make_coco
from mixedconv.train import main as train_main

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
MASK_RCNN = 'configs/convmae/mask-rcnn_convvit-base-p16_fpn_8xb4-amp-lsj-1024-25e_coco.py'
UPERNET = 'configs/mixedae/upernet_vit-base-p16_8xb2-amp-160k_ade20k-512x512.py'


@pytest.fixture(scope='module')
def coco_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('coco')
    make_coco(str(root), num_train=2, num_val=1)
    return root


@pytest.fixture(scope='module')
def ade_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('ade')
    make_ade20k(str(root), num_train=2, num_val=1)
    return root


def _copy(root, tmp_path):
    copy = tmp_path / 'data'
    shutil.copytree(root, copy)
    return copy


def _edit_coco(root, split, edit):
    path = root / 'annotations' / f'instances_{split}.json'
    content = json.loads(path.read_text())
    edit(content)
    path.write_text(json.dumps(content))
    return path


def _config_file(recipe, data_root, tmp_path):
    """The recipe shrunk onto ``data_root``, written where the tools read it."""
    cfg = shrink_transfer(Config.fromfile(osp.join(ROOT, recipe)), str(data_root))
    cfg.model.backbone.init_cfg = None
    path = tmp_path / 'config.py'
    cfg.dump(str(path))
    return path


def _train(config, work_dir, *extra):
    return train_main([str(config), '--work-dir', str(work_dir), *extra])


def _nothing_recorded(work_dir):
    return not work_dir.exists() or not [
        name for _, _, names in os.walk(work_dir) for name in names
        if name.endswith(('.pth', '.json')) and name != 'scalars.json']


# ----------------------------------------------------------------------------------------
# COCO annotation files


def _drop_images(content):
    del content['images']


def _negative_width(content):
    content['annotations'][1]['bbox'][2] = -5.0


def _unknown_category(content):
    content['annotations'][0]['category_id'] = 99


def _missing_area(content):
    del content['annotations'][0]['area']


def _unknown_image(content):
    content['annotations'][0]['image_id'] = 1234


@pytest.mark.parametrize('edit, problem', [
    (_drop_images, r'has no "images" list'),
    (_negative_width, r'annotation id 2 has a negative box width or height: bbox '
                      r'\[[-0-9., ]+\] \(x, y, width, height\)'),
    (_unknown_category, r'annotation id 1 has category_id 99, which is not in its '
                        r'"categories" \(ids 1, 2, 3\)'),
    (_missing_area, r'annotation id 1 has no "area"'),
    (_unknown_image, r'annotation id 1 has image_id 1234, which is not in its "images"'),
])
def test_bad_coco_file_is_named_before_training(coco_root, tmp_path, edit, problem):
    data = _copy(coco_root, tmp_path)
    ann_file = _edit_coco(data, 'train2017', edit)
    config = _config_file(MASK_RCNN, data, tmp_path)
    with pytest.raises(ValueError, match=problem) as err:
        _train(config, tmp_path / 'work')
    assert str(err.value).startswith(f'{ann_file}: ')
    assert _nothing_recorded(tmp_path / 'work')


def test_classes_missing_from_the_coco_categories_are_named(coco_root, tmp_path):
    """A class of the dataset's metainfo that the file does not have would never be
    trained or scored (mmdet silently leaves it out)."""
    data = _copy(coco_root, tmp_path)
    config = _config_file(MASK_RCNN, data, tmp_path)
    with pytest.raises(ValueError, match=r"instances_train2017.json: class 'hexagon' of the "
                       r"dataset is not among its categories \(rectangle, ellipse, "
                       r"triangle\)"):
        _train(config, tmp_path / 'work', '--cfg-options',
               "train_dataloader.dataset.dataset.metainfo.classes=['rectangle','hexagon']")


def test_the_evaluator_annotation_file_is_checked(coco_root, tmp_path):
    data = _copy(coco_root, tmp_path)
    ann_file = _edit_coco(data, 'val2017', _unknown_category)
    config = _config_file(MASK_RCNN, data, tmp_path)
    with pytest.raises(ValueError, match='category_id 99') as err:
        _train(config, tmp_path / 'work')
    assert str(err.value).startswith(f'{ann_file}: ')


def test_coco_error_is_one_line_from_the_tool(coco_root, tmp_path):
    data = _copy(coco_root, tmp_path)
    ann_file = _edit_coco(data, 'train2017', _drop_images)
    config = _config_file(MASK_RCNN, data, tmp_path)
    out = subprocess.run([sys.executable, osp.join(ROOT, 'tools', 'train.py'), str(config),
                          '--work-dir', str(tmp_path / 'work')],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 2, out.stderr[-3000:]
    assert 'Traceback' not in out.stderr
    (line,) = [line for line in out.stderr.splitlines() if line.startswith('error: ')]
    assert line.startswith(f'error: {ann_file}: ')
    assert _nothing_recorded(tmp_path / 'work')


# ----------------------------------------------------------------------------------------
# ADE20K label maps


def _first_label(root, split='training'):
    folder = root / 'annotations' / split
    return folder / sorted(os.listdir(folder))[0]


@pytest.mark.parametrize('change, problem', [
    (lambda label: label.resize((32, 48)), r'is 32x48 pixels, its image .* is 64x64'),
    (lambda label: label.convert('RGB'), r'has mode RGB'),
])
def test_bad_label_map_is_named_before_training(ade_root, tmp_path, change, problem):
    data = _copy(ade_root, tmp_path)
    label = _first_label(data)
    change(Image.open(label)).save(label)
    config = _config_file(UPERNET, data, tmp_path)
    with pytest.raises(ValueError, match=problem) as err:
        _train(config, tmp_path / 'work')
    assert str(err.value).startswith(f'label map {label} ')
    assert 'one class index per pixel' in str(err.value) or 'same size' in str(err.value)
    assert _nothing_recorded(tmp_path / 'work')


def test_missing_label_map_is_named(ade_root, tmp_path):
    data = _copy(ade_root, tmp_path)
    label = _first_label(data, 'validation')
    os.remove(label)
    config = _config_file(UPERNET, data, tmp_path)
    with pytest.raises(FileNotFoundError, match=f'{label} does not exist'):
        _train(config, tmp_path / 'work')


def test_missing_image_folder_is_named_with_its_key_and_layout(ade_root, tmp_path):
    data = _copy(ade_root, tmp_path)
    shutil.rmtree(data / 'images' / 'validation')
    config = _config_file(UPERNET, data, tmp_path)
    with pytest.raises(FileNotFoundError,
                       match=r'val dataset \(ADE20KDataset\): data_prefix.img_path '
                       r'.*images/validation does not exist(.|\n)*images/validation/\*\.jpg'):
        _train(config, tmp_path / 'work')


def test_missing_coco_image_folder_is_named_with_its_key(coco_root, tmp_path):
    """CocoDataset lists no folder; its images are read by the pipeline. The first sample
    is loaded before training, so a missing folder is named with its config key."""
    data = _copy(coco_root, tmp_path)
    shutil.rmtree(data / 'train2017')
    config = _config_file(MASK_RCNN, data, tmp_path)
    with pytest.raises(FileNotFoundError,
                       match=r'train dataset \(CocoDataset\): data_prefix.img .*train2017/? '
                       r'does not exist'):
        _train(config, tmp_path / 'work')
    assert _nothing_recorded(tmp_path / 'work')


# ----------------------------------------------------------------------------------------
# the paths a dataset reads, and only those


def _mask2former_config(data_root, tmp_path):
    """mmdet's own instance Mask2Former config as a user adapts it to a small dataset: data,
    schedule and sizes only. It inherits the panoptic config's ``data_prefix.seg``
    (annotations/panoptic_*2017/), which the instance pipeline never reads."""
    size = 64
    narrow = dict(embed_dims=32, num_heads=4)
    text = f'''
_base_ = 'mmdet::mask2former/mask2former_r50_8xb2-lsj-50e_coco.py'
data_root = {str(data_root) + '/'!r}
classes = ('rectangle', 'ellipse', 'triangle')
image_size = ({size}, {size})
model = dict(
    data_preprocessor=dict(batch_augments=[dict(type='BatchFixedSizePad', size=image_size,
                                                img_pad_value=0, pad_mask=True,
                                                mask_pad_value=0, pad_seg=False)]),
    backbone=dict(depth=18, base_channels=8, norm_cfg=dict(type='BN', requires_grad=True),
                  norm_eval=False, init_cfg=None),
    panoptic_head=dict(
        in_channels=[8, 16, 32, 64], feat_channels=32, out_channels=32, num_queries=8,
        num_things_classes=3, loss_cls=dict(class_weight=[1.0] * 3 + [0.1]),
        pixel_decoder=dict(encoder=dict(num_layers=1, layer_cfg=dict(
            self_attn_cfg=dict({narrow}), ffn_cfg=dict(embed_dims=32,
                                                      feedforward_channels=64))),
                           positional_encoding=dict(num_feats=16)),
        positional_encoding=dict(num_feats=16),
        transformer_decoder=dict(num_layers=1, layer_cfg=dict(
            self_attn_cfg=dict({narrow}), cross_attn_cfg=dict({narrow}),
            ffn_cfg=dict(embed_dims=32, feedforward_channels=64)))),
    panoptic_fusion_head=dict(num_things_classes=3),
    train_cfg=dict(num_points=256),
    test_cfg=dict(max_per_image=8))
train_pipeline = [
    dict(type='LoadImageFromFile', to_float32=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='RandomResize', scale=image_size, ratio_range=(0.8, 1.2), resize_type='Resize',
         keep_ratio=True),
    dict(type='RandomCrop', crop_size=image_size, crop_type='absolute', recompute_bbox=True,
         allow_negative_crop=True),
    dict(type='FilterAnnotations', min_gt_bbox_wh=(1e-5, 1e-5), by_mask=True),
    dict(type='PackDetInputs')]
test_pipeline = [
    dict(type='LoadImageFromFile', to_float32=True),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                                          'scale_factor'))]
train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                        dataset=dict(data_root=data_root, metainfo=dict(classes=classes),
                                     pipeline=train_pipeline))
val_dataloader = dict(num_workers=0, persistent_workers=False,
                      dataset=dict(data_root=data_root, metainfo=dict(classes=classes),
                                   pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator
train_cfg = dict(max_iters=2, val_interval=2, dynamic_intervals=None)
default_hooks = dict(checkpoint=dict(interval=2), logger=dict(interval=1),
                     visualization=dict(draw=False))
'''
    path = tmp_path / 'mask2former_tiny.py'
    path.write_text(text)
    return path


def test_mmdet_mask2former_instance_config_trains(coco_root, tmp_path):
    """The config holds data_prefix.seg of a folder that does not exist; CocoDataset turns
    it into seg_map_path, but nothing in the instance pipeline reads it."""
    config = _mask2former_config(coco_root, tmp_path)
    cfg = Config.fromfile(str(config))
    seg = cfg.train_dataloader.dataset.data_prefix.seg
    assert not osp.exists(osp.join(str(coco_root), seg))
    work_dir = tmp_path / 'work'
    out = subprocess.run([sys.executable, '-m', 'mixedconv.train', str(config), '--work-dir',
                          str(work_dir)], capture_output=True, text=True, timeout=600,
                         cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    assert (work_dir / 'iter_2.pth').is_file()
    assert 'coco/segm_mAP' in out.stdout + out.stderr


def test_loading_the_first_sample_leaves_the_random_streams_alone(coco_root, tmp_path):
    """Checking the first sample before training draws from the global random generators;
    the run's own random sequence is the one it would have been without the check."""
    import random

    import torch

    from mixedconv.data.checks import probe_first_sample
    from mmengine.registry import DATASETS, init_default_scope
    cfg = Config.fromfile(str(_config_file(MASK_RCNN, coco_root, tmp_path)))
    init_default_scope('mmdet')
    dataset_cfg = cfg.train_dataloader.dataset.dataset  # under RepeatDataset
    dataset = DATASETS.build(dataset_cfg)
    states = random.getstate(), np.random.get_state()[1].copy(), torch.random.get_rng_state()
    probe_first_sample(dataset, 'train', dataset_cfg)
    assert random.getstate() == states[0]
    assert (np.random.get_state()[1] == states[1]).all()
    assert torch.equal(torch.random.get_rng_state(), states[2])
