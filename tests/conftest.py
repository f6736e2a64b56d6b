import os.path as osp
import subprocess
import sys

import pytest
import torch

from mixedconv import register_all_modules
from mixedconv.data import make_ade20k, make_coco, make_image_folder
from mixedconv.env import cuda_status

register_all_modules()  # components and the safe checkpoint loader, for every test

torch.set_num_threads(2)

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CLASSIFIER = osp.join(ROOT, 'tests', 'configs', 'tiny_resnet_classifier.py')


def _train_classifier(work_dir, data_root, *extra):
    """``tools/train.py`` on the tiny classifier config, every split read from ``data_root``;
    ``extra`` are more train.py arguments (more ``--cfg-options`` merge with these)."""
    cmd = [sys.executable, osp.join(ROOT, 'tools', 'train.py'), CLASSIFIER, '--work-dir',
           str(work_dir), '--cfg-options', f'data_root={data_root}',
           f'train_dataloader.dataset.data_root={data_root}',
           f'val_dataloader.dataset.data_root={data_root}',
           f'test_dataloader.dataset.data_root={data_root}', *extra]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope='session')
def train_classifier():
    """The function that trains the tiny classifier: ``(work_dir, data_root, *args)`` ->
    the finished ``subprocess.CompletedProcess``."""
    return _train_classifier


@pytest.fixture(scope='session')
def trained_classifier(tmp_path_factory, image_folder):
    """The work dir of a real mmengine run: 2 iterations of the tiny classifier, validated and
    checkpointed (``iter_2.pth``) at iteration 2. Shared, so tests must not write into it;
    copy it to resume from it."""
    work_dir = tmp_path_factory.mktemp('classifier_run')
    out = _train_classifier(work_dir, image_folder, '--cfg-options', 'train_cfg.val_interval=2')
    assert out.returncode == 0, out.stderr[-3000:]
    return work_dir


@pytest.fixture(scope='session')
def image_folder(tmp_path_factory):
    """16 generated 64x64 PNGs in 2 class folders (mmpretrain CustomDataset layout)."""
    return make_image_folder(str(tmp_path_factory.mktemp('images')), num_images=16)


@pytest.fixture(scope='session')
def imagenet_root(tmp_path_factory):
    """A data root in the pretraining recipes' layout: ``<root>/train/<class>/*.png``."""
    root = tmp_path_factory.mktemp('imagenet')
    make_image_folder(str(root / 'train'), num_images=16)
    return str(root)


@pytest.fixture(scope='session')
def coco_root(tmp_path_factory):
    """A generated COCO-format instance segmentation set (8 train, 2 val images of 64x64) in
    mmdet's layout (``annotations/instances_{train,val}2017.json``, ``{train,val}2017/``)."""
    root = str(tmp_path_factory.mktemp('coco'))
    make_coco(root, num_train=8, num_val=2)
    return root


@pytest.fixture(scope='session')
def ade20k_root(tmp_path_factory):
    """A generated ADE20K-format set (8 train, 2 val images of 64x64) in mmseg's
    ``ADEChallengeData2016`` layout."""
    return make_ade20k(str(tmp_path_factory.mktemp('ade')), num_train=8, num_val=2)


def pytest_collection_modifyitems(config, items):
    """Tests marked ``cuda`` are skipped, with the reason :mod:`mixedconv.env` gives, where the
    CUDA path cannot run (no GPU, or mmcv without CUDA ops)."""
    marked = [item for item in items if item.get_closest_marker('cuda')]
    reason = cuda_status().unusable() if marked else None
    for item in marked if reason else ():
        item.add_marker(pytest.mark.skip(reason=f'needs CUDA: {reason}'))


@pytest.fixture(autouse=True)
def _fresh_mm_state():
    """Each test starts without the logger, message hub or default scope of another runner."""
    yield
    from mmengine.logging import MessageHub, MMLogger
    from mmengine.registry import DefaultScope
    for managed in (MMLogger, MessageHub, DefaultScope):
        managed._instance_dict.clear()


@pytest.fixture
def recording_srun(tmp_path):
    """A stand-in ``srun`` in ``tmp_path/bin`` that writes its arguments, one per line, to
    ``tmp_path/srun.args``: returns (bin directory, arguments file)."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    args = tmp_path / 'srun.args'
    srun = bin_dir / 'srun'
    srun.write_text(f'#!/usr/bin/env bash\nprintf "%s\\n" "$@" > {args}\n')
    srun.chmod(0o755)
    return bin_dir, args
