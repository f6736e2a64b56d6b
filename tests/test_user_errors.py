"""Ordinary user errors end the tools with one readable message and a non-zero exit code, and
the advice in a message is a command that works."""
import math
import os
import os.path as osp
import re
import subprocess
import sys

import pytest
import torch
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


def _one_error_line(out):
    """The exit code is 2 and stderr holds one ``error:`` line and no traceback."""
    assert out.returncode == 2, out.stderr[-3000:]
    assert 'Traceback' not in out.stderr, out.stderr[-3000:]
    (line,) = [line for line in out.stderr.splitlines() if line.startswith('error: ')]
    return line


def _checkpoints(work_dir):
    return [name for _, _, names in os.walk(work_dir) for name in names
            if name.endswith('.pth')] if osp.isdir(work_dir) else []


def test_resume_of_a_file_that_is_not_a_runner_checkpoint(tmp_path, image_folder,
                                                           train_classifier):
    """Weights alone (a state dict, a converted or exported file) cannot be resumed; the
    message says to load them instead."""
    weights = tmp_path / 'weights.pth'
    torch.save({'state_dict': {'backbone.w': torch.zeros(2)}}, weights)
    work_dir = tmp_path / 'work'
    out = train_classifier(work_dir, image_folder, '--resume', str(weights))
    line = _one_error_line(out)
    assert line.startswith(f'error: --resume {weights}: not a checkpoint that an mmengine '
                           "Runner wrote (it has no 'meta' with the epoch and iteration")
    assert f'--cfg-options load_from={weights}' in line
    assert not _checkpoints(work_dir)


def test_auto_resume_of_a_bad_last_checkpoint_is_named(tmp_path, image_folder,
                                                      train_classifier):
    """--resume without a path resumes from what the work dir's last_checkpoint names."""
    work_dir = tmp_path / 'work'
    work_dir.mkdir()
    weights = work_dir / 'iter_2.pth'
    torch.save({'model': {'w': torch.zeros(2)}}, weights)
    (work_dir / 'last_checkpoint').write_text(str(weights))
    out = train_classifier(work_dir, image_folder, '--resume')
    assert _one_error_line(out).startswith(f'error: --resume {weights}: not a checkpoint')


@pytest.fixture
def read_only_dir(tmp_path):
    """A directory this process cannot write into: a read-only mode for a normal user, a
    read-only tmpfs for root (which writes through file modes)."""
    path = tmp_path / 'read_only'
    path.mkdir()
    if os.geteuid() != 0:
        path.chmod(0o555)
        yield path
        path.chmod(0o755)
        return
    mounted = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'ro,size=1m', 'none', str(path)],
                             capture_output=True)
    if mounted.returncode != 0:
        pytest.skip('running as root without permission to mount a read-only file system')
    try:
        yield path
    finally:
        subprocess.run(['umount', str(path)], check=True)


def test_read_only_work_dir_is_named(read_only_dir, image_folder, train_classifier):
    work_dir = read_only_dir / 'run'
    out = train_classifier(work_dir, image_folder)
    assert _one_error_line(out) == (
        f'error: --work-dir {work_dir}: cannot write in {read_only_dir} (read-only or not '
        'yours); pass a --work-dir you can write to')


def test_benchmark_read_only_work_dir_is_named(read_only_dir, tmp_path):
    """The benchmark refuses a work dir it cannot write before it reads any checkpoint."""
    ckpt = tmp_path / 'convmae.pth'
    ckpt.write_bytes(b'')
    work_dir = read_only_dir / 'bench'
    out = run(sys.executable, osp.join(ROOT, 'tools', 'benchmark.py'), str(ckpt),
              '--work-dir', str(work_dir))
    assert _one_error_line(out) == (
        f'error: --work-dir {work_dir}: cannot write in {read_only_dir} (read-only or not '
        'yours); pass a --work-dir you can write to')
    assert not work_dir.exists()


def test_work_dir_that_is_a_file_is_named(tmp_path, image_folder, train_classifier):
    taken = tmp_path / 'results.txt'
    taken.write_text('notes')
    for work_dir in (taken, taken / 'run'):
        out = train_classifier(work_dir, image_folder)
        assert _one_error_line(out) == (
            f'error: --work-dir {work_dir}: {taken} is a file, not a directory; pass a '
            'directory (it is created when missing)')
    assert taken.read_text() == 'notes'


@pytest.mark.parametrize('options, message', [
    (['train_cfg.max_iters=-5'], 'train_cfg.max_iters = -5: must be a positive integer'),
    (['train_cfg.max_iters=0'], 'train_cfg.max_iters = 0: must be a positive integer'),
    (['train_cfg.val_interval=0'], 'train_cfg.val_interval = 0: must be a positive integer'),
    (['train_cfg.type=EpochBasedTrainLoop', 'train_cfg.max_epochs=2.5'],
     'train_cfg.max_epochs = 2.5: must be a positive integer'),
    (['train_dataloader.batch_size=0'],
     'train_dataloader.batch_size = 0: must be a positive integer'),
])
def test_impossible_loop_settings_are_refused(tmp_path, image_folder, train_classifier,
                                              options, message):
    work_dir = tmp_path / 'work'
    out = train_classifier(work_dir, image_folder, *options)
    assert _one_error_line(out).startswith(f'error: {message}')
    assert not _checkpoints(work_dir)


@pytest.mark.parametrize('launcher, env, message', [
    ('pytorch', {}, '--launcher pytorch: this process was not started by torchrun'),
    ('slurm', {}, '--launcher slurm: this process was not started by srun'),
    ('mpi', {}, '--launcher mpi: this process was not started by mpirun'),
    ('none', {'WORLD_SIZE': '4', 'RANK': '1'},
     '--launcher none: this process is one of 4 that torchrun started'),
])
def test_impossible_launches_are_refused(tmp_path, launcher, env, message):
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(('SLURM_', 'OMPI_')) and
             k not in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT')}
    out = subprocess.run([sys.executable, osp.join(ROOT, 'tools', 'train.py'), CLASSIFIER,
                          '--work-dir', str(tmp_path / 'work'), '--launcher', launcher],
                         capture_output=True, text=True, timeout=300, cwd=ROOT,
                         env=dict(clean, **env))
    assert _one_error_line(out).startswith(f'error: {message}')
    assert not (tmp_path / 'work').exists()


def test_a_process_without_a_gpu_is_refused():
    """torchrun started more processes on a machine than it has GPUs."""
    from mixedconv.launch import UsageError, check_launcher
    env = dict(RANK='3', WORLD_SIZE='4', LOCAL_RANK='3', MASTER_ADDR='127.0.0.1',
               MASTER_PORT='29500')
    with pytest.raises(UsageError, match='this is process 3 of its machine, which has 2 GPUs; '
                       'start at most 2 processes per machine'):
        check_launcher('pytorch', env=env, gpus=2)
    check_launcher('pytorch', env=env, gpus=4)


@pytest.mark.parametrize('launcher, nproc, message', [
    ('pytorch', 0, '--gpus 0: a run needs at least one process'),
    ('slurm', -1, '--gpus -1: a run needs at least one process'),
    ('none', 4, '--gpus 4 needs --launcher pytorch or slurm'),
])
def test_impossible_process_counts_are_refused(launcher, nproc, message):
    from mixedconv.launch import UsageError, check_process_count
    with pytest.raises(UsageError, match=message):
        check_process_count(launcher, nproc)


def test_benchmark_refuses_an_impossible_process_count(tmp_path):
    ckpt = tmp_path / 'convmae.pth'
    ckpt.write_bytes(b'')
    out = run(sys.executable, osp.join(ROOT, 'tools', 'benchmark.py'), str(ckpt),
              '--launcher', 'pytorch', '--gpus', '0', '--work-dir', str(tmp_path / 'bench'))
    assert _one_error_line(out).startswith('error: --gpus 0: a run needs at least one process')
    assert not (tmp_path / 'bench').exists()


@pytest.mark.parametrize('nproc', ['0', 'two', '-1'])
def test_dist_train_refuses_an_impossible_process_count(nproc):
    out = run('bash', osp.join(ROOT, 'tools', 'dist_train.sh'), CLASSIFIER, nproc)
    assert out.returncode == 2
    assert f"error: NPROC must be a positive number of processes, got '{nproc}'" in out.stderr


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
