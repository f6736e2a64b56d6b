"""Collect task results from benchmark work directories and plain mmengine work directories.

Two layouts are recognised while walking the given directories:

* a directory holding ``summary.json`` (written by the benchmark runner, see
  :mod:`.summary`): the record is read as is;
* a plain mmengine work directory, i.e. one with ``<YYYYMMDD_HHMMSS>/`` run folders. mmengine's
  ``LoggerHook`` appends every logged scalar dict as one JSON line to
  ``<timestamp>/vis_data/scalars.json`` (validation lines carry the evaluator's metric keys and
  ``step``), dumps test metrics to ``<timestamp>/<timestamp>.json`` and writes the text log
  ``<timestamp>/<timestamp>.log``. The final evaluation (the last line with metrics, across run
  folders in time order) becomes the result; the text log is read only when there are no JSON
  logs. Method and backbone come from the config mmengine dumped for the run, read as data and
  never executed (``model.backbone`` and its pretrained checkpoint's file name), else from
  the directory name;
  pretraining epochs from that checkpoint's name. All of them can be overridden.
"""
import dataclasses
import glob
import json
import os
import os.path as osp
import re
import warnings
from typing import Optional

from ..config_data import ConfigTextError, read_config_file
from ..families import SIZE_LETTERS, family_of_type, label_of_backbone_cfg
from .metrics import COLUMNS, tasks_for_metrics
from .summary import SUMMARY_NAME, SummaryError, TaskSummary, read_summary, sha256_of

RUN_DIR = re.compile(r'^\d{8}_\d{6}$')
METRIC_KEYS = frozenset(c.metric for c in COLUMNS)
NOT_METRICS = frozenset(('step', 'epoch', 'iter', 'lr', 'time', 'data_time', 'memory'))
METHOD_TOKENS = (('convmae', 'ConvMAE'), ('mixedae', 'MixedAE'), ('ibot', 'iBOT'), ('mae', 'MAE'))
LOG_EVAL_LINE = re.compile(r'(?:Epoch|Iter)\((?:val|test)\)')
LOG_PAIR = re.compile(r'([\w/.-]+): (-?\d+(?:\.\d+)?(?:e[-+]?\d+)?)')


@dataclasses.dataclass
class Result:
    """One collected task result.

    Attributes:
        record: The task's result record.
        source: The ``summary.json`` or plain work directory it was read from.
        eval_step: For plain work directories, the ``step`` of the final evaluation.
    """
    record: TaskSummary
    source: str
    eval_step: Optional[int] = None


def collect(work_dirs, overrides=None):
    """Collect every task result found under ``work_dirs``.

    Args:
        work_dirs (list[str]): Directories to walk: benchmark work directories, plain mmengine
            work directories, or folders holding any number of either.
        overrides (dict[str, dict], optional): Maps a directory to record fields (``method``,
            ``backbone``, ``pretrain_epochs``, ``task``) that replace the stored or inferred ones
            for every result found in or below it.

    Returns:
        list[Result]: In walk order (sorted directory names).

    Raises:
        FileNotFoundError: a given directory does not exist.
        SummaryError: a ``summary.json`` is malformed (the message names it).
    """
    overrides = {osp.abspath(d): fields for d, fields in (overrides or {}).items()}
    results = []
    for root in work_dirs:
        if not osp.isdir(root):
            raise FileNotFoundError(f'work directory not found: {root}')
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            if SUMMARY_NAME in filenames:
                path = osp.join(dirpath, SUMMARY_NAME)
                result = Result(read_summary(path), path)
            elif any(RUN_DIR.match(d) for d in dirnames):
                result = read_mmengine_work_dir(dirpath)
            else:
                continue
            dirnames.clear()  # a result directory's subfolders belong to it
            if result is not None:
                results.append(_apply_overrides(result, dirpath, overrides))
    return results


def _apply_overrides(result, dirpath, overrides):
    fields = {}
    here = osp.abspath(dirpath)
    for directory, values in sorted(overrides.items()):  # outer directories first
        if here == directory or here.startswith(directory + os.sep):
            fields.update(values)
    if not fields:
        return result
    try:
        record = dataclasses.replace(result.record, **fields)
    except (TypeError, SummaryError) as err:
        raise SummaryError(f'override {fields} for {dirpath} is invalid: {err}') from err
    return dataclasses.replace(result, record=record)


def read_mmengine_work_dir(work_dir):
    """The final evaluation of a plain mmengine work directory as a :class:`Result`.

    Returns None (with a warning) when no run folder has logged evaluation metrics yet.
    Status is ``'done'`` unless the dumped config shows that training had further evaluations
    to run (last evaluated epoch/iteration before ``max_epochs``/``max_iters``), then
    ``'interrupted'``.
    """
    run_dirs = sorted(d for d in os.listdir(work_dir)
                      if RUN_DIR.match(d) and osp.isdir(osp.join(work_dir, d)))
    evals = [line for d in run_dirs for line in _eval_lines(osp.join(work_dir, d))]
    if not evals:
        warnings.warn(f'{work_dir}: no evaluation metrics logged yet; skipped')
        return None
    final = evals[-1]
    metrics = {k: float(v) for k, v in final.items()
               if k not in NOT_METRICS and isinstance(v, (int, float))}
    config_path, cfg = _load_dumped_config(work_dir)
    names = ' '.join(filter(None, (_pretrained_path(cfg), config_path, osp.basename(work_dir))))
    step = final.get('step')
    target = _final_eval_step(cfg)
    record = TaskSummary(
        task=_infer_task(metrics, names, work_dir),
        status='interrupted' if step is not None and target and step < target else 'done',
        method=infer_method(names) or osp.basename(osp.normpath(work_dir)),
        backbone=_infer_backbone(cfg, osp.basename(work_dir)),
        pretrain_epochs=_infer_pretrain_epochs(_pretrained_path(cfg)),
        checkpoint=_pretrained_path(cfg),
        checkpoint_sha256=_sha256_if_here(_pretrained_path(cfg)),
        metrics=metrics,
        config=config_path)
    return Result(record, work_dir, step)


def _sha256_if_here(path):
    """The sha256 of the pretrained checkpoint when it is on this machine (so the row joins
    the benchmark's rows of the same file), else None."""
    return sha256_of(path) if path and osp.isfile(path) else None


def _eval_lines(run_dir):
    """Evaluation metric dicts of one run folder, in logged order."""
    name = osp.basename(run_dir)
    json_logs = [osp.join(run_dir, 'vis_data', 'scalars.json'), osp.join(run_dir, name + '.json')]
    json_logs = [p for p in json_logs if osp.isfile(p)]
    if json_logs:
        lines = [entry for path in json_logs for entry in _read_json_lines(path)]
    else:
        lines = _read_text_log(osp.join(run_dir, name + '.log'))
    return [line for line in lines if METRIC_KEYS & set(line)]


def _read_json_lines(path):
    """Dicts of a JSON-lines file (a single JSON object also works); a torn last line is
    skipped, as a run killed while writing leaves one."""
    with open(path) as f:
        lines = [line for line in f if line.strip()]
    entries = []
    for i, line in enumerate(lines):
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            if i != len(lines) - 1:
                raise SummaryError(f'{path}: line {i + 1} is not JSON')
    return [e for e in entries if isinstance(e, dict)]


def _read_text_log(path):
    """Metric dicts from the ``Epoch(val)``/``Iter(val)``/``(test)`` lines of an mmengine
    text log (``key: value`` pairs)."""
    if not osp.isfile(path):
        return []
    with open(path, errors='replace') as f:
        return [{k: float(v) for k, v in LOG_PAIR.findall(line)}
                for line in f if LOG_EVAL_LINE.search(line)]


def _load_dumped_config(work_dir):
    """(path, dict) of the config mmengine dumped for ``work_dir``'s newest run, read as data
    (:func:`~mixedconv.config_data.read_config_file`, never executed), or (None, None).

    mmengine's visualizer backend writes it to ``<timestamp>/vis_data/config.py`` beside
    ``scalars.json``, and the runner to ``<work_dir>/<config name>.py``. Other ``.py`` files
    (helper scripts in a shared results folder) are not literal data and are passed over
    with a warning; they are never run.
    """
    run_dirs = sorted((d for d in os.listdir(work_dir)
                       if RUN_DIR.match(d) and osp.isdir(osp.join(work_dir, d))), reverse=True)
    candidates = [osp.join(work_dir, d, 'vis_data', 'config.py') for d in run_dirs]
    candidates += sorted(glob.glob(osp.join(work_dir, '*.py')), key=osp.getmtime, reverse=True)
    for path in candidates:
        if not osp.isfile(path):
            continue
        try:
            cfg = read_config_file(path)
        except ConfigTextError as err:
            warnings.warn(f'{err}; not taken as the run\'s config')
            continue
        if isinstance(cfg.get('model'), dict):
            return path, cfg
    return None, None


def _cfg_get(cfg, *keys):
    """``cfg[k1][k2]...`` or None when any level is missing."""
    for key in keys:
        if not isinstance(cfg, dict) or key not in cfg:
            return None
        cfg = cfg[key]
    return cfg


def _pretrained_path(cfg):
    """The backbone's ``init_cfg`` checkpoint (a dict or a list of init dicts)."""
    init_cfg = _cfg_get(cfg, 'model', 'backbone', 'init_cfg')
    for item in init_cfg if isinstance(init_cfg, list) else [init_cfg]:
        if isinstance(item, dict) and item.get('checkpoint'):
            return str(item['checkpoint'])
    return None


def _final_eval_step(cfg):
    """The ``step`` the last evaluation of a finished run logs, when the config tells.

    mmengine logs validation metrics with ``step=epoch`` when ``LoggerHook.log_metric_by_epoch``
    (the default) and ``step=iter`` otherwise; an epoch-based loop ends at ``max_epochs`` and an
    iteration-based one at ``max_iters``.
    """
    by_epoch = _cfg_get(cfg, 'default_hooks', 'logger', 'log_metric_by_epoch')
    by_epoch = True if by_epoch is None else by_epoch
    train_cfg = _cfg_get(cfg, 'train_cfg') or {}
    return train_cfg.get('max_epochs') if by_epoch else train_cfg.get('max_iters')


def _infer_task(metrics, names, work_dir):
    tasks = tasks_for_metrics(metrics)
    if set(tasks) == {'in1k-finetune', 'in1k-linear'}:
        return 'in1k-linear' if 'linear' in names.lower() else 'in1k-finetune'
    if len(tasks) != 1:
        raise SummaryError(f'{work_dir}: cannot tell the task from metrics {sorted(metrics)}; '
                           "pass it as an override, e.g. task='coco-maskrcnn'")
    return tasks[0]


def infer_method(names):
    """Method named in file/dir names (longest token first: 'convmae' before 'mae')."""
    lowered = names.lower()
    return next((method for token, method in METHOD_TOKENS if token in lowered), None)


def _infer_backbone(cfg, dir_name):
    """'ConvViT-B'-style label of ``model.backbone`` (:func:`~mixedconv.families.
    label_of_backbone_cfg`), else the family and size named in the dir name."""
    backbone = _cfg_get(cfg, 'model', 'backbone') or {}
    label = label_of_backbone_cfg(backbone) if backbone else None
    if label:
        return label
    fam = family_of_type(dir_name)
    if fam is None:
        return 'unknown'
    match = re.search(r'vit[-_]?(tiny|small|base|large|huge|t|s|b|l|h)(?![a-z])',
                      dir_name.lower())
    return f'{fam.label}-{SIZE_LETTERS[match.group(1)]}' if match and not backbone else fam.label


def _infer_pretrain_epochs(checkpoint):
    """Epochs from an OpenMMLab-style checkpoint name such as ``...-1600e_in1k.pth``."""
    if not checkpoint:
        return None
    match = re.search(r'(?:^|[-_])(\d+)e(?:p|pochs?)?(?=[-_.]|$)', osp.basename(checkpoint))
    return int(match.group(1)) if match else None
