"""Released fine-tuned detectors and segmentors, evaluated as they are (``tools/benchmark.py
--finetuned``).

A released file (a detectron2 Mask R-CNN ``model_final.pth``, an mmseg 0.x UperNet, or an
mmdet / mmseg checkpoint of one of our recipes) is copied into the work directory and hashed
like a pretrained checkpoint (:mod:`.layout`); the recipe it fits is the one of the asked
tasks whose model takes every tensor of the file and leaves none of its own at init
(:func:`~mixedconv.checkpoint.load_whole_checkpoint`), or the ``config`` given. Its test
loop then runs in its own process (``python -m mixedconv.test``, whose ``load_from`` goes
through the same whole loader), and the result is recorded with ``released=True`` and a
protocol that says so (:func:`~mixedconv.results.protocols.released_protocol`): the
leaderboard shows it beside the published number of the same model and never compares it
with a model trained here.

Layout: ``<work_dir>/transfer/released_<method>_<backbone>_<file stem>-<sha>/`` holds the
copy (``released.pth``, removed when every task is done) and one folder per task.
"""
import contextlib
import os
import os.path as osp
import re
import time
from dataclasses import replace

from mmengine.config import Config

from ..checkpoint import CheckpointError, load_whole_checkpoint, safe_load
from ..config_files import config_path
from ..families import FAMILIES, METHODS, label_of_backbone_cfg
from ..results import (TaskSummary, copy_and_hash, current_git_commit, infer_method,
                       short_sha, summary_path, utc_now, write_summary)
from ..results.protocols import released_protocol
from .dump import dump_config
from .layout import STAGING, benchmark_lock, existing_run_dir, transfer_dir
from .processes import Launch
from .recipes import DATA_DIRS, REPO, TASK_CONFIGS, TASK_DATA, TRANSFER_CONFIGS, set_data_root

WEIGHTS = 'released.pth'


def task_recipes(task):
    """The shipped recipes a released model of ``task`` may have been trained with: the
    task's recipe of each family and its variants (``coco-maskrcnn-fpn``)."""
    configs = list(TASK_CONFIGS[task].values())
    for name, by_family in TRANSFER_CONFIGS.items():
        if name.startswith(task + '-'):
            configs += by_family.values()
    return configs


def build_recipe_model(config):
    """The model of an mmdet / mmseg config (a path or ``mixedconv::<dir>/<file>.py``) on
    CPU, without its backbone's pretrained weights (a whole file gives every weight);
    returns (Config, model)."""
    from mmengine.registry import init_default_scope

    from .. import register_all_modules
    from ..config_files import register_config_scope
    from ..registry import MODELS
    register_all_modules()
    register_config_scope()
    cfg = _without_pretrained(config)
    init_default_scope(cfg.get('default_scope', 'mmengine'))
    return cfg, MODELS.build(cfg.model)


def _without_pretrained(config):
    """The recipe's config without its backbone's pretrained weights (a released file gives
    every weight)."""
    path = config_path(config)
    if not osp.isfile(path):
        raise FileNotFoundError(f'config file not found: {config}')
    cfg = Config.fromfile(path)
    cfg.model.get('backbone', {}).pop('init_cfg', None)
    return cfg


def fitting_recipe(path, checkpoint, tasks):
    """The (task, config) of ``tasks`` whose recipe model ``checkpoint`` (read from
    ``path``) loads into whole (None when it fits none of them), and the first problem of
    each recipe it does not fit.

    Raises:
        CheckpointError: it fits several recipes (name one with ``--config``).
    """
    fits, problems = [], []
    for task in tasks:
        for config in task_recipes(task):
            _, model = build_recipe_model(config)
            try:
                load_whole_checkpoint(model, checkpoint, path, logger='silent')
            except CheckpointError as err:
                problems.append(f'{config}: {str(err).splitlines()[0]}')
                continue
            fits.append((task, config))
    if len(fits) > 1:
        raise CheckpointError(f'{path} loads whole into several recipes '
                              f'({", ".join(c for _, c in fits)}); name one with --config')
    return (fits[0] if fits else None), problems


def method_of(path, family, method=None):
    """The pretraining method of a released model: ``method``, else the one its file name
    names, else the only method whose encoders are of ``family``.

    Raises:
        ValueError: none of these tells it (``--method`` is needed).
    """
    if method:
        return method
    named = infer_method(osp.basename(path))
    if named:
        return named
    methods = [m.name for m in METHODS.values() if m.family is FAMILIES[family]]
    if len(methods) == 1:
        return methods[0]
    raise ValueError(f'{path}: a {family} encoder could come from {" or ".join(methods)}; '
                     'pass --method to say which pretraining the released model started from')


def released_config(config, data_dir):
    """The recipe's config for evaluating a released model: data under ``data_dir``, no
    backbone pretrained weights (the released file gives every weight)."""
    cfg = _without_pretrained(config)
    set_data_root(cfg, data_dir)
    return cfg


def evaluate_released(files, tasks, work_dir, data_root=None, launch=Launch(), method=None,
                      config=None):
    """Evaluate each released fine-tuned model of ``files`` with the test loop of the recipe
    of ``tasks`` it fits (or ``config``, for the single task given); returns the list of
    :class:`~mixedconv.results.TaskSummary` (``released=True``).

    Without ``data_root`` the generated COCO / ADE20K sets are used: a check that the file
    loads and the chain runs, marked reduced (not a result).

    Raises:
        CheckpointError: a file fits none of the tasks' recipes (each recipe's first
            problem named), or several.
        ValueError: ``config`` with several tasks; the method cannot be told.
    """
    if config and len(tasks) != 1:
        raise ValueError(f'--config evaluates one task; give one in --tasks, not '
                         f'{",".join(tasks)}')
    work_dir = osp.abspath(work_dir)
    generated = data_root is None
    records = []
    with benchmark_lock(work_dir):
        if generated:
            from .runner import make_generated_data
            data_root = make_generated_data(osp.join(work_dir, 'data'))
        data_root = osp.abspath(data_root)
        for path in files:
            records.append(_evaluate_file(osp.abspath(path), tasks, work_dir, data_root,
                                          generated, launch, method, config))
    return records


def _evaluate_file(path, tasks, work_dir, data_root, generated, launch, method, config):
    staging = osp.join(transfer_dir(work_dir), STAGING)
    copy = osp.join(staging, osp.basename(path))
    sha = copy_and_hash(path, copy)
    try:
        if config:
            task = tasks[0]
        else:
            fit, problems = fitting_recipe(path, safe_load(copy), tasks)
            if fit is None:
                raise CheckpointError(
                    f'{path} does not load whole into the recipe of any of the tasks '
                    f'{",".join(tasks)}:\n  ' + '\n  '.join(problems) + '\nName the recipe '
                    'it was trained with by --config (and its task by --tasks)')
            task, config = fit
        cfg = released_config(config, osp.join(data_root, DATA_DIRS[TASK_DATA[task]]))
        family = cfg.model.backbone.type
        backbone = label_of_backbone_cfg(cfg.model.backbone) or family
        label = method_of(path, family, method)
    except BaseException:
        os.unlink(copy)
        with contextlib.suppress(OSError):
            os.rmdir(staging)
        raise
    stem = re.sub(r'[^\w.-]+', '-', osp.splitext(osp.basename(path))[0])
    run_dir = existing_run_dir(work_dir, sha) or osp.join(
        transfer_dir(work_dir), f'released_{label.lower()}_{backbone.lower()}_{stem}-'
        f'{short_sha(sha)}')
    os.makedirs(run_dir, exist_ok=True)
    weights = osp.join(run_dir, WEIGHTS)
    os.replace(copy, weights)
    with contextlib.suppress(OSError):
        os.rmdir(staging)
    record = TaskSummary(
        task=task, status='running', method=label, backbone=backbone, checkpoint=path,
        checkpoint_sha256=sha, protocol=released_protocol(config, generated),
        reduced=generated, released=True, git_commit=current_git_commit(REPO))
    record = _run(record, cfg, weights, run_dir, launch)
    if record.status == 'done':
        with contextlib.suppress(FileNotFoundError):
            os.unlink(weights)
    return record


def _run(record, cfg, weights, run_dir, launch):
    """Run the test loop of ``cfg`` on ``weights`` in the task's folder of ``run_dir`` (not
    again when it is done for the same bytes) and record it."""
    from .runner import evaluate_checkpoint, finished_before
    path = summary_path(run_dir, record.task)
    task_dir = osp.dirname(path)
    label = f'{osp.basename(run_dir)}/{record.task}'
    previous = finished_before(path, record.checkpoint_sha256, record.checkpoint, label)
    if previous is not None:
        return previous
    os.makedirs(task_dir, exist_ok=True)
    config = dump_config(cfg, osp.join(task_dir, 'benchmark_config.py'))
    record = replace(record, config=config, started=utc_now())
    write_summary(path, record)
    start = time.time()
    try:
        evaluation = evaluate_checkpoint(
            weights, cfg, config, task_dir, label, launch, osp.join(task_dir, 'test.log'),
            f'evaluating the released weights: {config}',
            'the benchmark launches only training under Slurm; evaluate with')
    except KeyboardInterrupt:
        write_summary(path, replace(record, status='interrupted', error='interrupted',
                                    finished=utc_now()))
        raise
    if isinstance(evaluation, str):
        record = replace(record, status='failed', error=evaluation)
    elif evaluation is None:
        record = replace(record, status='failed', error='the test loop logged no metrics')
    else:
        record = replace(record, status='done', metrics=evaluation.metrics)
    record = replace(record, wall_time_s=round(time.time() - start, 1), finished=utc_now())
    write_summary(path, record)
    print(f'[{label}] {record.status} in {record.wall_time_s:.0f} s: '
          f'{record.metrics or record.error}', flush=True)
    return record
