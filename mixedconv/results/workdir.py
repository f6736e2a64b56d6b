"""What an mmengine work directory says about its run: the final evaluation, the dumped
config (read as data), the pretrained checkpoint it loaded.

mmengine's ``LoggerHook`` appends every logged scalar dict as one JSON line to
``<timestamp>/vis_data/scalars.json`` (validation lines carry the evaluator's metric keys and
``step``), dumps test metrics to ``<timestamp>/<timestamp>.json`` and writes the text log
``<timestamp>/<timestamp>.log``. The final evaluation is the last line with metrics, across
run folders in time order; the text log is read only when a run folder has no JSON logs.
"""
import dataclasses
import glob
import json
import os
import os.path as osp
import re
import warnings
from typing import Dict, Optional

from ..config_data import ConfigTextError, read_config_file
from .metrics import COLUMNS
from .record import SummaryError

RUN_DIR = re.compile(r'^\d{8}_\d{6}$')
METRIC_KEYS = frozenset(c.metric for c in COLUMNS)
NOT_METRICS = frozenset(('step', 'epoch', 'iter', 'lr', 'time', 'data_time', 'memory'))
LOG_EVAL_LINE = re.compile(r'(?:Epoch|Iter)\((?:val|test)\)')
LOG_PAIR = re.compile(r'([\w/.-]+): (-?\d+(?:\.\d+)?(?:e[-+]?\d+)?)')


@dataclasses.dataclass
class Evaluation:
    """The last evaluation logged in a work directory.

    Attributes:
        metrics: Metric name -> value, as the evaluator logged them.
        step: The logged ``step`` (epoch or iteration), None for a test run.
        final: Whether it is the evaluation at the end of training: a test run, or a
            validation at the last epoch/iteration of the dumped config (or a config that
            does not tell).
    """
    metrics: Dict[str, float]
    step: Optional[int]
    final: bool


def run_dirs(work_dir):
    """The ``<YYYYMMDD_HHMMSS>`` run folders of ``work_dir``, oldest first."""
    return sorted(d for d in os.listdir(work_dir)
                  if RUN_DIR.match(d) and osp.isdir(osp.join(work_dir, d)))


def final_evaluation(work_dir, cfg=None):
    """The last logged evaluation of ``work_dir`` (:class:`Evaluation`), None when no run
    folder has logged evaluation metrics. ``cfg``: the run's config as a dict (default: the
    dumped one, :func:`dumped_config`)."""
    evals = [line for d in run_dirs(work_dir) for line in _eval_lines(osp.join(work_dir, d))]
    if not evals:
        return None
    last = evals[-1]
    metrics = {k: float(v) for k, v in last.items()
               if k not in NOT_METRICS and isinstance(v, (int, float))}
    step = last.get('step')
    if cfg is None:
        cfg = dumped_config(work_dir)[1]
    target = _final_eval_step(cfg)
    return Evaluation(metrics, step, step is None or not target or step >= target)


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


def dumped_config(work_dir):
    """(path, dict) of the config mmengine dumped for ``work_dir``'s newest run, read as data
    (:func:`~mixedconv.config_data.read_config_file`, never executed), or (None, None).

    mmengine's visualizer backend writes it to ``<timestamp>/vis_data/config.py`` beside
    ``scalars.json``, and the runner to ``<work_dir>/<config name>.py``. Other ``.py`` files
    (helper scripts in a shared results folder) are not literal data and are passed over
    with a warning; they are never run.
    """
    candidates = [osp.join(work_dir, d, 'vis_data', 'config.py')
                  for d in reversed(run_dirs(work_dir))]
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


def cfg_get(cfg, *keys):
    """``cfg[k1][k2]...`` or None when any level is missing."""
    for key in keys:
        if not isinstance(cfg, dict) or key not in cfg:
            return None
        cfg = cfg[key]
    return cfg


def pretrained_checkpoint(cfg):
    """The backbone's ``init_cfg`` checkpoint (a dict or a list of init dicts), or None."""
    init_cfg = cfg_get(cfg, 'model', 'backbone', 'init_cfg')
    for item in init_cfg if isinstance(init_cfg, list) else [init_cfg]:
        if isinstance(item, dict) and isinstance(item.get('checkpoint'), str):
            return item['checkpoint']
    return None


def _final_eval_step(cfg):
    """The ``step`` the last evaluation of a finished run logs, when the config tells.

    mmengine logs validation metrics with ``step=epoch`` when ``LoggerHook.log_metric_by_epoch``
    (the default) and ``step=iter`` otherwise; an epoch-based loop ends at ``max_epochs`` and an
    iteration-based one at ``max_iters``.
    """
    by_epoch = cfg_get(cfg, 'default_hooks', 'logger', 'log_metric_by_epoch')
    by_epoch = True if by_epoch is None else by_epoch
    train_cfg = cfg_get(cfg, 'train_cfg') or {}
    return train_cfg.get('max_epochs') if by_epoch else train_cfg.get('max_iters')


def final_checkpoint_name(train_cfg):
    """The file name ``CheckpointHook`` gives the last checkpoint of a run with
    ``train_cfg`` (``iter_<max_iters>.pth`` or ``epoch_<max_epochs>.pth``), None when
    ``train_cfg`` sets neither."""
    train_cfg = train_cfg or {}
    if train_cfg.get('max_iters'):
        return f'iter_{train_cfg["max_iters"]}.pth'
    if train_cfg.get('max_epochs'):
        return f'epoch_{train_cfg["max_epochs"]}.pth'
    return None
