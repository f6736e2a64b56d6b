"""The benchmark runner: checkpoint inspection and staging, task processes, resume and
recovery, the embedded chain, and the CPU check of a given checkpoint."""
import glob
import hashlib
import json
import os
import os.path as osp
import re
import shutil
import signal
import time
import subprocess
import sys

import pytest
import torch

from mixedconv.benchmark import Launch, describe_checkpoint, run_task, stage_checkpoint
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
    return work_dir, run_chain(['convmae', 'mae'], ['ade20k-upernet'], work_dir, iters=SMALL)


def test_embedded_chain_writes_leaderboard(chain):
    work_dir, run = chain
    files = run.leaderboard
    for kind in ('md', 'csv', 'html', 'png'):
        assert osp.isfile(files[kind])
    table = open(files['md']).read()
    assert '| ConvMAE (reduced) | ConvViT-tiny | 2 iters |' in table
    assert '| MAE (reduced) | ViT-tiny | 2 iters |' in table
    assert 'Deltas against MAE ViT-tiny' in table
    record = read_summary(osp.join(run_dir(work_dir, 'convmae'), 'ade20k-upernet',
                                   'summary.json'))
    assert record.status == 'done' and 0 <= record.metrics['mIoU'] <= 100
    assert len(record.checkpoint_sha256) == 64 and record.wall_time_s > 0
    assert record.pretrain_iters == 2 and record.reduced
    assert run_dir(work_dir, 'convmae').endswith(f'_iter_2-{record.checkpoint_sha256[:12]}')
    log = open(osp.join(run_dir(work_dir, 'convmae'), 'ade20k-upernet', 'train.log')).read()
    assert 'Iter(train) [2/2]' in log and 'Epoch(train)' not in log
    # the run's copy of the checkpoint is removed once every task of the run is done
    assert not osp.exists(osp.join(run_dir(work_dir, 'convmae'), 'pretrained.pth'))
    assert [r.status for r in run.records] == ['done', 'done'] and not run.unfinished


def test_embedded_leaderboard_says_on_the_page_what_it_is(chain):
    """The page itself (Markdown and HTML, before the table) says the models are tiny and
    the data generated; the pretraining column says what the run did."""
    _, run = chain
    for kind in ('md', 'html'):
        page = open(run.leaderboard[kind]).read()
        scope = page[:page.index('<table>' if kind == 'html' else '| method |')]
        assert 'tiny models' in scope and 'generated data' in scope, scope
        assert 'pretrained for 2 iterations' in scope
        assert 'reduced to 64 px generated images and 2 training iterations' in scope
    html = open(run.leaderboard['html']).read()
    assert '<td>2 iters</td>' in html


def run_dir(work_dir, method):
    """The transfer run directory of the chain's ``method`` checkpoint."""
    (path,) = glob.glob(osp.join(work_dir, 'transfer', f'{method}_*'))
    return path


def chain_checkpoint(work_dir, method):
    return osp.join(work_dir, 'pretrain', method, 'iter_2.pth')


def test_done_task_is_not_rerun(chain):
    work_dir, _ = chain
    path = osp.join(run_dir(work_dir, 'mae'), 'ade20k-upernet', 'summary.json')
    before = open(path).read()
    staged = stage_checkpoint(chain_checkpoint(work_dir, 'mae'), work_dir)
    assert staged.run_dir == run_dir(work_dir, 'mae')  # found by the sha256 of the bytes
    record = run_task(staged, 'ade20k-upernet', reduced=True)
    assert record.status == 'done' and open(path).read() == before


def test_failed_task_is_recorded(chain, tmp_path):
    """A task whose data is missing fails, with the error in its summary."""
    work_dir, _ = chain
    staged = stage_checkpoint(chain_checkpoint(work_dir, 'convmae'), str(tmp_path))
    record = run_task(staged, 'ade20k-upernet', data_root=str(tmp_path / 'none'), reduced=True)
    assert record.status == 'failed' and record.error
    assert read_summary(osp.join(staged.run_dir, 'ade20k-upernet', 'summary.json')).status \
        == 'failed'


def _copy_task(chain_work_dir, method, staged, keep_eval=True):
    """The chain's finished task directory of ``method``, copied into ``staged``'s run, its
    last_checkpoint pointing at the copy; without its logged evaluation unless
    ``keep_eval``."""
    src = osp.join(run_dir(chain_work_dir, method), 'ade20k-upernet')
    dst = osp.join(staged.run_dir, 'ade20k-upernet')
    shutil.copytree(src, dst)
    with open(osp.join(dst, 'last_checkpoint'), 'w') as f:
        f.write(osp.join(dst, 'iter_2.pth'))
    if not keep_eval:
        for folder in glob.glob(osp.join(dst, '2*_*')):
            shutil.rmtree(folder)
    summary = osp.join(dst, 'summary.json')
    with open(summary) as f:
        stored = json.load(f)
    with open(summary, 'w') as f:
        json.dump(dict(stored, status='interrupted', metrics={}), f)
    return dst, stored


def test_task_killed_after_its_evaluation_is_recorded_without_rerunning(chain, tmp_path):
    """Killed after the final evaluation was logged but before the summary said so: the
    logged evaluation is the result; nothing is trained again."""
    work_dir, _ = chain
    staged = stage_checkpoint(chain_checkpoint(work_dir, 'convmae'), str(tmp_path))
    task_dir, stored = _copy_task(work_dir, 'convmae', staged)
    log_before = open(osp.join(task_dir, 'train.log')).read()
    record = run_task(staged, 'ade20k-upernet', osp.join(work_dir, 'data'), reduced=True)
    assert record.status == 'done' and record.metrics == stored['metrics']
    assert open(osp.join(task_dir, 'train.log')).read() == log_before


def test_task_killed_before_its_final_evaluation_is_evaluated(chain, tmp_path, capsys):
    """Killed after the final iter_N.pth was written but before evaluation: a rerun
    evaluates that checkpoint instead of failing forever."""
    work_dir, _ = chain
    staged = stage_checkpoint(chain_checkpoint(work_dir, 'convmae'), str(tmp_path))
    task_dir, stored = _copy_task(work_dir, 'convmae', staged, keep_eval=False)
    log_before = open(osp.join(task_dir, 'train.log')).read()
    record = run_task(staged, 'ade20k-upernet', osp.join(work_dir, 'data'), reduced=True)
    assert record.status == 'done', record.error
    assert record.metrics['mIoU'] == pytest.approx(stored['metrics']['mIoU'])
    assert 'training had finished; evaluating' in capsys.readouterr().out
    added = open(osp.join(task_dir, 'train.log')).read()[len(log_before):]
    assert 'Iter(test)' in added and 'Iter(train)' not in added


def test_interrupted_task_resumes(chain, tmp_path):
    """A task stopped during training is run again from its last checkpoint."""
    work_dir, _ = chain
    staged = stage_checkpoint(chain_checkpoint(work_dir, 'convmae'), str(tmp_path))
    task_dir, _ = _copy_task(work_dir, 'convmae', staged, keep_eval=False)
    record = run_task(staged, 'ade20k-upernet', osp.join(work_dir, 'data'), reduced=True,
                      transfer_iters=4)
    assert record.status == 'done', record.error
    log = open(osp.join(task_dir, 'train.log')).read()
    assert 'resumed epoch: 0, iter: 2' in log and 'Iter(train) [4/4]' in log


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
    assert Launch().test_command('c.py', 'w', 'w/iter_9.pth') == [
        sys.executable, '-m', 'mixedconv.test', 'c.py', 'w/iter_9.pth', '--work-dir', 'w']
    assert slurm.test_command('c.py', 'w', 'w/iter_9.pth') is None


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
                            reduced=True)
    first, second = records
    assert first.status == second.status == 'done'
    assert first.checkpoint_sha256 != second.checkpoint_sha256
    assert first.metrics != second.metrics
    assert len(os.listdir(osp.join(bench, 'transfer'))) == 2
    table = open(write_leaderboard(records, bench)['md']).read()
    for record in records:
        sha = record.checkpoint_sha256[:12]
        assert f'| ConvMAE (reduced) | ConvViT-tiny | 2 iters | checkpoint.pth ({sha}) |' \
            in table


def test_one_file_under_two_names_is_trained_once(chain, tmp_path):
    """The same bytes under two names, in one benchmark and in a later one, are trained
    once: one record, read back by the later benchmark, one run folder and one leaderboard
    row."""
    from mixedconv.benchmark import run_benchmark
    from mixedconv.benchmark.runner import write_leaderboard
    work_dir, _ = chain
    first, second, third = (str(tmp_path / name) for name in ('a.pth', 'b.pth', 'c.pth'))
    for path in (first, second, third):
        shutil.copyfile(chain_checkpoint(work_dir, 'mae'), path)
    bench = str(tmp_path / 'bench')
    data = osp.join(work_dir, 'data')
    records = run_benchmark([first, second], ['ade20k-upernet'], bench, data, reduced=True)
    assert len(records) == 1 and records[0].status == 'done'
    (later,) = run_benchmark([third], ['ade20k-upernet'], bench, data, reduced=True)
    assert later == records[0]  # read back, not trained again
    assert len(os.listdir(osp.join(bench, 'transfer'))) == 1
    table = open(write_leaderboard(records, bench)['md']).read()
    assert table.count('| MAE (reduced) |') == 1


def test_task_dir_of_another_checkpoint_is_refused(chain, tmp_path):
    """A task directory whose summary names another checkpoint is never resumed or reused."""
    from dataclasses import replace

    from mixedconv.benchmark.runner import TaskMismatch
    work_dir, _ = chain
    staged = stage_checkpoint(chain_checkpoint(work_dir, 'convmae'), str(tmp_path))
    with pytest.raises(TaskMismatch, match='holds the ade20k-upernet results of another'):
        run_task(replace(staged, run_dir=run_dir(work_dir, 'mae')), 'ade20k-upernet',
                 reduced=True)


def test_recorded_hash_is_that_of_the_loaded_bytes(chain, tmp_path):
    """The checkpoint file is replaced after the benchmark read it: the task trains from the
    copy of the bytes that were hashed, and records their sha256."""
    work_dir, _ = chain
    path = str(tmp_path / 'convmae.pth')
    shutil.copyfile(chain_checkpoint(work_dir, 'convmae'), path)
    staged = stage_checkpoint(path, str(tmp_path / 'bench'))
    with open(path, 'rb') as f:
        original = f.read()
    torch.save({'state_dict': {}}, path)  # swapped on disk while the task runs
    config = osp.join(staged.run_dir, 'ade20k-upernet', 'benchmark_config.py')
    from mmengine.config import Config
    record = run_task(staged, 'ade20k-upernet', osp.join(work_dir, 'data'), reduced=True)
    assert record.status == 'done', record.error
    assert record.checkpoint_sha256 == hashlib.sha256(original).hexdigest()
    assert Config.fromfile(config).model.backbone.init_cfg.checkpoint == staged.weights


def test_names_with_mmengine_substitutions_load_what_was_hashed(chain, tmp_path, monkeypatch):
    """A checkpoint named T{{$NOPE_UNSET:X}}.pth beside a TX.pth, in a work dir whose path
    holds quotes and {{fileDirname}}: the task trains from the bytes it hashed, the data
    root it was given is the one read, and nothing in a path runs."""
    from mixedconv.benchmark import run_benchmark
    work_dir, _ = chain
    marker = tmp_path / 'ran'
    monkeypatch.setenv('MIXEDCONV_TEST_MARKER', str(marker))
    payload = ('q"\'+__import__(\'pathlib\').Path(__import__(\'os\').environ['
               '\'MIXEDCONV_TEST_MARKER\']).touch()+\'{{fileDirname}}')
    bench = tmp_path / payload
    data = tmp_path / 'd{{$HOME}}'
    shutil.copytree(osp.join(work_dir, 'data'), data)
    named = tmp_path / 'T{{$NOPE_UNSET:X}}.pth'
    shutil.copyfile(chain_checkpoint(work_dir, 'mae'), named)
    shutil.copyfile(chain_checkpoint(work_dir, 'convmae'), tmp_path / 'TX.pth')
    (record,) = run_benchmark([str(named)], ['ade20k-upernet'], str(bench), str(data),
                              reduced=True)
    assert not marker.exists()
    assert record.status == 'done', record.error
    assert record.checkpoint == str(named) and record.method == 'MAE'
    assert record.checkpoint_sha256 == hashlib.sha256(named.read_bytes()).hexdigest()
    from mmengine.config import Config
    cfg = Config.fromfile(record.config)  # the recorded config is safe to read with mmengine
    assert cfg.train_dataloader.dataset.data_root.startswith(str(data))
    assert cfg.model.backbone.init_cfg.checkpoint.startswith(str(bench))
    assert not marker.exists()


def _benchmark(*args, cwd=ROOT, **kwargs):
    return subprocess.run([sys.executable, osp.join(ROOT, 'tools', 'benchmark.py'), *args],
                          capture_output=True, text=True, timeout=600, cwd=cwd, **kwargs)


def test_failed_task_fails_the_run_from_any_directory(tmp_path):
    """Relative paths from another directory resolve against it; a failed task makes the
    exit code 1 and its whole reason is printed and recorded."""
    torch.save({'model': PlainViT(arch='tiny').state_dict()}, tmp_path / 'mae_vit_tiny.pth')
    out = _benchmark('mae_vit_tiny.pth', '--tasks', 'ade20k-upernet', '--data-root', 'none',
                     '--work-dir', 'wd', '--no-amp', cwd=tmp_path)
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
    from mixedconv.fileio import create_temporary
    fd, stale = create_temporary(osp.join(work_dir, 'pretrain', 'mae', 'iter_30.pth'))
    os.close(fd)
    with benchmark_lock(work_dir):
        assert not osp.exists(stale)


def test_start_removes_only_its_own_temporaries(tmp_path):
    """A benchmark start removes the temporaries a killed run left where the benchmark and
    its trainers write (names :func:`create_temporary` gives), and no other *.part file
    under the work dir, not even a user's dot-file in a folder the benchmark writes."""
    from mixedconv.benchmark.runner import benchmark_lock
    from mixedconv.fileio import create_temporary
    work_dir = tmp_path / 'wd'
    ours = [work_dir / 'pretrain' / 'mae' / 'iter_30.pth',
            work_dir / 'transfer' / 'run-0123' / 'pretrained.pth',
            work_dir / 'transfer' / 'run-0123' / 'coco-maskrcnn' / 'iter_4.pth',
            work_dir / 'leaderboard' / 'leaderboard.md']
    users = [work_dir / 'notes' / '.thesis-draft.part', work_dir / '.draft.part',
             work_dir / 'transfer' / 'run-0123' / 'coco-maskrcnn' / 'vis' / '.plot.part',
             work_dir / 'pretrain' / 'mae' / '.thesis-draft.part',
             work_dir / 'transfer' / 'run-0123' / 'coco-maskrcnn' / '.iter_4.pth.notes.part',
             work_dir / 'leaderboard' / '.leaderboard.md.abcdefgh.part']
    for path in users:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text('x')
    for i, path in enumerate(ours):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = create_temporary(path)
        os.close(fd)
        ours[i] = type(path)(tmp)
    with benchmark_lock(str(work_dir)):
        pass
    assert [p for p in ours if p.exists()] == []
    assert [p for p in users if not p.exists()] == []


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


def test_a_checkpoint_is_tried_on_cpu_without_data(chain, tmp_path):
    """tools/benchmark.py CKPT without --data-root: the recipes at a reduced size on
    generated data, with the checkpoint's own backbone (a ViT-S here); the screen and the
    leaderboard say what it was."""
    torch.save({'model': PlainViT(arch='small').state_dict()}, tmp_path / 'mae_vit_small.pth')
    out = _benchmark(str(tmp_path / 'mae_vit_small.pth'), '--tasks', 'ade20k-upernet',
                     '--work-dir', str(tmp_path / 'wd'))
    assert out.returncode == 0, out.stderr[-3000:]
    assert 'No --data-root: the recipes run at a reduced size' in out.stdout
    assert 'the numbers are not results' in out.stdout
    (summary,) = glob.glob(str(tmp_path / 'wd' / 'transfer' / '*' / 'ade20k-upernet' /
                                'summary.json'))
    record = read_summary(summary)
    assert record.status == 'done' and record.reduced and record.backbone == 'ViT-S'
    page = open(tmp_path / 'wd' / 'leaderboard' / 'leaderboard.md').read()
    assert '| MAE (reduced) | ViT-S |' in page
    assert page.startswith('> **Rows marked (reduced) are not results')
    assert 'generated data' in page.split('\n')[0]


@pytest.mark.skipif(torch.cuda.is_available(), reason='the refusal is for machines without CUDA')
def test_amp_without_cuda_is_refused_up_front(tmp_path):
    """The full recipes train with mixed precision: on a machine without CUDA the benchmark
    says so before training anything, naming the flag that turns it off."""
    torch.save({'model': PlainViT(arch='tiny').state_dict()}, tmp_path / 'mae_vit_tiny.pth')
    started = time.time()
    out = _benchmark(str(tmp_path / 'mae_vit_tiny.pth'), '--tasks', 'ade20k-upernet',
                     '--data-root', str(tmp_path / 'data'), '--work-dir', str(tmp_path / 'wd'))
    assert out.returncode == 2, out.stderr[-2000:]
    assert 'mixed precision (AmpOptimWrapper), which needs a CUDA device' in out.stderr
    assert '--no-amp' in out.stderr and 'Traceback' not in out.stderr
    assert not glob.glob(str(tmp_path / 'wd' / 'transfer' / '*' / '*' / 'summary.json'))
    assert time.time() - started < 120


def test_work_dir_that_is_a_file_is_an_error(tmp_path):
    (tmp_path / 'wd').write_text('not a folder')
    torch.save({'model': PlainViT(arch='tiny').state_dict()}, tmp_path / 'mae_vit_tiny.pth')
    out = _benchmark(str(tmp_path / 'mae_vit_tiny.pth'), '--work-dir', str(tmp_path / 'wd'))
    assert out.returncode == 2 and 'Traceback' not in out.stderr
    assert f'error: --work-dir {tmp_path / "wd"}: {tmp_path / "wd"} is a file, not a ' \
        'directory; pass a directory' in out.stderr
