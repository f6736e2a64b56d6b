"""Benchmark results as data, shared by the benchmark runner (which writes them) and the
leaderboard (which reads them); neither reaches into the other.

:mod:`.metrics`: the tasks and the metric each reports; :mod:`.record`: the per-task
``summary.json`` record, read and written; :mod:`.hashing`: checkpoint identity (sha256 of the
bytes a task loaded, short forms); :mod:`.workdir`: what an mmengine work directory logged;
:mod:`.protocols`: how a number was obtained, so that only like compares with like. Standard
library only (and :mod:`mixedconv.families`), so the leaderboard imports it without torch.
"""
from ..families import method_in_name
from .hashing import SHORT_SHA, checkpoint_sha256, copy_and_hash, sha256_of, short_sha
from .metrics import COLUMNS, TASKS
from .record import (SCHEMA_VERSION, STATUSES, SUMMARY_NAME, SummaryError, TaskSummary,
                     current_git_commit, read_summary, summary_path, utc_now, write_summary)

__all__ = ['COLUMNS', 'SCHEMA_VERSION', 'SHORT_SHA', 'STATUSES', 'SUMMARY_NAME', 'SummaryError',
           'TASKS', 'TaskSummary', 'checkpoint_sha256', 'copy_and_hash', 'current_git_commit',
           'infer_method', 'read_summary', 'sha256_of', 'short_sha', 'summary_path', 'utc_now',
           'write_summary']


def infer_method(names):
    """The method label a file or folder name names (``'convmae_base_1600ep.pth'`` ->
    ``'ConvMAE'``), or None; see :func:`~mixedconv.families.method_in_name`."""
    method = method_in_name(names)
    return method.name if method else None
