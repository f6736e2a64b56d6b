"""The leaderboard built from benchmark results.

:mod:`.collect` reads the benchmark's ``summary.json`` records (:mod:`mixedconv.results`) and
plain mmengine work directories; :mod:`.table` arranges the results (and, on request, the
published numbers of :mod:`.published`) into rows with deltas between like protocols;
:mod:`.render` writes them as Markdown, CSV, HTML and PNG. The record API is re-exported
from :mod:`mixedconv.results` for scripts that read summaries through this package.
"""
from ..results import (SCHEMA_VERSION, STATUSES, SummaryError, TaskSummary, current_git_commit,
                       read_summary, sha256_of, summary_path, utc_now, write_summary)
from .collect import Result, collect
from .published import GAINS, PUBLISHED, PublishedGain, PublishedResult, Reported
from .render import write_leaderboard
from .table import build_table

__all__ = ['GAINS', 'PUBLISHED', 'PublishedGain', 'PublishedResult', 'Reported', 'Result',
           'SCHEMA_VERSION', 'STATUSES', 'SummaryError', 'TaskSummary', 'build_table', 'collect',
           'current_git_commit', 'make_leaderboard', 'read_summary', 'sha256_of', 'summary_path',
           'utc_now', 'write_leaderboard', 'write_summary']


def make_leaderboard(work_dirs, out_dir, baseline=None, published=False, overrides=None):
    """Collect ``work_dirs`` and write the leaderboard files into ``out_dir``.

    Args:
        work_dirs (list[str]): Directories for :func:`collect`.
        out_dir (str): Output folder.
        baseline (str, optional): Row to compute deltas against, e.g. ``'MAE ViT-B'``.
        published (bool): Add the published reference rows and gains.
        overrides (dict[str, dict], optional): Per-directory record fields, see :func:`collect`.

    Returns:
        dict[str, str]: Format -> written path (see :func:`write_leaderboard`).

    Raises:
        FileNotFoundError: a directory does not exist, or none holds any result.
        NotADirectoryError: ``out_dir`` is a file.
    """
    results = collect(work_dirs, overrides)
    if not results:
        raise FileNotFoundError(
            f'no results under {", ".join(map(str, work_dirs))}: expected benchmark task '
            'folders (summary.json) or mmengine work directories with logged evaluation '
            'metrics (<timestamp>/vis_data/scalars.json)')
    table = build_table(results, PUBLISHED if published else (), baseline,
                        GAINS if published else ())
    return write_leaderboard(table, out_dir)
