"""Run benchmark tasks as separate training processes and record each in a ``summary.json``.

Each checkpoint is copied into the work directory and the copy's bytes are hashed and loaded
(:mod:`.layout`), so the sha256 a summary records is that of the weights the task trained
from. A task whose summary says ``done`` for the same bytes is not run again; a ``running``,
``failed`` or ``interrupted`` one is run again: from its final checkpoint's evaluation when
training had finished, else resuming from its last checkpoint. A task directory whose
summary names other bytes is an error, never resumed or reused.

Three scales: the full recipes (``data_root`` given, or the configs' own data paths); the
recipes at a reduced size on generated data (``reduced``: 64 px images, a few iterations,
the checkpoint's own arch), a check on a CPU that a checkpoint goes through the whole chain;
and the embedded default benchmark (:func:`run_chain` without data), which pretrains tiny
encoders for the reduced recipes. Training processes die with the benchmark, even on SIGKILL
(``PR_SET_PDEATHSIG``).
"""
import os
import os.path as osp
import time
from dataclasses import dataclass, replace
from typing import Dict, List

from mmengine.config import Config

from ..config_files import config_path
from ..families import MAE
from ..results import (TaskSummary, current_git_commit, read_summary, short_sha, summary_path,
                       utc_now, write_summary)
from ..results.protocols import protocol_of_recipe, reduced_protocol
from ..results.workdir import final_checkpoint_name, final_evaluation
from .checkpoints import describe_checkpoint  # noqa: F401  (re-exported)
from .dump import dump_config
from .layout import (BenchmarkBusy, Staged, benchmark_lock, release_weights,  # noqa: F401
                     run_name, stage_checkpoint, transfer_dir)
from .processes import Launch, error_of, run_logged
from .recipes import (DATA_DIRS, PRETRAIN_CONFIGS, REPO, TASK_DATA, adapt_backbone,
                      adapt_heads, disable_amp, set_data_root, task_config, uses_amp)
from .tiny import SIZE, shrink_pretrain, shrink_transfer

EMBEDDED = dict(pretrain_iters=30, transfer_iters=10)


class TaskMismatch(RuntimeError):
    """A task directory holds the results of another checkpoint."""


class AmpNeedsCuda(ValueError):
    """A recipe trains with mixed precision on a machine without CUDA."""


@dataclass
class BenchmarkRun:
    """What a benchmark produced: one summary per (checkpoint, task), and the leaderboard
    files (format -> path)."""
    records: List[TaskSummary]
    leaderboard: Dict[str, str]

    @property
    def unfinished(self):
        return [r for r in self.records if r.status != 'done']


def _last_checkpoint(work_dir):
    path = osp.join(work_dir, 'last_checkpoint')
    if not osp.isfile(path):
        return None
    with open(path) as f:
        return f.read().strip() or None


def build_task_config(info, task, data_root=None, reduced=False, transfer_iters=2,
                      weights=None, amp=True):
    """The config of ``task`` for the checkpoint described by ``info``.

    ``reduced`` shrinks it to 64 px generated images and ``transfer_iters`` iterations with
    narrow heads, keeping the checkpoint's arch, on the generated sets under ``data_root``;
    otherwise the recipe runs at full size on the backbone arch of the checkpoint, with
    datasets under ``data_root`` (mm layout) or the recipe's defaults. The backbone loads
    ``weights`` (default: ``info.path``). ``amp=False`` trains in float32.
    """
    cfg = Config.fromfile(task_config(task, info.family))
    data_dir = osp.join(data_root, DATA_DIRS[TASK_DATA[task]]) if data_root else None
    if reduced:
        if data_dir is None:
            raise ValueError('a reduced run needs the data_root of its generated data')
        shrink_transfer(cfg, data_dir, iters=transfer_iters, arch=info.arch)
    else:
        adapt_backbone(cfg.model.backbone, info.arch)
        adapt_heads(cfg)
        if data_dir:
            set_data_root(cfg, data_dir)
    if not amp:
        disable_amp(cfg)
    cfg.model.backbone.init_cfg = dict(type='Pretrained',
                                       checkpoint=osp.abspath(weights or info.path))
    return cfg


def task_protocol(task, family, reduced=False, transfer_iters=2, amp=True):
    """The protocol a task's numbers are obtained with (:mod:`mixedconv.results.protocols`)."""
    if reduced:
        return reduced_protocol(SIZE, transfer_iters)
    protocol = protocol_of_recipe(task_config(task, family))
    if protocol and not amp:
        protocol += ', float32 instead of the recipe\'s mixed precision'
    return protocol


def check_amp(cfg, launch, what):
    """Refuse up front a recipe that trains with mixed precision where the processes run on
    this machine and it has no CUDA (mmengine would stop after loading everything)."""
    import torch
    if uses_amp(cfg) and launch.local and not torch.cuda.is_available():
        raise AmpNeedsCuda(
            f'{what} trains with mixed precision (AmpOptimWrapper), which needs a CUDA '
            'device, and this machine has none. Pass --no-amp to train in float32 (slower; '
            'the numbers are then not the recipe\'s), run on a GPU machine, or leave out '
            '--data-root to try the whole chain at a reduced size on generated data')


def finished_before(path, sha256, checkpoint, label):
    """The finished record at ``path`` (a task's ``summary.json``) for the file of ``sha256``,
    None when there is none or it did not finish.

    Raises:
        TaskMismatch: the folder holds the results of another file; they are neither reused
            nor resumed.
    """
    if not osp.isfile(path):
        return None
    previous = read_summary(path)
    if previous.checkpoint_sha256 != sha256:
        raise TaskMismatch(
            f'{osp.dirname(path)} holds the {previous.task} results of another checkpoint '
            f'(sha256 {previous.checkpoint_sha256}, {previous.checkpoint}), not of '
            f'{checkpoint} (sha256 {sha256}); it is neither reused nor resumed. Use another '
            '--work-dir, or delete that directory to rerun the task.')
    if previous.status != 'done':
        return None
    print(f'[{label}] done before, not rerun: {previous.metrics}', flush=True)
    return previous


def run_task(staged, task, data_root=None, reduced=False, launch=Launch(), transfer_iters=2,
             amp=True):
    """Train and evaluate ``task`` from the staged checkpoint ``staged``
    (:func:`~.layout.stage_checkpoint`); returns its :class:`TaskSummary`."""
    info = staged.info
    path = summary_path(staged.run_dir, task)
    task_dir = osp.dirname(path)
    label = f'{osp.basename(staged.run_dir)}/{task}'
    previous = finished_before(path, staged.sha256, info.path, label)
    if previous is not None:
        return previous
    os.makedirs(task_dir, exist_ok=True)
    cfg = build_task_config(info, task, data_root, reduced, transfer_iters, staged.weights, amp)
    config = dump_config(cfg, osp.join(task_dir, 'benchmark_config.py'))
    record = TaskSummary(
        task=task, status='running', method=info.method, backbone=info.backbone_label,
        pretrain_epochs=info.pretrain_epochs, pretrain_iters=info.pretrain_iters,
        checkpoint=info.path, checkpoint_sha256=staged.sha256, config=config,
        protocol=task_protocol(task, info.family, reduced, transfer_iters, amp),
        reduced=reduced, git_commit=current_git_commit(REPO), started=utc_now())
    write_summary(path, record)
    start = time.time()
    try:
        record = _train_and_evaluate(record, cfg, config, task_dir, label, launch)
    except KeyboardInterrupt:
        write_summary(path, replace(record, status='interrupted', error='interrupted',
                                    wall_time_s=time.time() - start, finished=utc_now()))
        raise
    finally:  # mmengine's Runner dumped its own text (braces unescaped) over it
        dump_config(cfg, config)
    record = replace(record, wall_time_s=round(time.time() - start, 1), finished=utc_now())
    write_summary(path, record)
    print(f'[{label}] {record.status} in {record.wall_time_s:.0f} s: '
          f'{record.metrics or record.error}', flush=True)
    return record


def _train_and_evaluate(record, cfg, config, task_dir, label, launch):
    """Bring the task to its final evaluation: none to run when it was logged already; only
    the evaluation when training finished (its final checkpoint is there); else training,
    resumed from the last checkpoint if there is one. Returns the finished record."""
    cfg_dict = cfg.to_dict()
    final = final_checkpoint_name(cfg_dict.get('train_cfg'))
    log = osp.join(task_dir, 'train.log')
    evaluation = final_evaluation(task_dir, cfg_dict)
    if evaluation is None or not evaluation.final:
        last = _last_checkpoint(task_dir)
        trained = last and osp.basename(last) == final and osp.isfile(last)
        if not trained:
            print(f'[{label}] {"resuming" if last else "starting"}: {config}', flush=True)
            code, tail = run_logged(launch.command(config, task_dir, last is not None), log,
                                    label, launch.env())
            if code != 0:
                return replace(record, status='failed', error=error_of(tail))
            evaluation = final_evaluation(task_dir, cfg_dict)
            last = _last_checkpoint(task_dir)
        if (evaluation is None or not evaluation.final) and last and \
                osp.basename(last) == final and osp.isfile(last):
            evaluation = evaluate_checkpoint(
                last, cfg, config, task_dir, label, launch, log,
                f'training had finished; evaluating {last}',
                'training finished but stopped before its final evaluation; evaluate it, '
                'then rerun the benchmark')
    if isinstance(evaluation, str):
        return replace(record, status='failed', error=evaluation)
    if evaluation is None or not evaluation.final:
        return replace(record, status='failed', error='training finished without its final '
                       f'evaluation, and no final checkpoint ({final}) to evaluate')
    return replace(record, status='done', metrics=evaluation.metrics, error=None)


def evaluate_checkpoint(checkpoint, cfg, config, task_dir, label, launch, log, announce,
                        unlaunchable):
    """Run the test loop of ``cfg`` (dumped to ``config``) on ``checkpoint`` in its own
    process (``python -m mixedconv.test``) in ``task_dir``, its output in ``log``.

    Args:
        announce (str): the progress line printed when it starts.
        unlaunchable (str): what the user should do when ``launch`` cannot run a test loop
            (Slurm); the command to run is appended.

    Returns:
        The :class:`~mixedconv.results.workdir.Evaluation`, None when the loop logged no
        metrics, or the reason it could not run (str).
    """
    cmd = launch.test_command(dump_config(cfg, config), task_dir, checkpoint)
    if cmd is None:
        return (f'{unlaunchable}: python -m mixedconv.test {config} {checkpoint} '
                f'--work-dir {task_dir} (under srun)')
    print(f'[{label}] {announce}', flush=True)
    try:
        code, tail = run_logged(cmd, log, label, launch.env())
    finally:  # mmengine's Runner dumped its own text (braces unescaped) over it
        dump_config(cfg, config)
    if code != 0:
        return error_of(tail)
    return final_evaluation(task_dir)


def pretrain(method, work_dir, data_root=None, embedded=False, launch=Launch(), iters=2,
             amp=True):
    """Pretrain ``method`` (a key of ``PRETRAIN_CONFIGS``); returns its last checkpoint.

    A finished run (its last checkpoint is the final one) is not run again.
    """
    work_dir = osp.abspath(work_dir)
    cfg = pretrain_config(method, data_root, embedded, iters, amp)
    run_dir = osp.join(work_dir, 'pretrain', method)
    final = final_checkpoint_name(cfg.train_cfg)
    with benchmark_lock(work_dir):
        os.makedirs(run_dir, exist_ok=True)
        last = _last_checkpoint(run_dir)
        if last and osp.basename(last) == final and osp.isfile(last):
            print(f'[pretrain/{method}] done before, not rerun: {last}', flush=True)
            return last
        config = dump_config(cfg, osp.join(run_dir, 'benchmark_config.py'))
        try:
            code, tail = run_logged(launch.command(config, run_dir, resume=last is not None),
                                    osp.join(run_dir, 'train.log'), f'pretrain/{method}',
                                    launch.env())
        finally:  # mmengine's Runner dumped its own text (braces unescaped) over it
            dump_config(cfg, config)
        last = _last_checkpoint(run_dir)
    if code != 0 or not last:
        raise RuntimeError(f'pretraining {method} failed ({error_of(tail)}); '
                           f'log: {osp.join(run_dir, "train.log")}')
    return last


def pretrain_config(method, data_root=None, embedded=False, iters=2, amp=True):
    """The pretraining config of ``method``: shrunk to the tiny preset on generated data
    (``embedded``), else the full recipe with its datasets under ``data_root``."""
    cfg = Config.fromfile(config_path(PRETRAIN_CONFIGS[method]))
    data_dir = osp.join(osp.abspath(data_root), DATA_DIRS['imagenet']) if data_root else None
    if embedded:
        shrink_pretrain(cfg, data_dir, iters=iters)
    elif data_dir:
        set_data_root(cfg, data_dir)
    if not amp:
        disable_amp(cfg)
    return cfg


def run_benchmark(checkpoints, tasks, work_dir, data_root=None, reduced=False,
                  launch=Launch(), method=None, transfer_iters=2, arch=None, amp=True):
    """Run every task for every checkpoint; returns the list of summaries. ``method`` and
    ``arch`` state what the checkpoints are (see :func:`describe_checkpoint`). Checkpoints
    with the same bytes (one file under several names) run once."""
    work_dir = osp.abspath(work_dir)
    data_root = data_root and osp.abspath(data_root)
    records = []
    with benchmark_lock(work_dir):
        staged = {}
        for path in checkpoints:
            one = stage_checkpoint(path, work_dir, method, arch)
            if one.sha256 in staged:
                print(f'{path} has the same bytes as {staged[one.sha256].info.path} (sha256 '
                      f'{short_sha(one.sha256)}): benchmarked once', flush=True)
                continue
            staged[one.sha256] = one
        if amp and not reduced:  # before any task runs
            for family in {one.info.family for one in staged.values()}:
                for task in tasks:
                    check_amp(Config.fromfile(task_config(task, family)), launch,
                              f'the {task} recipe')
        for one in staged.values():
            done = [run_task(one, task, data_root, reduced, launch, transfer_iters, amp)
                    for task in tasks]
            if all(record.status == 'done' for record in done):
                release_weights(one)
            records += done
    return records


def make_generated_data(data_root):
    """The generated benchmark data in the mm layouts under ``data_root`` (made once)."""
    from ..data import make_ade20k, make_coco, make_image_folder
    done = osp.join(data_root, '.complete')
    if not osp.isfile(done):
        make_image_folder(osp.join(data_root, DATA_DIRS['imagenet'], 'train'), num_images=32)
        make_coco(osp.join(data_root, DATA_DIRS['coco']), num_train=8, num_val=4)
        make_ade20k(osp.join(data_root, DATA_DIRS['ade20k']), num_train=8, num_val=4)
        open(done, 'w').close()
    return data_root


def try_checkpoints(checkpoints, tasks, work_dir, launch=Launch(), method=None, arch=None,
                    baseline=MAE.name, iters=EMBEDDED):
    """Run ``checkpoints`` through the recipes at a reduced size on generated data (a CPU
    check of the whole chain before GPU hours; see the module docstring) and write the
    leaderboard; returns a :class:`BenchmarkRun`."""
    work_dir = osp.abspath(work_dir)
    with benchmark_lock(work_dir):
        data_root = make_generated_data(osp.join(work_dir, 'data'))
        records = run_benchmark(checkpoints, tasks, work_dir, data_root, True, launch, method,
                                iters['transfer_iters'], arch)
        return BenchmarkRun(records, write_leaderboard(records, work_dir, baseline))


def run_chain(methods, tasks, work_dir, data_root=None, launch=Launch(),
              baseline=MAE.name, iters=EMBEDDED, amp=True):
    """Pretrain ``methods``, transfer each encoder to ``tasks``, write the leaderboard;
    returns a :class:`BenchmarkRun`.

    Without ``data_root`` this is the embedded default benchmark: generated data in the real
    formats and tiny models trained for ``iters`` (pretrain_iters, transfer_iters), a few
    minutes on a CPU. With it, the real recipes run.
    """
    work_dir = osp.abspath(work_dir)
    embedded = data_root is None
    with benchmark_lock(work_dir):
        if embedded:
            data_root = make_generated_data(osp.join(work_dir, 'data'))
        else:
            for method in methods:
                check_amp(pretrain_config(method, data_root, amp=amp), launch,
                          f'the {method} pretraining recipe')
        checkpoints = [pretrain(m, work_dir, data_root, embedded, launch,
                                iters['pretrain_iters'], amp) for m in methods]
        records = run_benchmark(checkpoints, tasks, work_dir, data_root, embedded, launch,
                                transfer_iters=iters['transfer_iters'], amp=amp)
        return BenchmarkRun(records, write_leaderboard(records, work_dir, baseline))


def write_leaderboard(records, work_dir, baseline=MAE.name):
    """The leaderboard of ``<work_dir>/transfer`` with deltas against the first row of the
    ``baseline`` method among ``records`` (none if it was not benchmarked)."""
    from ..leaderboard import make_leaderboard
    rows = [f'{r.method} {r.backbone} [{short_sha(r.checkpoint_sha256)}]' for r in records
            if r.method == baseline and r.checkpoint_sha256 and not r.released]
    return make_leaderboard([transfer_dir(work_dir)], osp.join(work_dir, 'leaderboard'),
                            baseline=rows[0] if rows else None)
