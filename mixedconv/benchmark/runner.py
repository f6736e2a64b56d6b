"""Run benchmark tasks as separate training processes and record each in a ``summary.json``.

Layout of a benchmark work directory::

    <work_dir>/pretrain/<method>/            pretraining runs (``--pretrain``)
    <work_dir>/transfer/<run>/<task>/        one mmengine work dir per checkpoint and task,
                                             with benchmark_config.py, train.log, summary.json
    <work_dir>/leaderboard/                  leaderboard.md/.csv/.html/.png

``<run>`` is named after the method, backbone and file name of the checkpoint and the first 12
hex digits of its sha256, so two different files called ``epoch_1600.pth`` never share a
directory. A task whose summary says ``done`` for the same checkpoint is not run again; a
``running``, ``failed`` or ``interrupted`` one is run again and resumes from its last
checkpoint; a task directory whose summary names another checkpoint is an error, never
resumed or reused.

One benchmark at a time works in a work directory (``<work_dir>/.benchmark.lock``, an
``flock`` the kernel releases when the process dies). Training processes die with the
benchmark, even on SIGKILL (``PR_SET_PDEATHSIG``), and at the next start the summaries a
killed run left at ``running`` become ``interrupted`` and its half-written checkpoint
temporaries are removed.
"""
import contextlib
import fcntl
import glob
import os
import os.path as osp
import re
import signal
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, replace
from typing import Optional

from mmengine.config import Config

from ..config_files import config_path
from ..fileio import remove_stale_temporaries
from ..launch import DIE_WITH_PARENT_ENV, check_process_count, die_with_parent
from ..leaderboard.collect import read_mmengine_work_dir
from ..leaderboard.table import short_sha
from ..leaderboard.summary import (TaskSummary, current_git_commit, read_summary, sha256_of,
                                   summary_path, utc_now, write_summary)
from .checkpoints import describe_checkpoint
from .recipes import (DATA_DIRS, PRETRAIN_CONFIGS, REPO, TASK_DATA, adapt_backbone,
                      adapt_heads, set_data_root, task_config)
from .tiny import shrink_pretrain, shrink_transfer

PROGRESS = re.compile(r'(Epoch|Iter)\((train|val|test)\)|mmengine - ERROR|Error|Traceback')
LOCK_NAME = '.benchmark.lock'


class BenchmarkBusy(RuntimeError):
    """Another benchmark works in the same work directory."""


class TaskMismatch(RuntimeError):
    """A task directory holds the results of another checkpoint."""


@dataclass
class Launch:
    """How training processes start: ``'none'`` (one process), ``'pytorch'`` (torchrun with
    ``gpus`` processes) or ``'slurm'`` (:mod:`mixedconv.slurm`: ``srun`` with ``gpus``
    tasks on ``partition``)."""
    launcher: str = 'none'
    gpus: int = 1
    partition: Optional[str] = None

    def __post_init__(self):
        if self.launcher not in ('none', 'pytorch', 'slurm'):
            raise ValueError(f'unknown launcher {self.launcher!r}; valid: none, pytorch, slurm')
        if self.launcher == 'slurm' and not self.partition:
            raise ValueError('--launcher slurm needs --partition')
        check_process_count(self.launcher, self.gpus)

    def command(self, config, work_dir, resume, job_name='mixedconv'):
        """The command line that trains ``config`` into ``work_dir``."""
        extra = ['--resume'] if resume else []
        if self.launcher == 'slurm':
            return [sys.executable, '-m', 'mixedconv.slurm', self.partition, job_name, config,
                    work_dir, *extra]
        args = ['-m', 'mixedconv.train', config, '--work-dir', work_dir, *extra]
        if self.launcher == 'pytorch':
            return [sys.executable, '-m', 'torch.distributed.run',
                    f'--nproc_per_node={self.gpus}', *args, '--launcher', 'pytorch']
        return [sys.executable, *args]

    def env(self):
        env = dict(os.environ, PYTHON=sys.executable, **{DIE_WITH_PARENT_ENV: '1'})
        if self.launcher == 'slurm':
            env['GPUS'] = str(self.gpus)
        return env


def run_logged(cmd, log_path, label, env=None):
    """Run ``cmd``, append its output to ``log_path`` and echo progress lines.

    The child runs in its own process group, which is killed when the benchmark stops on
    an exception or a signal, and it gets SIGKILL from the kernel if the benchmark is
    killed outright. ``tools/train.py`` asks the same for its own children (torchrun's
    workers), so no trainer outlives the benchmark.

    Returns:
        tuple[int, list[str]]: exit code and the last output lines.
    """
    tail = deque(maxlen=200)
    with open(log_path, 'a') as log, subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
            cwd=REPO, start_new_session=True, preexec_fn=die_with_parent) as proc:
        try:
            for line in proc.stdout:
                log.write(line)
                tail.append(line.rstrip())
                if PROGRESS.search(line):
                    print(f'[{label}] {line.rstrip()[-160:]}', flush=True)
        except BaseException:
            _kill_group(proc)
            raise
        return proc.wait(), list(tail)


def _kill_group(proc, grace_s=10):
    """SIGTERM the child's process group, SIGKILL what is left after ``grace_s``."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=grace_s)
            return
        except subprocess.TimeoutExpired:
            continue


def _error_of(tail):
    """The reason a child failed, whole: our tools print ``error: ...`` (possibly several
    lines) for user errors; otherwise the last exception of a traceback."""
    starts = [i for i, line in enumerate(tail) if line.startswith('error: ')]
    if not starts:
        starts = [i for i, line in enumerate(tail) if line.startswith('Traceback')]
        if starts:
            lines = tail[starts[-1]:]
            ends = [i for i, line in enumerate(lines)
                    if re.match(r'[\w.]+(Error|Exception|Interrupt)\b', line)]
            return '\n'.join(lines[ends[-1]:] if ends else lines[-3:])
    if starts:
        return '\n'.join(tail[starts[-1]:])
    errors = [line for line in tail if re.search(r'Error|error:', line)]
    return errors[-1] if errors else '\n'.join(tail[-3:])


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
        if previous.checkpoint_sha256 != sha:
            raise TaskMismatch(
                f'{task_dir} holds the {task} results of another checkpoint (sha256 '
                f'{previous.checkpoint_sha256}, {previous.checkpoint}), not of {info.path} '
                f'(sha256 {sha}); it is neither reused nor resumed. Use another --work-dir, '
                'or delete that directory to rerun the task.')
        if previous.status == 'done':
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
    work_dir = osp.abspath(work_dir)
    cfg = Config.fromfile(config_path(PRETRAIN_CONFIGS[method]))
    data_dir = osp.join(osp.abspath(data_root), DATA_DIRS['imagenet']) if data_root else None
    if embedded:
        shrink_pretrain(cfg, data_dir, iters=iters)
    elif data_dir:
        set_data_root(cfg, data_dir)
    run_dir = osp.join(work_dir, 'pretrain', method)
    final = 'iter_{}.pth'.format(cfg.train_cfg['max_iters']) if 'max_iters' in cfg.train_cfg \
        else 'epoch_{}.pth'.format(cfg.train_cfg['max_epochs'])
    with benchmark_lock(work_dir):
        os.makedirs(run_dir, exist_ok=True)
        last = _last_checkpoint(run_dir)
        if last and osp.basename(last) == final and osp.isfile(last):
            print(f'[pretrain/{method}] done before, not rerun: {last}', flush=True)
            return last
        config = osp.join(run_dir, 'benchmark_config.py')
        cfg.dump(config)
        code, tail = run_logged(launch.command(config, run_dir, resume=last is not None),
                                osp.join(run_dir, 'train.log'), f'pretrain/{method}',
                                launch.env())
        last = _last_checkpoint(run_dir)
    if code != 0 or not last:
        raise RuntimeError(f'pretraining {method} failed ({_error_of(tail)}); '
                           f'log: {osp.join(run_dir, "train.log")}')
    return last


def run_benchmark(checkpoints, tasks, work_dir, data_root=None, embedded=False,
                  launch=Launch(), method=None, transfer_iters=2, arch=None):
    """Run every task for every checkpoint; returns the list of summaries. ``method`` and
    ``arch`` state what the checkpoints are (see :func:`describe_checkpoint`)."""
    work_dir = osp.abspath(work_dir)
    data_root = data_root and osp.abspath(data_root)
    infos = [describe_checkpoint(osp.abspath(path), method, arch) for path in checkpoints]
    records = []
    with benchmark_lock(work_dir):
        for info in infos:
            run_dir = osp.join(work_dir, 'transfer', run_name(info))
            for task in tasks:
                records.append(run_task(info, task, run_dir, data_root, embedded, launch,
                                        transfer_iters))
    return records


def run_name(info, sha256=None):
    """``<method>_<backbone>_<file stem>-<short sha256>``: different files never share it."""
    sha256 = sha256 or sha256_of(info.path)
    stem = re.sub(r'[^\w.-]+', '-', osp.splitext(osp.basename(info.path))[0])
    return f'{info.method.lower()}_{info.backbone_label.lower()}_{stem}-{short_sha(sha256)}'


@contextlib.contextmanager
def benchmark_lock(work_dir):
    """Hold ``<work_dir>/.benchmark.lock`` for the benchmark's lifetime (re-entrant within
    one process), and tidy what a killed run left: ``running`` summaries become
    ``interrupted``, half-written checkpoint temporaries are removed.

    Raises:
        BenchmarkBusy: another live process holds the lock.
    """
    work_dir = osp.abspath(work_dir)
    if work_dir in _HELD_LOCKS:
        yield
        return
    os.makedirs(work_dir, exist_ok=True)
    path = osp.join(work_dir, LOCK_NAME)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors='replace').strip() or 'unknown'
            raise BenchmarkBusy(
                f'another benchmark (pid {holder}) is running in {work_dir}; wait for it to '
                'finish, or give this one another --work-dir') from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f'{os.getpid()}\n'.encode(), 0)
        _tidy_after_kill(work_dir)
        _HELD_LOCKS.add(work_dir)
        try:
            yield
        finally:
            _HELD_LOCKS.discard(work_dir)
    finally:
        os.close(fd)


_HELD_LOCKS = set()


def _tidy_after_kill(work_dir):
    for path in glob.glob(osp.join(work_dir, '**', 'summary.json'), recursive=True):
        try:
            record = read_summary(path)
        except Exception:  # a malformed summary is reported where it is read
            continue
        if record.status == 'running':
            write_summary(path, replace(record, status='interrupted', finished=utc_now(),
                                        error='the benchmark was stopped before the task '
                                              'finished'))
    for removed in remove_stale_temporaries(work_dir):
        print(f'removed a checkpoint temporary left by a killed run: {removed}', flush=True)


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
              iters=EMBEDDED, with_records=False):
    """Pretrain ``methods``, transfer each encoder to ``tasks``, write the leaderboard.

    Without ``data_root`` this is the embedded default benchmark: generated data in the real
    formats and tiny models trained for ``iters`` (pretrain_iters, transfer_iters), a few
    minutes on a CPU. With it, the real recipes run.

    Returns:
        dict[str, str]: leaderboard format -> file; with ``with_records``, also the list of
        task summaries.
    """
    work_dir = osp.abspath(work_dir)
    embedded = data_root is None
    with benchmark_lock(work_dir):
        if embedded:
            data_root = make_embedded_data(osp.join(work_dir, 'data'))
        checkpoints = [pretrain(m, work_dir, data_root, embedded, launch,
                                iters['pretrain_iters']) for m in methods]
        records = run_benchmark(checkpoints, tasks, work_dir, data_root, embedded, launch,
                                transfer_iters=iters['transfer_iters'])
        files = write_leaderboard(records, work_dir, baseline)
    return (files, records) if with_records else files


def write_leaderboard(records, work_dir, baseline='MAE'):
    """The leaderboard of ``<work_dir>/transfer`` with deltas against the first row of the
    ``baseline`` method among ``records`` (none if it was not benchmarked)."""
    from ..leaderboard import make_leaderboard
    rows = [f'{r.method} {r.backbone} [{short_sha(r.checkpoint_sha256)}]' for r in records
            if r.method == baseline and r.checkpoint_sha256]
    return make_leaderboard([osp.join(work_dir, 'transfer')], osp.join(work_dir, 'leaderboard'),
                            baseline=rows[0] if rows else None)
