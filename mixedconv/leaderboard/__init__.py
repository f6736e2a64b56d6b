"""Benchmark result records and the leaderboard built from them.

:mod:`.summary` defines the per-task ``summary.json`` the benchmark runner writes;
:mod:`.collect` reads those and plain mmengine work directories; :mod:`.table` arranges the
results (and, on request, the published numbers of :mod:`.published`) into rows with deltas;
:mod:`.render` writes them as Markdown, CSV, HTML and PNG.
"""
from .collect import Result, collect
from .published import PUBLISHED, PublishedResult
from .render import write_leaderboard
from .summary import (SCHEMA_VERSION, STATUSES, SummaryError, TaskSummary, current_git_commit,
                      read_summary, sha256_of, summary_path, utc_now, write_summary)
from .table import build_table

__all__ = ['PUBLISHED', 'PublishedResult', 'Result', 'SCHEMA_VERSION', 'STATUSES',
           'SummaryError', 'TaskSummary', 'build_table', 'collect', 'current_git_commit',
           'make_leaderboard', 'read_summary', 'sha256_of', 'summary_path', 'utc_now',
           'write_leaderboard', 'write_summary']


def make_leaderboard(work_dirs, out_dir, baseline=None, published=False, overrides=None):
    """Collect ``work_dirs`` and write the leaderboard files into ``out_dir``.

    Args:
        work_dirs (list[str]): Directories for :func:`collect`.
        out_dir (str): Output folder.
        baseline (str, optional): Row to compute deltas against, e.g. ``'MAE ViT-B'``.
        published (bool): Add the published reference rows.
        overrides (dict[str, dict], optional): Per-directory record fields, see :func:`collect`.

    Returns:
        dict[str, str]: Format -> written path (see :func:`write_leaderboard`).

    Raises:
        FileNotFoundError: a directory does not exist, or none holds any result.
    """
    results = collect(work_dirs, overrides)
    if not results:
        raise FileNotFoundError(
            f'no results under {", ".join(map(str, work_dirs))}: expected benchmark task '
            'folders (summary.json) or mmengine work directories with logged evaluation '
            'metrics (<timestamp>/vis_data/scalars.json)')
    table = build_table(results, PUBLISHED if published else (), baseline)
    return write_leaderboard(table, out_dir)
