"""The per-task result record (``<work_dir>/<task>/summary.json``).

The benchmark runner writes one :class:`TaskSummary` per (checkpoint, task) and rewrites it as
the task moves from ``running`` to ``done`` / ``failed`` / ``interrupted``; the leaderboard
reads it back. Metric keys are the mm evaluators' own (``coco/bbox_mAP`` in [0, 1], ``mIoU`` and
``accuracy/top1`` in percent); conversion to percent happens only when rendering.
"""
import dataclasses
import json
import math
import os.path as osp
import re
import subprocess
from datetime import datetime, timezone
from typing import Dict, Optional

from .metrics import METRIC_RANGES, TASKS, metric_in_range

SCHEMA_VERSION = 3
# version 1 lacks pretrain_iters, protocol and reduced; version 2 lacks released
READABLE_SCHEMAS = (1, 2, 3)
SUMMARY_NAME = 'summary.json'
STATUSES = ('done', 'failed', 'interrupted', 'running')


class SummaryError(ValueError):
    """A summary record is malformed; the message names the file (when known) and the field."""


@dataclasses.dataclass
class TaskSummary:
    """The result of one benchmark task on one pretrained checkpoint.

    Attributes:
        task: One of :data:`~.metrics.TASKS`.
        status: One of :data:`STATUSES`.
        method: Pretraining method, e.g. ``'ConvMAE'``, ``'MixedAE'``, ``'MAE'``.
        backbone: Encoder, e.g. ``'ConvViT-B'``, ``'ViT-B'``, ``'ViT-tiny'``.
        pretrain_epochs: Pretraining epochs of the checkpoint, None if unknown.
        checkpoint: Path of the evaluated checkpoint.
        checkpoint_sha256: Hex SHA-256 of the bytes the task loaded (see
            :func:`~.hashing.copy_and_hash`).
        metrics: Final evaluation metrics under the mm evaluator's keys.
        config: Path of the config the task ran with (or its text).
        git_commit: Commit of the toolkit that ran the task (see :func:`current_git_commit`).
        wall_time_s: Seconds the task took (or has taken so far).
        started: ISO-8601 UTC start time (see :func:`utc_now`).
        finished: ISO-8601 UTC end time, None while running.
        error: Why the task failed or was interrupted, None otherwise.
        pretrain_iters: Pretraining iterations of the checkpoint, for iteration-based
            pretraining (the embedded benchmark's), None otherwise.
        protocol: How the task ran: the recipe's detector or segmentor and schedule (see
            :mod:`.protocols`), None when unknown.
        reduced: The recipe ran at a reduced size on generated data (a check that the
            chain runs, not a result comparable with published numbers).
        schema_version: Version of this record layout.
    """
    task: str
    status: str
    method: str
    backbone: str
    pretrain_epochs: Optional[int] = None
    checkpoint: Optional[str] = None
    checkpoint_sha256: Optional[str] = None
    metrics: Dict[str, float] = dataclasses.field(default_factory=dict)
    config: Optional[str] = None
    git_commit: Optional[str] = None
    wall_time_s: Optional[float] = None
    started: Optional[str] = None
    finished: Optional[str] = None
    error: Optional[str] = None
    pretrain_iters: Optional[int] = None
    protocol: Optional[str] = None
    reduced: bool = False
    released: bool = False
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self):
        if self.task not in TASKS:
            raise SummaryError(f'task {self.task!r} is not one of {TASKS}')
        if self.status not in STATUSES:
            raise SummaryError(f'status {self.status!r} is not one of {STATUSES}')
        for name in ('method', 'backbone'):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise SummaryError(f'{name} must be a non-empty string, '
                                   f'got {getattr(self, name)!r}')
        for name in ('pretrain_epochs', 'pretrain_iters'):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise SummaryError(f'{name} must be an int or null, got {value!r}')
        if self.protocol is not None and not isinstance(self.protocol, str):
            raise SummaryError(f'protocol must be a string or null, got {self.protocol!r}')
        for name in ('reduced', 'released'):
            if not isinstance(getattr(self, name), bool):
                raise SummaryError(f'{name} must be true or false, got {getattr(self, name)!r}')
        if not isinstance(self.metrics, dict) or not all(
                isinstance(k, str) and _is_number(v) for k, v in self.metrics.items()):
            raise SummaryError('metrics must map metric names to numbers, '
                               f'got {self.metrics!r}')
        for key, value in self.metrics.items():
            if not math.isfinite(value):
                raise SummaryError(f'metric {key} is {value}: a finished evaluation reports '
                                   'finite numbers')
            if not metric_in_range(key, value):
                low, high = METRIC_RANGES[key]
                raise SummaryError(f'metric {key} = {value} is outside its range '
                                   f'[{low}, {high}] (as its evaluator reports it)')
        sha = self.checkpoint_sha256
        if sha is not None and not (isinstance(sha, str) and re.fullmatch(r'[0-9a-f]{64}', sha)):
            raise SummaryError(f'checkpoint_sha256 must be 64 hex digits, got {sha!r}')
        if self.wall_time_s is not None and not _is_number(self.wall_time_s):
            raise SummaryError(f'wall_time_s must be a number or null, got {self.wall_time_s!r}')
        if self.schema_version not in READABLE_SCHEMAS:
            raise SummaryError(f'schema_version {self.schema_version!r} is not one of the '
                               f'supported {READABLE_SCHEMAS}; read it with the mixedconv '
                               'that wrote it')

    def to_dict(self):
        """A JSON-ready dict with every field."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data):
        """Build a record from :meth:`to_dict` output, rejecting missing or unknown fields."""
        if not isinstance(data, dict):
            raise SummaryError(f'expected a JSON object, got {type(data).__name__}')
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise SummaryError(f'unknown fields {unknown}')
        required = [name for name, f in fields.items()
                    if f.default is dataclasses.MISSING
                    and f.default_factory is dataclasses.MISSING]
        missing = [name for name in required if name not in data]
        if missing:
            raise SummaryError(f'missing required fields {missing}')
        return cls(**data)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def write_summary(path, record):
    """Write ``record`` (a :class:`TaskSummary`) to ``path`` as JSON, atomically, with the
    permissions of any new file (the umask's): a reader sees the old or the new record,
    never a partly written one (:func:`~mixedconv.fileio.atomic_write`)."""
    from ..fileio import atomic_write
    text = json.dumps(dataclasses.replace(record, schema_version=SCHEMA_VERSION).to_dict(),
                      indent=2) + '\n'
    atomic_write(path, text.encode('utf-8'))


def read_summary(path):
    """Read a :class:`TaskSummary` written by :func:`write_summary`.

    Raises:
        SummaryError: the file is not valid JSON or not a valid record; the message names the
            file and the problem.
    """
    with open(path) as f:
        text = f.read()
    try:
        return TaskSummary.from_dict(json.loads(text))
    except json.JSONDecodeError as err:
        problem = f'not valid JSON ({err})'
    except SummaryError as err:
        problem = str(err)
    raise SummaryError(f'malformed summary {path}: {problem}. Fix the file, or delete it to '
                       'have the benchmark rerun the task.')


def summary_path(work_dir, task):
    """Where the benchmark keeps the summary of ``task``: ``<work_dir>/<task>/summary.json``."""
    return osp.join(work_dir, task, SUMMARY_NAME)


def current_git_commit(repo_dir=None):
    """Commit hash of the git checkout at ``repo_dir`` (default: this package's checkout).

    Returns:
        str or None: The ``HEAD`` hash, suffixed ``-dirty`` when tracked files differ from it;
        None when ``repo_dir`` is not in a git checkout with a commit (e.g. a pip install).
    """
    repo_dir = repo_dir or osp.dirname(osp.abspath(__file__))

    def git(*args):
        return subprocess.run(['git', '-C', repo_dir, *args], capture_output=True, text=True)

    try:
        head = git('rev-parse', '--verify', 'HEAD')
    except FileNotFoundError:  # no git executable
        return None
    if head.returncode != 0:
        return None
    dirty = git('diff', '--quiet', 'HEAD').returncode != 0
    return head.stdout.strip() + ('-dirty' if dirty else '')


def utc_now():
    """The current UTC time as an ISO-8601 string with seconds, for ``started``/``finished``."""
    return datetime.now(timezone.utc).isoformat(timespec='seconds')
