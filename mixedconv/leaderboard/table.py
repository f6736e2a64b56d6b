"""The leaderboard as data: one row per evaluated checkpoint (its sha256; for plain mmengine
work directories, which record no hash, the pretrained checkpoint's path), one cell per metric
column, in percent, with deltas against a chosen baseline row. Rows that would read alike
(same method, backbone and epochs) are labelled with the checkpoint's short sha256 or name.

A cell without a finished value says why (``missing``, ``failed``, ``missing (interrupted)``,
``missing (running)``); it is never shown as zero.
"""
import dataclasses
from typing import Dict, List, Optional

from .metrics import COLUMNS
from .summary import SHORT_SHA

# Which of several results for the same row and task is shown: the best status, then the last.
STATUS_RANK = {'done': 3, 'running': 2, 'interrupted': 1, 'failed': 0}


@dataclasses.dataclass
class Cell:
    """One metric of one row.

    Attributes:
        value: Percent value, None when there is no finished result.
        status: Task status (see :data:`~.summary.STATUSES`), ``'missing'`` (no such task
            result), or ``'published'`` (a reference number).
        delta: ``value`` minus the baseline's value (both rounded to 0.1), when both exist.
    """
    value: Optional[float] = None
    status: str = 'missing'
    delta: Optional[float] = None

    def text(self):
        """``'51.9'``, ``'51.9 (+0.3)'``, ``'failed'``, ``'missing'`` or ``'missing (running)'``."""
        if self.value is not None:
            return f'{self.value:.1f}' + ('' if self.delta is None else f' ({self.delta:+.1f})')
        if self.status in ('failed', 'missing'):
            return self.status
        if self.status == 'done':  # finished, but this metric was not logged
            return 'missing'
        return f'missing ({self.status})'


@dataclasses.dataclass
class Row:
    """One leaderboard row.

    Attributes:
        method, backbone, pretrain_epochs: What the row describes.
        cells: Column key -> :class:`Cell`.
        source: ``'measured'``, or where published numbers come from.
        published: Whether the numbers are published ones rather than measured here.
        notes: Remarks shown under the table (failures, protocols).
    """
    method: str
    backbone: str
    pretrain_epochs: Optional[int]
    cells: Dict[str, Cell]
    source: str = 'measured'
    published: bool = False
    notes: List[str] = dataclasses.field(default_factory=list)
    checkpoint: Optional[str] = None
    checkpoint_sha256: Optional[str] = None
    tag: Optional[str] = None  # set when another row has the same base label

    @property
    def base_label(self):
        """``'MAE ViT-B 1600e'`` (``' (published)'`` appended for published rows)."""
        epochs = '' if self.pretrain_epochs is None else f' {self.pretrain_epochs}e'
        return (f'{self.method} {self.backbone}{epochs}'
                + (' (published)' if self.published else ''))

    @property
    def label(self):
        """:attr:`base_label`, with ``' [<short sha256 or file name>]'`` when it is shared."""
        return self.base_label + (f' [{self.tag}]' if self.tag else '')

    @property
    def checkpoint_text(self):
        """``'epoch_1600.pth (3fa2c1d9e0ab)'``; ``'—'`` for published rows."""
        if not self.checkpoint:
            return '—'
        name = self.checkpoint.replace('\\', '/').rstrip('/').split('/')[-1]
        return f'{name} ({short_sha(self.checkpoint_sha256)})' if self.checkpoint_sha256 \
            else name

    @property
    def method_text(self):
        """The method cell: published rows name their source."""
        return f'{self.method} (published: {self.source})' if self.published else self.method

    @property
    def epochs_text(self):
        return '—' if self.pretrain_epochs is None else str(self.pretrain_epochs)


@dataclasses.dataclass
class Table:
    """Rows (measured ones first) and the baseline row they are compared with, if any."""
    rows: List[Row]
    baseline: Optional[Row] = None


def build_table(results, published=(), baseline=None):
    """Arrange collected results (and published references) into a :class:`Table`.

    Args:
        results (list[Result]): From :func:`~.collect.collect`.
        published (sequence[PublishedResult]): Reference rows to add after the measured ones.
        baseline (str, optional): Row to compare against, as ``'METHOD BACKBONE'``, optionally
            followed by ``' <N>e'`` and/or ``' (published)'``, e.g. ``'MAE ViT-B'``.

    Raises:
        ValueError: ``baseline`` matches no row or several rows.
    """
    rows = _measured_rows(results) + [_published_row(p) for p in published]
    _tag_alike_rows(rows)
    table = Table(rows)
    if baseline:
        table.baseline = _find_baseline(rows, baseline)
        _add_deltas(rows, table.baseline)
    return table


def _measured_rows(results):
    chosen = {}  # (method, backbone, epochs, checkpoint identity) -> {task: result}
    for result in results:
        rec = result.record
        identity = rec.checkpoint_sha256 or rec.checkpoint or ''
        tasks = chosen.setdefault((rec.method, rec.backbone, rec.pretrain_epochs, identity),
                                  {})
        current = tasks.get(rec.task)
        if current is None or STATUS_RANK[rec.status] >= STATUS_RANK[current.record.status]:
            tasks[rec.task] = result
    rows = []
    for (method, backbone, epochs, _), tasks in sorted(chosen.items(), key=_row_order):
        first = next(iter(tasks.values())).record
        row = Row(method, backbone, epochs, {c.key: Cell() for c in COLUMNS},
                  checkpoint=first.checkpoint, checkpoint_sha256=first.checkpoint_sha256)
        for column in COLUMNS:
            result = tasks.get(column.task)
            if result is None:
                continue
            value = column.percent(result.record.metrics)
            status = result.record.status
            row.cells[column.key] = Cell(value if status == 'done' else None, status)
        for task, result in tasks.items():
            if result.record.status != 'done':
                reason = f': {_last_line(result.record.error)}' if result.record.error else ''
                row.notes.append(f'{task} {result.record.status}{reason} ({result.source})')
        rows.append(row)
    return rows


def _row_order(item):
    (method, backbone, epochs, identity), _ = item
    return method.lower(), backbone.lower(), -1 if epochs is None else epochs, identity


def short_sha(sha256):
    """The first :data:`~.summary.SHORT_SHA` hex digits of a sha256."""
    return sha256[:SHORT_SHA]


def _tag_alike_rows(rows):
    """Give rows that share a base label a tag that tells them apart: the short sha256, else
    the checkpoint's file name (else its position)."""
    groups = {}
    for row in rows:
        groups.setdefault(row.base_label, []).append(row)
    for group in groups.values():
        if len(group) < 2:
            continue
        for i, row in enumerate(group, 1):
            if row.checkpoint_sha256:
                row.tag = short_sha(row.checkpoint_sha256)
            elif row.checkpoint:
                row.tag = row.checkpoint_text
            else:
                row.tag = f'#{i}'


def _last_line(text, limit=160):
    """The last line of an error (a traceback's exception line), shortened to ``limit``."""
    line = text.strip().splitlines()[-1] if text.strip() else ''
    return line if len(line) <= limit else line[:limit - 1] + '…'


def _published_row(ref):
    cells = {c.key: Cell(ref.values.get(c.key), 'published' if c.key in ref.values else 'missing')
             for c in COLUMNS}
    return Row(ref.method, ref.backbone, ref.pretrain_epochs, cells, source=ref.source,
               published=True, notes=[ref.notes] if ref.notes else [])


def _find_baseline(rows, spec):
    wanted = ' '.join(spec.split()).lower()
    matches = [row for row in rows if wanted in _baseline_names(row)]
    if len(matches) == 1:
        return matches[0]
    labels = ', '.join(repr(row.label) for row in (matches or rows)) or 'none'
    problem = 'matches several rows' if matches else 'matches no row'
    raise ValueError(f'baseline {spec!r} {problem}; give one of: {labels}')


def _baseline_names(row):
    suffix = ' (published)' if row.published else ''
    names = [f'{row.method} {row.backbone}{suffix}', row.base_label, row.label]
    if row.checkpoint_sha256:
        names.append(f'{row.method} {row.backbone} [{short_sha(row.checkpoint_sha256)}]')
    return [name.lower() for name in names]


def _add_deltas(rows, baseline):
    for row in rows:
        if row is baseline:
            continue
        for key, cell in row.cells.items():
            base = baseline.cells[key].value
            if cell.value is not None and base is not None:
                cell.delta = round(round(cell.value, 1) - round(base, 1), 1) + 0.0  # no '-0.0'
