"""Ordinary user errors end the tools with one readable message and a non-zero exit code, and
the advice in a message is a command that works."""
import math
import os.path as osp
import re
import subprocess
import sys

import pytest
from mmengine.config import Config

from mixedconv.benchmark.recipes import task_config
from mixedconv.data import make_coco
from mixedconv.data.layout import check_dataset_paths
from mixedconv.leaderboard import SummaryError, TaskSummary, make_leaderboard

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CLASSIFIER = osp.join(ROOT, 'tests', 'configs', 'tiny_resnet_classifier.py')


def run(*cmd, cwd=ROOT):
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=300, cwd=cwd)


@pytest.mark.parametrize('tool, args, message', [
    ('train.py', ['missing_config.py'], 'error: config file not found: missing_config.py'),
    ('train.py', [CLASSIFIER, '--resume', 'nope.pth'],
     'error: --resume checkpoint not found: nope.pth'),
    ('train.py', [CLASSIFIER, '--cfg-options', 'train_dataloader.dataset.data_root=/no/data'],
     'error: train dataset (CustomDataset): data_root /no/data does not exist'),
    ('test.py', [CLASSIFIER, 'nope.pth'], 'error: checkpoint not found: nope.pth'),
])
def test_tools_print_an_error_not_a_traceback(tool, args, message):
    out = run(sys.executable, osp.join(ROOT, 'tools', tool), *args)
    assert out.returncode == 2, out.stderr[-2000:]
    assert 'Traceback' not in out.stderr and message in out.stderr


@pytest.mark.parametrize('script, usage', [
    ('dist_train.sh', 'usage: bash tools/dist_train.sh CONFIG NPROC'),
    ('slurm_train.sh', 'usage: [GPUS=N] bash tools/slurm_train.sh PARTITION JOB_NAME CONFIG'),
])
def test_launch_scripts_without_arguments_print_usage(script, usage):
    out = run('bash', osp.join(ROOT, 'tools', script))
    assert out.returncode == 2 and usage in out.stderr
    assert 'unbound variable' not in out.stderr


def test_leaderboard_of_a_folder_without_results_fails(tmp_path):
    (tmp_path / 'empty_run').mkdir()
    out = run(sys.executable, osp.join(ROOT, 'tools', 'leaderboard.py'), str(tmp_path),
              '--out', str(tmp_path / 'out'))
    assert out.returncode != 0 and f'error: no results under {tmp_path}' in out.stderr
    with pytest.raises(FileNotFoundError, match='no results'):
        make_leaderboard([str(tmp_path)], str(tmp_path / 'out'))


@pytest.mark.parametrize('metrics, problem', [
    ({'mIoU': math.nan}, 'metric mIoU is nan'),
    ({'mIoU': math.inf}, 'metric mIoU is inf'),
    ({'mIoU': 120.0}, r'mIoU = 120.0 is outside its range \[0.0, 100.0\]'),
    ({'coco/bbox_mAP': 51.9}, r'coco/bbox_mAP = 51.9 is outside its range \[0.0, 1.0\]'),
    ({'accuracy/top1': -3.0}, 'outside its range'),
])
def test_impossible_metrics_are_errors(metrics, problem):
    task = 'coco-maskrcnn' if 'coco/bbox_mAP' in metrics else 'ade20k-upernet'
    with pytest.raises(SummaryError, match=problem):
        TaskSummary(task=task, status='done', method='MAE', backbone='ViT-B', metrics=metrics)
    # pycocotools' "undefined" AP is a value CocoMetric can report
    TaskSummary(task='coco-maskrcnn', status='done', method='MAE', backbone='ViT-B',
                metrics={'coco/bbox_mAP': -1.0})


def test_missing_coco_advice_is_a_command_that_works(tmp_path):
    """The COCO recipes wrap their dataset in RepeatDataset; the advised --cfg-options key
    reaches the COCO dataset under it, and the dataset then builds."""
    cfg = Config.fromfile(task_config('coco-maskrcnn', 'ConvViT'))
    assert cfg.train_dataloader.dataset.type == 'RepeatDataset'
    cfg.merge_from_dict({'train_dataloader.dataset.dataset.data_root': str(tmp_path / 'no')})
    with pytest.raises(FileNotFoundError) as info:
        check_dataset_paths(cfg, ('train',))
    (key,) = re.findall(r'--cfg-options (\S+)=/path/to/data/', str(info.value))
    assert key == 'train_dataloader.dataset.dataset.data_root'

    root = str(tmp_path / 'coco')
    shapes = make_coco(root, num_train=2, num_val=1)
    cfg.merge_from_dict({key: osp.join(root, '')})
    cfg.train_dataloader.dataset.dataset.metainfo = dict(classes=shapes)
    check_dataset_paths(cfg, ('train',))
    from mmdet.registry import DATASETS
    from mmdet.utils import register_all_modules
    register_all_modules()
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    assert len(dataset) == 2 * cfg.train_dataloader.dataset.times
