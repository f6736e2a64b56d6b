"""The leaderboard as data: one row per evaluated checkpoint (its sha256; for plain mmengine
work directories without a hash, the pretrained checkpoint's path), one cell per metric
column, in percent, with deltas against a chosen baseline row. Rows that would read alike
(same method, backbone and pretraining) are labelled with the checkpoint's short sha256 or
name.

A cell carries the protocol its value was obtained with. Deltas are computed only between
cells of the same protocol after the same pretraining; published values whose protocol is
not stated are kept apart (:attr:`Table.apart`), and published gains stay gains
(:attr:`Table.gains`). A row whose checkpoint file has changed since (a newer row of the same
path has another sha256) is marked superseded. A cell without a finished value says why
(``missing``, ``failed``, ``missing (interrupted)``, ``missing (running)``); it is never
shown as zero.
"""
import dataclasses
import os.path as osp
from typing import Dict, List, Optional

from ..results import short_sha
from ..results.metrics import COLUMNS
from ..results.protocols import RELEASED

# Which of several results for the same row and task is shown: the best status, then the last.
STATUS_RANK = {'done': 3, 'running': 2, 'interrupted': 1, 'failed': 0}


@dataclasses.dataclass
class Cell:
    """One metric of one row.

    Attributes:
        value: Percent value, None when there is no finished result.
        status: Task status (see :data:`~mixedconv.results.STATUSES`), ``'missing'`` (no
            such task result), or ``'published'`` (a reference number).
        delta: ``value`` minus the baseline's value (both rounded to 0.1), when both exist
            and were obtained with the same protocol.
        protocol: How the value was obtained, None when unknown.
        source: Where a published value comes from.
    """
    value: Optional[float] = None
    status: str = 'missing'
    delta: Optional[float] = None
    protocol: Optional[str] = None
    source: Optional[str] = None

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
        method, backbone: What the row describes.
        pretrain_epochs, pretrain_iters: How long the checkpoint was pretrained.
        cells: Column key -> :class:`Cell`.
        source: ``'measured'``, or the sources of published numbers.
        published: Whether the numbers are published ones rather than measured here.
        notes: Remarks shown under the table (failures, protocols).
        checkpoints: The checkpoint paths the row's results name (one file under several
            names when they share a sha256).
        reduced: The results come from recipes run at a reduced size on generated data.
        released: The row's checkpoint is a released fine-tuned model evaluated here (no
            training here); its protocol names that, so it gets no delta against rows
            trained here.
        superseded_by: Short sha256 of the newer content of this row's checkpoint file.
        time: When the row's newest result was produced (ISO text), for ordering.
    """
    method: str
    backbone: str
    pretrain_epochs: Optional[int]
    cells: Dict[str, Cell]
    source: str = 'measured'
    published: bool = False
    notes: List[str] = dataclasses.field(default_factory=list)
    checkpoints: List[str] = dataclasses.field(default_factory=list)
    checkpoint_sha256: Optional[str] = None
    tag: Optional[str] = None  # set when another row has the same base label
    pretrain_iters: Optional[int] = None
    reduced: bool = False
    released: bool = False
    superseded_by: Optional[str] = None
    time: str = ''

    @property
    def checkpoint(self):
        """The first checkpoint path of the row, None for published rows."""
        return self.checkpoints[0] if self.checkpoints else None

    @property
    def pretraining(self):
        """(epochs, iterations): rows compare only with rows of equal pretraining."""
        return self.pretrain_epochs, self.pretrain_iters

    @property
    def base_label(self):
        """``'MAE ViT-B 1600e'`` (``' (published)'`` appended for published rows)."""
        amount = (f' {self.pretrain_epochs}e' if self.pretrain_epochs is not None else
                  f' {self.pretrain_iters}it' if self.pretrain_iters is not None else '')
        return (f'{self.method} {self.backbone}{amount}'
                + (' (published)' if self.published else '')
                + (' (released)' if self.released else ''))

    @property
    def label(self):
        """:attr:`base_label`, with ``' [<short sha256 or file name>]'`` when it is shared."""
        return self.base_label + (f' [{self.tag}]' if self.tag else '')

    @property
    def checkpoint_text(self):
        """``'epoch_1600.pth (3fa2c1d9e0ab)'`` (names joined by ``' = '`` when one file was
        given under several), ``', superseded'`` appended for a superseded row; ``'—'`` for
        published rows."""
        if not self.checkpoints:
            return '—'
        names = ' = '.join(dict.fromkeys(_file_name(p) for p in self.checkpoints))
        text = f'{names} ({short_sha(self.checkpoint_sha256)})' if self.checkpoint_sha256 \
            else names
        return text + (', superseded' if self.superseded_by else '')

    @property
    def method_text(self):
        """The method cell: published rows say so, released weights and reduced runs too."""
        if self.published:
            return f'{self.method} (published' + (f', {self.tag})' if self.tag else ')')
        marks = ([RELEASED] if self.released else []) + (['reduced'] if self.reduced else [])
        return f'{self.method} ({", ".join(marks)})' if marks else self.method

    @property
    def epochs_text(self):
        """Pretraining epochs, else ``'<N> iters'`` for iteration-based pretraining."""
        if self.pretrain_epochs is not None:
            return str(self.pretrain_epochs)
        return '—' if self.pretrain_iters is None else f'{self.pretrain_iters} iters'


def _file_name(path):
    return path.replace('\\', '/').rstrip('/').split('/')[-1]


@dataclasses.dataclass
class Table:
    """Rows (measured ones first), the baseline row they are compared with, if any, and the
    published numbers that are not compared: values without a stated protocol
    (:attr:`apart`, rows of their own) and gains without absolute values (:attr:`gains`)."""
    rows: List[Row]
    baseline: Optional[Row] = None
    apart: List[Row] = dataclasses.field(default_factory=list)
    gains: list = dataclasses.field(default_factory=list)


def build_table(results, published=(), baseline=None, gains=()):
    """Arrange collected results (and published references) into a :class:`Table`.

    Args:
        results (list[Result]): From :func:`~.collect.collect`.
        published (sequence[PublishedResult]): Reference rows to add after the measured ones.
        baseline (str, optional): Row to compare against, as ``'METHOD BACKBONE'``, optionally
            followed by ``' <N>e'`` and/or ``' (published)'``, e.g. ``'MAE ViT-B'``.
        gains (sequence[PublishedGain]): Published gains, shown as such.

    Raises:
        ValueError: ``baseline`` matches no row or several rows.
    """
    rows = _measured_rows(results)
    _mark_superseded(rows)
    apart = []
    for ref in published:
        row, row_apart = _published_rows(ref)
        rows += [row] if row else []
        apart += [row_apart] if row_apart else []
    _tag_alike_rows(rows)
    table = Table(rows, apart=apart, gains=list(gains))
    if baseline:
        table.baseline = _find_baseline(rows, baseline)
        _add_deltas(rows, table.baseline)
    return table


def _measured_rows(results):
    chosen = {}  # (method, backbone, pretraining, checkpoint identity) -> {task: result}
    for result in results:
        rec = result.record
        identity = rec.checkpoint_sha256 or rec.checkpoint or ''
        key = (rec.method, rec.backbone, rec.pretrain_epochs, rec.pretrain_iters, identity)
        tasks = chosen.setdefault(key, {})
        current = tasks.get(rec.task)
        if current is None or STATUS_RANK[rec.status] >= STATUS_RANK[current.record.status]:
            tasks[rec.task] = result
    names = {}  # identity -> every checkpoint path its results name
    for result in results:
        rec = result.record
        if rec.checkpoint:
            names.setdefault(rec.checkpoint_sha256 or rec.checkpoint, []).append(rec.checkpoint)
    rows = []
    for (method, backbone, epochs, iters, identity), tasks in sorted(chosen.items(),
                                                                     key=_row_order):
        records = [result.record for result in tasks.values()]
        row = Row(method, backbone, epochs, {c.key: Cell() for c in COLUMNS},
                  checkpoints=list(dict.fromkeys(names.get(identity, []))),
                  checkpoint_sha256=records[0].checkpoint_sha256, pretrain_iters=iters,
                  reduced=any(r.reduced for r in records),
                  released=any(r.released for r in records),
                  time=max((r.finished or r.started or '') for r in records))
        for column in COLUMNS:
            result = tasks.get(column.task)
            if result is None:
                continue
            rec = result.record
            value = column.percent(rec.metrics)
            row.cells[column.key] = Cell(value if rec.status == 'done' else None, rec.status,
                                         protocol=rec.protocol)
        for task, result in tasks.items():
            if result.record.status != 'done':
                reason = f': {_last_line(result.record.error)}' if result.record.error else ''
                row.notes.append(f'{task} {result.record.status}{reason} ({result.source})')
        rows.append(row)
    return rows


def _row_order(item):
    (method, backbone, epochs, iters, identity), _ = item
    return (method.lower(), backbone.lower(), -1 if epochs is None else epochs,
            -1 if iters is None else iters, identity)


def _mark_superseded(rows):
    """Rows of one checkpoint path with different sha256: the file changed between runs.
    All but the newest are marked superseded, with a note naming the newer content."""
    by_path = {}
    for row in rows:
        if row.checkpoint_sha256:
            for path in row.checkpoints:
                by_path.setdefault(osp.normpath(path), []).append(row)
    for path, group in by_path.items():
        shas = {row.checkpoint_sha256 for row in group}
        if len(shas) < 2:
            continue
        newest = max(group, key=lambda row: row.time)
        for row in group:
            if row.checkpoint_sha256 != newest.checkpoint_sha256 and not row.superseded_by:
                row.superseded_by = short_sha(newest.checkpoint_sha256)
                row.notes.append(f'superseded: {path} has changed since these results; its '
                                 f'newer content is {short_sha(newest.checkpoint_sha256)}')


def _tag_alike_rows(rows):
    """Give rows that share a base label a tag that tells them apart: a published row's
    variant, the short sha256, else the checkpoint's file name (else its position)."""
    groups = {}
    for row in rows:
        if not row.tag:
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


def _published_rows(ref):
    """(row of the values with a stated protocol, row of the others), either None when
    empty."""
    made = []
    for cited in (True, False):
        values = {key: v for key, v in ref.values.items() if (v.protocol is not None) == cited}
        if not values:
            made.append(None)
            continue
        cells = {c.key: Cell() for c in COLUMNS}
        for key, reported in values.items():
            cells[key] = Cell(reported.value, 'published', protocol=reported.protocol,
                              source=reported.source)
        sources = ', '.join(dict.fromkeys(v.source for v in values.values()))
        row = Row(ref.method, ref.backbone, ref.pretrain_epochs, cells, source=sources,
                  published=True, notes=[ref.notes] if ref.notes else [], tag=ref.variant)
        if cited:
            alike = {}  # (protocol, source) -> the columns that share them
            for column in COLUMNS:
                if column.key in values:
                    value = values[column.key]
                    alike.setdefault((value.protocol, value.source), []).append(column.title)
            row.notes += [f'{", ".join(titles)}: {protocol} ({source})'
                          for (protocol, source), titles in alike.items()]
        made.append(row)
    return made


def _find_baseline(rows, spec):
    wanted = ' '.join(spec.split()).lower()
    matches = [row for row in rows if wanted in _baseline_names(row)]
    if len(matches) == 1:
        return matches[0]
    labels = ', '.join(repr(row.label) for row in (matches or rows)) or 'none'
    problem = 'matches several rows' if matches else 'matches no row'
    raise ValueError(f'baseline {spec!r} {problem}; give one of: {labels}')


def _baseline_names(row):
    if row.published and row.tag:  # another protocol's variant: named only by its tag
        return [row.label.lower()]
    suffix = ' (published)' if row.published else ''
    names = [f'{row.method} {row.backbone}{suffix}', row.base_label, row.label]
    if row.checkpoint_sha256:
        names.append(f'{row.method} {row.backbone} [{short_sha(row.checkpoint_sha256)}]')
    return [name.lower() for name in names]


def comparable(cell, row, base_cell, baseline):
    """Whether ``cell`` of ``row`` may be compared with ``base_cell`` of ``baseline``: the
    same pretraining and the same protocol (an unknown protocol only between measured
    rows, where the user chose what to compare)."""
    if row.pretraining != baseline.pretraining:
        return False
    if cell.protocol is None or base_cell.protocol is None:
        return (cell.protocol is base_cell.protocol and not row.published
                and not baseline.published)
    return cell.protocol == base_cell.protocol


def _add_deltas(rows, baseline):
    for row in rows:
        if row is baseline:
            continue
        for key, cell in row.cells.items():
            base = baseline.cells[key]
            if cell.value is not None and base.value is not None and \
                    comparable(cell, row, base, baseline):
                cell.delta = round(round(cell.value, 1) - round(base.value, 1), 1) + 0.0
