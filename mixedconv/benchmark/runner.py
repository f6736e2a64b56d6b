"""Run benchmark tasks as separate training processes and record each in a ``summary.json``.

Layout of a benchmark work directory::

    <work_dir>/pretrain/<method>/            pretraining runs (``--pretrain``)
    <work_dir>/transfer/<run>/<task>/        one mmengine work dir per checkpoint and task,
                                             with benchmark_config.py, train.log, summary.json
    <work_dir>/leaderboard/                  leaderboard.md/.csv/.html/.png

A task whose summary says ``done`` for the same checkpoint (sha256) is not run again; a
``running``, ``failed`` or ``interrupted`` one is run again and resumes from its last
checkpoint.
"""
import os
import os.path as osp
import re
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, replace
from typing import Optional

from mmengine.config import Config

from ..leaderboard.collect import read_mmengine_work_dir
from ..leaderboard.summary import (TaskSummary, current_git_commit, read_summary, sha256_of,
                                   summary_path, utc_now, write_summary)
from .checkpoints import describe_checkpoint
from .recipes import (DATA_DIRS, PRETRAIN_CONFIGS, REPO, TASK_DATA, adapt_backbone,
                      adapt_heads, set_data_root, task_config)
from .tiny import shrink_pretrain, shrink_transfer

PROGRESS = re.compile(r'(Epoch|Iter)\((train|val|test)\)|mmengine - ERROR|Error|Traceback')


@dataclass
class Launch:
    """How training processes start: ``'none'`` (one process), ``'pytorch'`` (torchrun with
    ``gpus`` processes) or ``'slurm'`` (``tools/slurm_train.sh`` on ``partition``)."""
    launcher: str = 'none'
    gpus: int = 1
    partition: Optional[str] = None

    def __post_init__(self):
        if self.launcher not in ('none', 'pytorch', 'slurm'):
            raise ValueError(f'unknown launcher {self.launcher!r}; valid: none, pytorch, slurm')
        if self.launcher == 'slurm' and not self.partition:
            raise ValueError('--launcher slurm needs --partition')

    def command(self, config, work_dir, resume, job_name='mixedconv'):
        """The command line that trains ``config`` into ``work_dir``."""
        extra = ['--resume'] if resume else []
        train = osp.join(REPO, 'tools', 'train.py')
        if self.launcher == 'slurm':
            return ['bash', osp.join(REPO, 'tools', 'slurm_train.sh'), self.partition, job_name,
                    config, work_dir, *extra]
        args = [train, config, '--work-dir', work_dir, *extra]
        if self.launcher == 'pytorch':
            return [sys.executable, '-m', 'torch.distributed.run',
                    f'--nproc_per_node={self.gpus}', *args, '--launcher', 'pytorch']
        return [sys.executable, *args]

    def env(self):
        env = dict(os.environ, PYTHON=sys.executable)
        if self.launcher == 'slurm':
            env['GPUS'] = str(self.gpus)
        return env


def run_logged(cmd, log_path, label, env=None):
    """Run ``cmd``, append its output to ``log_path`` and echo progress lines.

    Returns:
        tuple[int, list[str]]: exit code and the last output lines.
    """
    tail = deque(maxlen=60)
    with open(log_path, 'a') as log, subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
            cwd=REPO) as proc:
        try:
            for line in proc.stdout:
                log.write(line)
                tail.append(line.rstrip())
                if PROGRESS.search(line):
                    print(f'[{label}] {line.rstrip()[-160:]}', flush=True)
        except KeyboardInterrupt:
            proc.terminate()
            proc.wait()
            raise
        return proc.wait(), list(tail)


def _error_of(tail):
    errors = [line for line in tail if re.search(r'Error|error:', line)]
    return (errors[-1] if errors else '\n'.join(tail[-3:]))[-500:]


def _last_checkpoint(work_dir):
    path = osp.join(work_dir, 'last_checkpoint')
    if not osp.isfile(path):
        return None
    with open(path) as f:
        return f.read().strip() or None


def build_task_config(info, task, data_root=None, embedded=False, transfer_iters=2):
    """The config of ``task`` for the checkpoint described by ``info``.

    ``embedded`` shrinks it to the tiny sizes of the generated benchmark (the checkpoint must
    then be a tiny one); otherwise the recipe runs at full size on the backbone arch of the
    checkpoint, with datasets under ``data_root`` (mm layout) or the recipe's defaults.
    """
    cfg = Config.fromfile(task_config(task, info.family))
    data_dir = osp.join(data_root, DATA_DIRS[TASK_DATA[task]]) if data_root else None
    if embedded:
        if data_dir is None:
            raise ValueError('the embedded benchmark needs the data_root of its generated data')
        shrink_transfer(cfg, data_dir, iters=transfer_iters)
        if cfg.model.backbone.arch != info.arch:
            raise ValueError(f'{info.path} is not a checkpoint of the embedded benchmark\'s '
                             'tiny encoders; run real checkpoints without --embedded')
    else:
        adapt_backbone(cfg.model.backbone, info.arch)
        adapt_heads(cfg)
        if data_dir:
            set_data_root(cfg, data_dir)
    cfg.model.backbone.init_cfg = dict(type='Pretrained', checkpoint=osp.abspath(info.path))
    return cfg


def run_task(info, task, work_dir, data_root=None, embedded=False, launch=Launch(),
             transfer_iters=2):
    """Train and evaluate ``task`` from checkpoint ``info``; returns its :class:`TaskSummary`."""
    path = summary_path(work_dir, task)
    task_dir = osp.dirname(path)
    label = f'{osp.basename(work_dir)}/{task}'
    sha = sha256_of(info.path)
    if osp.isfile(path):
        previous = read_summary(path)
        if previous.status == 'done' and previous.checkpoint_sha256 == sha:
            print(f'[{label}] done before, not rerun: {previous.metrics}', flush=True)
            return previous
    os.makedirs(task_dir, exist_ok=True)
    config = osp.join(task_dir, 'benchmark_config.py')
    build_task_config(info, task, data_root, embedded, transfer_iters).dump(config)
    record = TaskSummary(
        task=task, status='running', method=info.method, backbone=info.backbone_label,
        pretrain_epochs=info.pretrain_epochs, checkpoint=osp.abspath(info.path),
        checkpoint_sha256=sha, config=config, git_commit=current_git_commit(REPO),
        started=utc_now())
    write_summary(path, record)
    resume = _last_checkpoint(task_dir) is not None
    print(f'[{label}] {"resuming" if resume else "starting"}: {config}', flush=True)
    start = time.time()
    try:
        code, tail = run_logged(launch.command(config, task_dir, resume),
                                osp.join(task_dir, 'train.log'), label, launch.env())
    except KeyboardInterrupt:
        write_summary(path, replace(record, status='interrupted', error='interrupted',
                                    wall_time_s=time.time() - start, finished=utc_now()))
        raise
    result = read_mmengine_work_dir(task_dir) if code == 0 else None
    if result is not None:
        record = replace(record, status='done', metrics=result.record.metrics)
    else:
        record = replace(record, status='failed', error=_error_of(tail) if code else
                         'training finished without evaluation metrics')
    record = replace(record, wall_time_s=round(time.time() - start, 1), finished=utc_now())
    write_summary(path, record)
    print(f'[{label}] {record.status} in {record.wall_time_s:.0f} s: '
          f'{record.metrics or record.error}', flush=True)
    return record


def pretrain(method, work_dir, data_root=None, embedded=False, launch=Launch(), iters=2):
    """Pretrain ``method`` (a key of ``PRETRAIN_CONFIGS``); returns its last checkpoint.

    A finished run (its last checkpoint is the final one) is not run again.
    """
    cfg = Config.fromfile(osp.join(REPO, PRETRAIN_CONFIGS[method]))
    data_dir = osp.join(data_root, DATA_DIRS['imagenet']) if data_root else None
    if embedded:
        shrink_pretrain(cfg, data_dir, iters=iters)
    elif data_dir:
        set_data_root(cfg, data_dir)
    run_dir = osp.join(work_dir, 'pretrain', method)
    os.makedirs(run_dir, exist_ok=True)
    final = 'iter_{}.pth'.format(cfg.train_cfg['max_iters']) if 'max_iters' in cfg.train_cfg \
        else 'epoch_{}.pth'.format(cfg.train_cfg['max_epochs'])
    last = _last_checkpoint(run_dir)
    if last and osp.basename(last) == final and osp.isfile(last):
        print(f'[pretrain/{method}] done before, not rerun: {last}', flush=True)
        return last
    config = osp.join(run_dir, 'benchmark_config.py')
    cfg.dump(config)
    code, tail = run_logged(launch.command(config, run_dir, resume=last is not None),
                            osp.join(run_dir, 'train.log'), f'pretrain/{method}', launch.env())
    last = _last_checkpoint(run_dir)
    if code != 0 or not last:
        raise RuntimeError(f'pretraining {method} failed ({_error_of(tail)}); '
                           f'log: {osp.join(run_dir, "train.log")}')
    return last


def run_benchmark(checkpoints, tasks, work_dir, data_root=None, embedded=False,
                  launch=Launch(), method=None, transfer_iters=2, arch=None):
    """Run every task for every checkpoint; returns the list of summaries. ``method`` and
    ``arch`` state what the checkpoints are (see :func:`describe_checkpoint`)."""
    records = []
    for checkpoint in checkpoints:
        info = describe_checkpoint(checkpoint, method, arch)
        run_name = f'{info.method.lower()}_{info.backbone_label.lower()}_' \
                   f'{osp.splitext(osp.basename(checkpoint))[0]}'
        for task in tasks:
            records.append(run_task(info, task, osp.join(work_dir, 'transfer', run_name),
                                    data_root, embedded, launch, transfer_iters))
    return records


EMBEDDED = dict(pretrain_iters=30, transfer_iters=10)


def make_embedded_data(data_root):
    """The generated benchmark data in the mm layouts under ``data_root`` (made once)."""
    from ..data import make_ade20k, make_coco, make_image_folder
    done = osp.join(data_root, '.complete')
    if not osp.isfile(done):
        make_image_folder(osp.join(data_root, DATA_DIRS['imagenet'], 'train'), num_images=32)
        make_coco(osp.join(data_root, DATA_DIRS['coco']), num_train=8, num_val=4)
        make_ade20k(osp.join(data_root, DATA_DIRS['ade20k']), num_train=8, num_val=4)
        open(done, 'w').close()
    return data_root


def run_chain(methods, tasks, work_dir, data_root=None, launch=Launch(), baseline='MAE',
              iters=EMBEDDED):
    """Pretrain ``methods``, transfer each encoder to ``tasks``, write the leaderboard.

    Without ``data_root`` this is the embedded default benchmark: generated data in the real
    formats and tiny models trained for ``iters`` (pretrain_iters, transfer_iters), a few
    minutes on a CPU. With it, the real recipes run.

    Returns:
        dict[str, str]: leaderboard format -> file.
    """
    embedded = data_root is None
    if embedded:
        data_root = make_embedded_data(osp.join(work_dir, 'data'))
    checkpoints = [pretrain(m, work_dir, data_root, embedded, launch, iters['pretrain_iters'])
                   for m in methods]
    records = run_benchmark(checkpoints, tasks, work_dir, data_root, embedded, launch,
                            transfer_iters=iters['transfer_iters'])
    return write_leaderboard(records, work_dir, baseline)


def write_leaderboard(records, work_dir, baseline='MAE'):
    """The leaderboard of ``<work_dir>/transfer`` with deltas against the first row of the
    ``baseline`` method among ``records`` (none if it was not benchmarked)."""
    from ..leaderboard import make_leaderboard
    rows = [f'{r.method} {r.backbone}' for r in records if r.method == baseline]
    return make_leaderboard([osp.join(work_dir, 'transfer')], osp.join(work_dir, 'leaderboard'),
                            baseline=rows[0] if rows else None)
