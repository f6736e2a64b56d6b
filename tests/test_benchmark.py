"""The benchmark runner: checkpoint inspection, task processes, resume, the embedded chain."""
import glob
import json
import os
import os.path as osp
import signal
import time
import subprocess
import sys

import pytest
import torch

from mixedconv.benchmark import Launch, describe_checkpoint, run_task
from mixedconv.benchmark.runner import run_chain
from mixedconv.benchmark.tiny import ARCHS
from mixedconv.checkpoint import CheckpointError
from mixedconv.leaderboard import read_summary
from mixedconv.models.backbones.convvit import ConvViT
from mixedconv.models.backbones.plain_vit import PlainViT

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
SMALL = dict(pretrain_iters=2, transfer_iters=2)


@pytest.fixture(scope='module')
def chain(tmp_path_factory):
    """The embedded chain, reduced: two methods, one task, 2 iterations each."""
    work_dir = str(tmp_path_factory.mktemp('bench'))
    files = run_chain(['convmae', 'mae'], ['ade20k-upernet'], work_dir, iters=SMALL)
    return work_dir, files


def test_embedded_chain_writes_leaderboard(chain):
    work_dir, files = chain
    for kind in ('md', 'csv', 'html', 'png'):
        assert osp.isfile(files[kind])
    table = open(files['md']).read()
    assert '| ConvMAE | ConvViT-tiny |' in table and '| MAE | ViT-tiny |' in table
    assert 'Deltas against MAE ViT-tiny' in table
    record = read_summary(osp.join(run_dir(work_dir, 'convmae'), 'ade20k-upernet',
                                   'summary.json'))
    assert record.status == 'done' and 0 <= record.metrics['mIoU'] <= 100
    assert len(record.checkpoint_sha256) == 64 and record.wall_time_s > 0
    assert run_dir(work_dir, 'convmae').endswith(f'_iter_2-{record.checkpoint_sha256[:12]}')
    log = open(osp.join(run_dir(work_dir, 'convmae'), 'ade20k-upernet', 'train.log')).read()
    assert 'Iter(train) [2/2]' in log and 'Epoch(train)' not in log


def run_dir(work_dir, method):
    """The transfer run directory of the chain's ``method`` checkpoint."""
    (path,) = glob.glob(osp.join(work_dir, 'transfer', f'{method}_*'))
    return path


def test_done_task_is_not_rerun(chain):
    work_dir, _ = chain
    task_dir = run_dir(work_dir, 'mae')
    path = osp.join(task_dir, 'ade20k-upernet', 'summary.json')
    before = open(path).read()
    info = describe_checkpoint(osp.join(work_dir, 'pretrain', 'mae', 'iter_2.pth'))
    record = run_task(info, 'ade20k-upernet', task_dir, embedded=True)
    assert record.status == 'done' and open(path).read() == before


def test_failed_task_is_recorded(chain, tmp_path):
    """A task whose data is missing fails, with the error in its summary."""
    work_dir, _ = chain
    info = describe_checkpoint(osp.join(work_dir, 'pretrain', 'convmae', 'iter_2.pth'))
    record = run_task(info, 'ade20k-upernet', str(tmp_path), data_root=str(tmp_path / 'none'),
                      embedded=True)
    assert record.status == 'failed' and record.error
    assert read_summary(str(tmp_path / 'ade20k-upernet' / 'summary.json')).status == 'failed'


def test_interrupted_task_resumes(chain):
    """A task left unfinished is run again from its last checkpoint, not from scratch."""
    work_dir, _ = chain
    task_dir = run_dir(work_dir, 'convmae')
    path = osp.join(task_dir, 'ade20k-upernet', 'summary.json')
    with open(path) as f:
        stored = json.load(f)
    with open(path, 'w') as f:
        json.dump(dict(stored, status='interrupted'), f)
    info = describe_checkpoint(osp.join(work_dir, 'pretrain', 'convmae', 'iter_2.pth'))
    record = run_task(info, 'ade20k-upernet', task_dir, osp.join(work_dir, 'data'),
                      embedded=True)
    assert record.status == 'done' and record.metrics == stored['metrics']
    log = open(osp.join(task_dir, 'ade20k-upernet', 'train.log')).read()
    assert 'resumed epoch: 0, iter: 2' in log


def test_describe_pretraining_checkpoints(chain):
    work_dir, _ = chain
    convmae = describe_checkpoint(osp.join(work_dir, 'pretrain', 'convmae', 'iter_2.pth'))
    assert (convmae.family, convmae.arch, convmae.method) == ('ConvViT', ARCHS['ConvViT'],
                                                              'ConvMAE')
    mae = describe_checkpoint(osp.join(work_dir, 'pretrain', 'mae', 'iter_2.pth'))
    assert (mae.family, mae.method, mae.backbone_label) == ('PlainViT', 'MAE', 'ViT-tiny')


def test_describe_released_checkpoints(tmp_path):
    """Released checkpoints store no config: family and arch come from the tensors."""
    convmae = tmp_path / 'convmae_base_1600ep.pth'
    torch.save({'model': ConvViT(arch='b').state_dict()}, convmae)
    info = describe_checkpoint(str(convmae))
    assert (info.family, info.arch, info.method, info.backbone_label) == \
        ('ConvViT', 'b', 'ConvMAE', 'ConvViT-B')
    vit = tmp_path / 'vit.pth'
    torch.save({'model': PlainViT(arch='small').state_dict()}, vit)
    with pytest.raises(ValueError, match='pass --method'):
        describe_checkpoint(str(vit))
    assert describe_checkpoint(str(vit), method='MAE').arch == 'small'
    assert describe_checkpoint(str(vit), 'MAE', arch='PlainViT:s').arch == 'small'
    with pytest.raises(CheckpointError, match=r"arch PlainViT:large, with sizes \{'embed_dim': "
                       r"1024, 'depth': 24\}, but the checkpoint's tensors have \{'embed_dim': "
                       r"384, 'depth': 12\}"):
        describe_checkpoint(str(vit), 'MAE', arch='PlainViT:large')
    with pytest.raises(CheckpointError, match='holds a PlainViT encoder, not the ConvViT given'):
        describe_checkpoint(str(vit), 'MAE', arch='ConvViT')
    with pytest.raises(CheckpointError, match='holds a ConvViT encoder, not the PlainViT given'):
        describe_checkpoint(str(convmae), arch='PlainViT:base')
    # detectron2 model_final layout: the encoder sits under backbone.bottom_up.
    d2 = tmp_path / 'model_final.pth'
    torch.save({'model': {f'backbone.bottom_up.{k}': v
                          for k, v in ConvViT(arch='b').state_dict().items()},
                'iteration': 10}, d2)
    assert describe_checkpoint(str(d2), 'ConvMAE').backbone_label == 'ConvViT-B'
    other = tmp_path / 'resnet.pth'
    torch.save({'state_dict': {'conv1.weight': torch.zeros(1)}}, other)
    with pytest.raises(CheckpointError, match='holds no ConvViT'):
        describe_checkpoint(str(other))


def test_launch_commands():
    assert Launch().command('c.py', 'w', resume=True) == [
        sys.executable, '-m', 'mixedconv.train', 'c.py', '--work-dir', 'w', '--resume']
    cmd = Launch('pytorch', gpus=4).command('c.py', 'w', resume=False)
    assert cmd[1:4] == ['-m', 'torch.distributed.run', '--nproc_per_node=4']
    assert cmd[4:7] == ['-m', 'mixedconv.train', 'c.py']
    assert cmd[-2:] == ['--launcher', 'pytorch']
    slurm = Launch('slurm', gpus=16, partition='gpu')
    assert slurm.command('c.py', 'w', resume=True) == [
        sys.executable, '-m', 'mixedconv.slurm', 'gpu', 'mixedconv', 'c.py', 'w', '--resume']
    assert slurm.env()['GPUS'] == '16'
    with pytest.raises(ValueError, match='needs --partition'):
        Launch('slurm')


@pytest.mark.parametrize('args, message', [
    (['x.pth', '--tasks', 'coco'], 'unknown task .*valid: coco-maskrcnn, ade20k-upernet'),
    (['--pretrain', 'beit'], 'unknown pretraining method .*valid: convmae, mixedae, mae'),
    (['missing.pth'], 'checkpoint not found: missing.pth'),
    (['x.pth', '--arch', 'Swin'], 'unknown backbone .*valid: ConvViT, PlainViT'),
    (['x.pth', '--arch', 'PlainViT:giant'], 'unknown PlainViT arch .*valid: b, base, h, huge'),
])
def test_cli_errors_name_valid_choices(args, message):
    out = subprocess.run([sys.executable, osp.join(ROOT, 'tools', 'benchmark.py'), *args],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 2 and 'Traceback' not in out.stderr
    assert __import__('re').search(message, out.stderr), out.stderr[-500:]


@pytest.mark.parametrize('task, family, arch', [
    ('coco-maskrcnn', 'ConvViT', 'l'), ('coco-maskrcnn', 'PlainViT', 'large'),
    ('ade20k-upernet', 'ConvViT', 'b'), ('ade20k-upernet', 'PlainViT', 'large'),
    ('in1k-finetune', 'ConvViT', 'b'), ('in1k-finetune', 'PlainViT', 'base'),
    ('in1k-linear', 'ConvViT', 's')])
def test_real_recipe_configs_follow_the_checkpoint(task, family, arch, tmp_path):
    """Full-size recipes take the checkpoint's arch (block indices moved to its depth), the
    checkpoint itself and the datasets under --data-root; they build into real models."""
    from mmengine.registry import DefaultScope

    from mixedconv.benchmark import CheckpointInfo, build_task_config
    from mixedconv.benchmark.recipes import DATA_DIRS, TASK_DATA, backbone_channels, base_dataset
    from mixedconv.families import FAMILIES
    info = CheckpointInfo(str(tmp_path / 'enc.pth'), family, arch, 'MAE')
    cfg = build_task_config(info, task, data_root=str(tmp_path / 'data'))
    backbone = cfg.model.backbone
    assert backbone.arch == arch
    assert backbone.init_cfg == dict(type='Pretrained', checkpoint=info.path)
    depth = FAMILIES[family].depth(arch)
    for key in ('global_blocks', 'out_indices'):
        if backbone.get(key) and family == 'PlainViT' or key == 'global_blocks':
            assert all(0 <= i < depth for i in backbone.get(key) or ()), (key, backbone[key])
    if task == 'coco-maskrcnn' and family == 'PlainViT':
        assert backbone.out_indices == (depth - 1,)
    root = osp.join(str(tmp_path / 'data'), DATA_DIRS[TASK_DATA[task]])
    for split in ('train_dataloader', 'val_dataloader'):
        assert base_dataset(cfg[split]).data_root == root
    if task == 'coco-maskrcnn':
        assert cfg.val_evaluator.ann_file.startswith(root)
    channels = backbone_channels(backbone)
    readers = [cfg.model.get('neck'), cfg.model.get('decode_head'), cfg.model.get('head')]
    width = channels[-1]
    for reader in filter(None, readers):
        if 'in_channels' in reader:
            assert reader.in_channels in (channels, width), reader
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        from mmengine.registry import MODELS
        cfg.model.backbone.init_cfg = None
        model = MODELS.build(cfg.model)
    assert type(model.backbone).__name__ == family


def test_two_checkpoints_with_one_file_name(chain, tmp_path):
    """Two different files both called checkpoint.pth: two runs, two rows, each with its own
    sha256 and metrics; neither reuses the other's results."""
    from mixedconv.benchmark import run_benchmark
    from mixedconv.benchmark.runner import write_leaderboard
    from mixedconv.checkpoint import safe_load
    work_dir, _ = chain
    source = safe_load(osp.join(work_dir, 'pretrain', 'convmae', 'iter_2.pth'))
    paths = []
    for name, scale in (('a', 1.0), ('b', -3.0)):
        checkpoint = dict(source, state_dict={k: v * scale if v.is_floating_point() else v
                                              for k, v in source['state_dict'].items()})
        os.makedirs(tmp_path / name)
        torch.save(checkpoint, tmp_path / name / 'checkpoint.pth')
        paths.append(str(tmp_path / name / 'checkpoint.pth'))
    bench = str(tmp_path / 'bench')
    records = run_benchmark(paths, ['ade20k-upernet'], bench, osp.join(work_dir, 'data'),
                            embedded=True)
    first, second = records
    assert first.status == second.status == 'done'
    assert first.checkpoint_sha256 != second.checkpoint_sha256
    assert first.metrics != second.metrics
    assert len(os.listdir(osp.join(bench, 'transfer'))) == 2
    table = open(write_leaderboard(records, bench)['md']).read()
    for record in records:
        sha = record.checkpoint_sha256[:12]
        assert f'| ConvMAE | ConvViT-tiny | — | checkpoint.pth ({sha}) |' in table


def test_task_dir_of_another_checkpoint_is_refused(chain, tmp_path):
    """A task directory whose summary names another checkpoint is never resumed or reused."""
    from mixedconv.benchmark.runner import TaskMismatch
    work_dir, _ = chain
    task_dir = run_dir(work_dir, 'mae')
    info = describe_checkpoint(osp.join(work_dir, 'pretrain', 'convmae', 'iter_2.pth'))
    with pytest.raises(TaskMismatch, match='holds the ade20k-upernet results of another'):
        run_task(info, 'ade20k-upernet', task_dir, embedded=True)


def _benchmark(*args, cwd=ROOT, **kwargs):
    return subprocess.run([sys.executable, osp.join(ROOT, 'tools', 'benchmark.py'), *args],
                          capture_output=True, text=True, timeout=600, cwd=cwd, **kwargs)


def test_failed_task_fails_the_run_from_any_directory(tmp_path):
    """Relative paths from another directory resolve against it; a failed task makes the
    exit code 1 and its whole reason is printed and recorded."""
    torch.save({'model': PlainViT(arch='tiny').state_dict()}, tmp_path / 'mae_vit_tiny.pth')
    out = _benchmark('mae_vit_tiny.pth', '--tasks', 'ade20k-upernet', '--data-root', 'none',
                     '--work-dir', 'wd', cwd=tmp_path)
    assert out.returncode == 1, out.stderr[-2000:]
    (summary,) = glob.glob(str(tmp_path / 'wd' / 'transfer' / '*' / 'ade20k-upernet' /
                                'summary.json'))
    record = read_summary(summary)
    assert record.status == 'failed'
    missing = osp.join(str(tmp_path), 'none', 'ade', 'ADEChallengeData2016')
    for text in (record.error, out.stderr):
        assert f'data_root {missing} does not exist' in text
        assert 'annotations/training/*.png' in text  # the layout, after "Expected layout:"
        assert '--cfg-options train_dataloader.dataset.data_root=' in text
    assert 'error: 1 of 1 tasks did not finish' in out.stderr


def _processes_mentioning(text):
    found = []
    for pid in filter(str.isdigit, os.listdir('/proc')):
        try:
            with open(f'/proc/{pid}/cmdline', 'rb') as f:
                if text.encode() in f.read():
                    found.append(int(pid))
        except OSError:
            continue
    return found


def test_sigkill_of_the_benchmark_leaves_no_trainer(tmp_path):
    """SIGKILL the benchmark while its trainer runs: the trainer dies too; the next run in
    that work dir is not refused and removes the temporaries the kill left."""
    work_dir = str(tmp_path / 'killed')
    proc = subprocess.Popen([sys.executable, osp.join(ROOT, 'tools', 'benchmark.py'),
                             '--pretrain', 'mae', '--tasks', 'ade20k-upernet', '--work-dir',
                             work_dir], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    trainer = osp.join(work_dir, 'pretrain', 'mae', 'benchmark_config.py')
    deadline = time.time() + 240
    while not [p for p in _processes_mentioning(trainer) if p != proc.pid]:
        assert time.time() < deadline and proc.poll() is None, 'no trainer started'
        time.sleep(0.5)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 30
    while _processes_mentioning(trainer) and time.time() < deadline:
        time.sleep(0.5)
    assert _processes_mentioning(trainer) == []

    from mixedconv.benchmark.runner import benchmark_lock
    stale = osp.join(work_dir, 'pretrain', 'mae', '.iter_30.pth.abc123.part')
    open(stale, 'wb').close()
    with benchmark_lock(work_dir):
        assert not osp.exists(stale)


def test_second_benchmark_on_a_work_dir_is_refused(tmp_path):
    from mixedconv.benchmark.runner import benchmark_lock
    work_dir = str(tmp_path / 'busy')
    with benchmark_lock(work_dir):
        out = _benchmark('--pretrain', 'mae', '--tasks', 'ade20k-upernet', '--work-dir',
                         work_dir)
    assert out.returncode == 2
    assert f'another benchmark (pid {os.getpid()}) is running in {work_dir}' in out.stderr


def test_summaries_a_killed_run_left_running_become_interrupted(tmp_path):
    from mixedconv.benchmark.runner import benchmark_lock
    from mixedconv.leaderboard import TaskSummary, summary_path, write_summary
    work_dir = str(tmp_path / 'wd')
    path = summary_path(osp.join(work_dir, 'transfer', 'run'), 'ade20k-upernet')
    write_summary(path, TaskSummary(task='ade20k-upernet', status='running', method='MAE',
                                    backbone='ViT-B'))
    with benchmark_lock(work_dir):
        record = read_summary(path)
    assert record.status == 'interrupted' and 'stopped before the task finished' in \
        record.error


def test_describe_official_save_model_checkpoint(tmp_path):
    """The official ConvMAE/MAE save_model layout: the args namespace names model and
    epochs; an args model that contradicts the tensors is an error."""
    import argparse
    state_dict = ConvViT(arch='s').state_dict()
    path = tmp_path / 'checkpoint-1599.pth'
    torch.save({'model': state_dict, 'optimizer': {}, 'epoch': 1599, 'scaler': {},
                'args': argparse.Namespace(model='convmae_convvit_small_patch16', epochs=1600,
                                           batch_size=64)}, path)
    info = describe_checkpoint(str(path))
    assert (info.family, info.arch, info.method, info.pretrain_epochs, info.backbone_label) == \
        ('ConvViT', 's', 'ConvMAE', 1600, 'ConvViT-S')
    torch.save({'model': state_dict,
                'args': argparse.Namespace(model='convmae_convvit_base_patch16')}, path)
    with pytest.raises(CheckpointError, match='save_model args\\) names arch ConvViT:b'):
        describe_checkpoint(str(path))
