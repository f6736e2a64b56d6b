"""Bad input gets an error naming the problem and the fix.

Covered elsewhere, not repeated here:
  * image size not a multiple of the patch size: tests/test_convvit.py
    (test_size_not_multiple_of_16_is_rejected), tests/test_plain_vit.py, tests/test_convmae.py
  * truncated / corrupt checkpoint file: tests/test_checkpoint_loading.py
    (test_truncated_checkpoint_names_file)
  * checkpoint whose pickle runs code: tests/test_checkpoint_loading.py
    (test_malicious_checkpoint_refused_and_payload_not_run)
  * MixedAE batch not divisible by the group size: tests/test_mixedae.py, and under DDP in
    tests/test_distributed.py
  * unknown arch names: tests/test_convvit.py, tests/test_plain_vit.py
"""
import importlib.util
import os
import os.path as osp
import re

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

from mixedconv.benchmark.tiny import ARCHS, shrink_pretrain, shrink_transfer
from mixedconv.checkpoint import CheckpointError
from mixedconv.data import CorruptImageError, check_dataset_paths, make_ade20k
from mixedconv.models.backbones import ConvViT

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONVMAE = 'configs/convmae/convmae_convvit-base-p16_8xb384-amp-coslr-1600e_in1k.py'
MASK_RCNN = 'configs/convmae/mask-rcnn_convvit-base-p16_fpn_8xb4-amp-lsj-1024-25e_coco.py'
UPERNET = 'configs/mixedae/upernet_vit-base-p16_8xb2-amp-160k_ade20k-512x512.py'


def load_train_tool():
    spec = importlib.util.spec_from_file_location('train_tool', osp.join(ROOT, 'tools', 'train.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ----------------------------------------------------------------------------------------
# missing dataset root or annotation file


def test_train_tool_names_missing_data_root_and_layout(tmp_path):
    """tools/train.py stops before building a runner (no work dir is created)."""
    missing = tmp_path / 'nowhere'
    work_dir = tmp_path / 'work'
    with pytest.raises(FileNotFoundError) as err:
        load_train_tool().main([
            osp.join(ROOT, CONVMAE), '--work-dir', str(work_dir), '--cfg-options',
            f'train_dataloader.dataset.data_root={missing}'])
    message = str(err.value)
    assert f'train dataset (CustomDataset): data_root {missing} does not exist' in message
    assert 'train/<class>/<image>.jpg' in message
    assert not work_dir.exists()


def test_missing_coco_annotation_file_named_with_layout(tmp_path):
    root = tmp_path / 'coco'
    (root / 'train2017').mkdir(parents=True)
    cfg = shrink_transfer(Config.fromfile(osp.join(ROOT, MASK_RCNN)), str(root))
    with pytest.raises(FileNotFoundError) as err:
        check_dataset_paths(cfg)
    message = str(err.value)
    assert (f'train dataset (CocoDataset): ann_file '
            f'{root}/annotations/instances_train2017.json does not exist') in message
    assert 'annotations/instances_train2017.json, instances_val2017.json' in message


def test_missing_coco_evaluator_file(tmp_path):
    """A missing data_prefix folder is named where the dataset reads it
    (tests/test_dataset_checks.py)."""
    cfg = shrink_transfer(Config.fromfile(osp.join(ROOT, MASK_RCNN)), str(tmp_path))
    cfg.val_evaluator.ann_file = str(tmp_path / 'gone.json')
    for path in ('annotations/instances_train2017.json', 'annotations/instances_val2017.json'):
        os.makedirs(osp.dirname(tmp_path / path), exist_ok=True)
        (tmp_path / path).write_text('{}')
    for split in ('train2017', 'val2017'):
        (tmp_path / split).mkdir()
    with pytest.raises(FileNotFoundError, match=r'val_evaluator \(CocoMetric\): ann_file .*gone'):
        check_dataset_paths(cfg)


# ----------------------------------------------------------------------------------------
# checkpoint of another architecture


def test_checkpoint_of_another_architecture_stops_before_training(tmp_path):
    """A ConvViT (ConvMAE) checkpoint given to a PlainViT UperNet: the real runner raises a
    CheckpointError listing what did not match, and no iteration runs."""
    convvit = ConvViT(arch=ARCHS['ConvViT'], img_size=64)
    ckpt = tmp_path / 'convmae.pth'
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in convvit.state_dict().items()}},
               ckpt)
    make_ade20k(str(tmp_path / 'ade'), num_train=2, num_val=1)
    cfg = shrink_transfer(Config.fromfile(osp.join(ROOT, UPERNET)), str(tmp_path / 'ade'))
    cfg.model.backbone.init_cfg.checkpoint = str(ckpt)
    cfg.work_dir = str(tmp_path / 'work')
    runner = Runner.from_cfg(cfg)
    with pytest.raises(CheckpointError) as err:
        runner.train()
    message = str(err.value)
    assert re.search(r'convmae\.pth does not fit PlainViT: only \d+ of \d+ tensors matched',
                     message)
    assert 'another architecture' in message
    assert '  missing: ' in message and '  unexpected: ' in message
    assert 'patch_embed' in message
    assert runner.iter == 0
    assert not [p for p in os.listdir(tmp_path / 'work') if p.endswith('.pth')]


# ----------------------------------------------------------------------------------------
# corrupt image in the dataset


@pytest.fixture
def folder_with_corrupt_image(tmp_path):
    from mixedconv.data import make_image_folder
    make_image_folder(str(tmp_path / 'imagenet' / 'train'), num_images=8)
    bad = tmp_path / 'imagenet' / 'train' / 'class0' / '0002.png'
    bad.write_bytes(b'')  # an interrupted download
    return tmp_path / 'imagenet', bad


def corrupt_image_cfg(data_root, work_dir, **load_args):
    cfg = shrink_pretrain(Config.fromfile(osp.join(ROOT, CONVMAE)), str(data_root),
                          batch_size=4)
    cfg.train_dataloader.sampler.shuffle = False
    pipeline = cfg.train_dataloader.dataset.pipeline
    assert pipeline[0]['type'] in ('LoadImageFromFile', 'CheckedLoadImageFromFile')
    pipeline[0] = dict(type='CheckedLoadImageFromFile', **load_args)
    cfg.work_dir = str(work_dir)
    return cfg


def test_corrupt_image_error_names_the_file(folder_with_corrupt_image, tmp_path):
    data_root, bad = folder_with_corrupt_image
    runner = Runner.from_cfg(corrupt_image_cfg(data_root, tmp_path / 'work'))
    with pytest.raises(CorruptImageError) as err:
        runner.train()
    assert f'cannot decode image {bad}' in str(err.value)
    assert 'skip_corrupt=True' in str(err.value)


def test_corrupt_image_skipped_with_warning_when_opted_in(folder_with_corrupt_image, tmp_path,
                                                          capsys):
    data_root, bad = folder_with_corrupt_image
    runner = Runner.from_cfg(corrupt_image_cfg(data_root, tmp_path / 'work', skip_corrupt=True))
    runner.train()
    assert runner.iter == 2
    captured = capsys.readouterr()
    assert f'skipping unreadable image {bad}' in captured.out + captured.err


def test_plain_mmcv_loader_does_not_name_an_empty_file(folder_with_corrupt_image):
    """The premise: mmcv's LoadImageFromFile fails on an empty file without naming it."""
    from mmcv.transforms import LoadImageFromFile
    _, bad = folder_with_corrupt_image
    with pytest.raises(Exception) as err:
        LoadImageFromFile()(dict(img_path=str(bad)))
    assert str(bad) not in str(err.value)


def _config_files():
    configs = osp.join(ROOT, 'configs')
    for folder, _, names in sorted(os.walk(configs)):
        if osp.basename(folder) != '_base_':
            yield from (osp.relpath(osp.join(folder, n), ROOT) for n in sorted(names))


def _image_pipelines(cfg):
    from mixedconv.data.layout import base_dataset_configs
    for split in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        if cfg.get(split):
            for key, dataset in base_dataset_configs(cfg[split].dataset, split):
                yield key, dataset.pipeline


@pytest.mark.parametrize('path', list(_config_files()))
def test_every_recipe_loads_images_through_the_checked_loader(path):
    pipelines = list(_image_pipelines(Config.fromfile(osp.join(ROOT, path))))
    assert pipelines
    for key, pipeline in pipelines:
        assert pipeline[0]['type'] == 'CheckedLoadImageFromFile', (key, pipeline[0])


@pytest.mark.parametrize('recipe,make,scope', [
    (MASK_RCNN, 'make_coco', 'mmdet'), (UPERNET, 'make_ade20k', 'mmseg')])
def test_corrupt_image_in_a_transfer_dataset_is_named(tmp_path, recipe, make, scope):
    """The recipe's own train and val datasets (mmdet RepeatDataset of CocoDataset, mmseg
    ADE20KDataset) stop at a truncated image with its name and the fix."""
    import importlib

    from mmengine.registry import DATASETS, init_default_scope

    from mixedconv import data
    root = tmp_path / 'data'
    getattr(data, make)(str(root), num_train=2, num_val=1)
    cfg = shrink_transfer(Config.fromfile(osp.join(ROOT, recipe)), str(root))
    importlib.import_module(f'{scope}.datasets')
    init_default_scope(scope)
    for split in ('train_dataloader', 'val_dataloader'):
        dataset = DATASETS.build(cfg[split].dataset)
        image = dataset[0]['data_samples'].img_path
        with open(image, 'r+b') as f:
            f.truncate(20)  # a download cut short
        with pytest.raises(CorruptImageError) as err:
            dataset[0]
        assert f'cannot decode image {image}' in str(err.value)
        assert 'skip_corrupt=True' in str(err.value)
