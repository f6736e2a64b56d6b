"""Collect task results from benchmark work directories and plain mmengine work directories.

Two layouts are recognised while walking the given directories:

* a directory holding ``summary.json`` (written by the benchmark runner, see
  :mod:`mixedconv.results.record`): the record is read as is;
* a plain mmengine work directory, i.e. one with ``<YYYYMMDD_HHMMSS>/`` run folders: its final
  evaluation (:func:`~mixedconv.results.workdir.final_evaluation`) becomes the result. Method
  and backbone come from the config mmengine dumped for the run, read as data and never
  executed (``model.backbone`` and its pretrained checkpoint's file name), else from the
  directory name; pretraining epochs from that checkpoint's name. All of them can be
  overridden. The checkpoint is identified by its sha256 when it is a checkpoint file on this
  machine (:func:`~mixedconv.results.hashing.checkpoint_sha256`), so its rows join the
  benchmark's rows of the same file.
"""
import dataclasses
import os
import os.path as osp
import re
import warnings
from typing import Optional

from ..families import label_in_name, label_of_backbone_cfg
from ..results import (SUMMARY_NAME, SummaryError, TaskSummary, checkpoint_sha256,
                       infer_method, read_summary)
from ..results.metrics import tasks_for_metrics
from ..results.protocols import protocol_of_recipe
from ..results.workdir import (RUN_DIR, cfg_get, dumped_config, final_evaluation,
                               pretrained_checkpoint)


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
    config_path, cfg = dumped_config(work_dir)
    evaluation = final_evaluation(work_dir, cfg)
    if evaluation is None:
        warnings.warn(f'{work_dir}: no evaluation metrics logged yet; skipped')
        return None
    pretrained = pretrained_checkpoint(cfg)
    names = ' '.join(filter(None, (pretrained, config_path, osp.basename(work_dir))))
    record = TaskSummary(
        task=_infer_task(evaluation.metrics, names, work_dir),
        status='done' if evaluation.final else 'interrupted',
        method=infer_method(names) or osp.basename(osp.normpath(work_dir)),
        backbone=_infer_backbone(cfg, osp.basename(work_dir)),
        pretrain_epochs=_infer_pretrain_epochs(pretrained),
        checkpoint=pretrained,
        checkpoint_sha256=checkpoint_sha256(pretrained) if pretrained else None,
        metrics=evaluation.metrics,
        config=config_path,
        protocol=_recipe_protocol(cfg, config_path))
    return Result(record, work_dir, evaluation.step)


def _recipe_protocol(cfg, config_path):
    """The protocol of a run of one of the shipped recipes, recognised by the config file
    name mmengine dumped (``<work_dir>/<config name>.py``) or the config's ``filename``."""
    for name in (config_path, cfg_get(cfg, 'filename')):
        protocol = protocol_of_recipe(name) if isinstance(name, str) else None
        if protocol:
            return protocol
    return None


def _infer_task(metrics, names, work_dir):
    tasks = tasks_for_metrics(metrics)
    if set(tasks) == {'in1k-finetune', 'in1k-linear'}:
        return 'in1k-linear' if 'linear' in names.lower() else 'in1k-finetune'
    if len(tasks) != 1:
        raise SummaryError(f'{work_dir}: cannot tell the task from metrics {sorted(metrics)}; '
                           "pass it as an override, e.g. task='coco-maskrcnn'")
    return tasks[0]


def _infer_backbone(cfg, dir_name):
    """'ConvViT-B'-style label of ``model.backbone`` (:func:`~mixedconv.families.
    label_of_backbone_cfg`), else the family and size the dir name spells."""
    backbone = cfg_get(cfg, 'model', 'backbone') or {}
    label = label_of_backbone_cfg(backbone) if backbone else None
    if label:
        return label
    return label_in_name(dir_name) or 'unknown'


def _infer_pretrain_epochs(checkpoint):
    """Epochs from an OpenMMLab-style checkpoint name such as ``...-1600e_in1k.pth``."""
    if not checkpoint:
        return None
    match = re.search(r'(?:^|[-_])(\d+)e(?:p|pochs?)?(?=[-_.]|$)', osp.basename(checkpoint))
    return int(match.group(1)) if match else None
