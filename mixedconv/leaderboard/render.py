"""Write a :class:`~.table.Table` as Markdown, CSV, a self-contained HTML page and a PNG plot.

All formats show the same cell texts (:meth:`~.table.Cell.text`); the CSV additionally keeps
value, delta, status and protocol in separate columns for machines. The HTML page has inline
CSS and the plot inlined as a ``data:image/png;base64`` URI, so it opens anywhere without
other files. Text that comes from outside (paths, method names, errors) is escaped for each
format: control characters are shown as escapes (a newline in a file name cannot break a
Markdown row), ``|`` and ``<`` are escaped in Markdown, everything in HTML, and CSV fields
that a spreadsheet would read as a formula are quoted with a leading ``'``. Each file is
written atomically (:func:`~mixedconv.fileio.atomic_write`): a full disk leaves the previous
file, never a truncated one.
"""
import base64
import csv
import html
import io
import os.path as osp
import re
import textwrap
import unicodedata

from ..families import FAMILIES, TINY
from ..results.metrics import COLUMNS

HEADERS = ('method', 'backbone', 'pretrain epochs', 'checkpoint') + tuple(c.title for c in COLUMNS)
BAR_COLORS = ('#4c72b0', '#dd8452', '#55a868', '#c44e52', '#8172b3', '#937860', '#da8bc3',
              '#8c8c8c', '#ccb974', '#64b5cd')
CSS = """
body { font-family: sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin-bottom: 1em; }
th, td { border: 1px solid #ccc; padding: 4px 10px; }
th { background: #f0f0f0; }
td.num { text-align: right; }
td.missing { color: #999; }
td.failed { color: #b00; font-weight: bold; }
tr.published { font-style: italic; background: #fafafa; }
tr.baseline { background: #eef4ff; }
tr.superseded { color: #888; text-decoration: line-through; }
p.scope { border: 2px solid #d9822b; background: #fff4e5; padding: 0.6em 1em; }
"""


def printable(text):
    """``text`` with every control character (newline, tab, escape, ...) written as its
    Python escape, so that it stays on one line and cannot drive a terminal."""
    return ''.join(ch.encode('unicode_escape').decode('ascii')
                   if unicodedata.category(ch) == 'Cc' else ch for ch in str(text))


def md_cell(text):
    """``text`` for one Markdown table cell."""
    return (printable(text).replace('\\', '\\\\').replace('|', '\\|')
            .replace('<', '&lt;').replace('>', '&gt;'))


def csv_field(text):
    """``text`` for CSV: printable, and never read as a formula by a spreadsheet."""
    text = printable(text)
    return "'" + text if re.match(r'[=+\-@]', text) else text


def cells(row):
    """The displayed texts of one row, in :data:`HEADERS` order."""
    return [row.method_text, row.backbone, row.epochs_text, row.checkpoint_text] + [
        row.cells[c.key].text() for c in COLUMNS]


def scope(table):
    """What the page must say before its numbers: whether measured rows come from tiny
    models or generated data (the embedded benchmark, or a checkpoint tried at a reduced
    size), which makes them a check that the chain runs, not a result."""
    measured = [row for row in table.rows if not row.published]
    reduced = [row for row in measured if row.reduced]
    if not reduced:
        return None
    tiny = sorted({row.backbone for row in reduced if row.backbone.endswith('-' + TINY)})
    iters = sorted({row.pretrain_iters for row in reduced if row.pretrain_iters is not None})
    what = []
    if tiny:
        sizes = '; '.join(f'{f.label}-{TINY}: {_sizes(f.tiny)}' for f in FAMILIES.values()
                          if f'{f.label}-{TINY}' in tiny)
        what.append(f'tiny models ({sizes})' + (
            f' pretrained for {", ".join(map(str, iters))} iterations' if iters else ''))
    protocols = sorted({cell.protocol for row in reduced for cell in row.cells.values()
                        if cell.protocol})
    what.append('generated data in the COCO, ADE20K and ImageNet formats')
    if protocols:
        what.append('the transfer recipes ' + '; '.join(protocols))
    return (f'Rows marked (reduced) are not results: {", ".join(what)}. They show that the '
            'chain runs; their numbers say nothing about the methods and compare with '
            'nothing published.')


def _sizes(arch):
    return ', '.join(f'{key} {value}' for key, value in arch.items())


def notes(table):
    """Lines shown under the table: the baseline, the protocols, unfinished tasks and
    superseded rows."""
    lines = ['Values in percent.' + (f' Deltas against {table.baseline.label} (only where '
                                     'the protocol and the pretraining are the same).'
                                     if table.baseline else '')]
    if any(row.published for row in table.rows):
        lines.append('Rows marked published are numbers reported by their source, '
                     'not measured here; each value\'s protocol and source follow.')
    if any(row.released for row in table.rows):
        lines.append('Rows marked released weights are fine-tuned models as their authors '
                     'released them, evaluated here with the recipe\'s test loop and nothing '
                     'trained; they compare with the published number of the same model, '
                     'never with rows trained here.')
    protocols = sorted({(c.title, row.cells[c.key].protocol) for row in table.rows
                        if not row.published for c in COLUMNS if row.cells[c.key].protocol})
    lines += [f'Measured {title}: {protocol}' for title, protocol in protocols]
    lines += [f'{row.label}: {note}' for row in table.rows for note in row.notes]
    return lines


def apart_lines(table):
    """The published values without a stated protocol and the published gains, one line
    each: shown, never compared."""
    lines = []
    for row in table.apart:
        values = ', '.join(f'{c.title} {row.cells[c.key].value:.1f} ({row.cells[c.key].source})'
                           for c in COLUMNS if row.cells[c.key].value is not None)
        note = f'; {"; ".join(row.notes)}' if row.notes else ''
        lines.append(f'{row.label}: {values}{note}')
    for gain in table.gains:
        gains = ', '.join(f'{metric} {value:+.1f}' for metric, value in gain.gains.items())
        lines.append(f'{gain.method} {gain.backbone} over {gain.baseline}, {gain.protocol} '
                     f'({gain.source}): {gains}')
    return lines


APART_TITLE = ('Published numbers not compared (no stated protocol, or gains without '
               'absolute values)')


def to_markdown(table):
    """A GitHub Markdown table with what the page must say first, its notes after and the
    published numbers that are not compared last."""
    lines = []
    page_scope = scope(table)
    if page_scope:
        lines += [f'> **{md_cell(page_scope)}**', '']
    align = ['---'] * 4 + ['---:'] * len(COLUMNS)
    lines += [_md_line(HEADERS), _md_line(align)]
    lines += [_md_line(cells(row)) for row in table.rows]
    lines += [''] + [f'- {md_cell(note)}' for note in notes(table)]
    apart = apart_lines(table)
    if apart:
        lines += ['', f'{APART_TITLE}:', ''] + [f'- {md_cell(line)}' for line in apart]
    return '\n'.join(lines) + '\n'


def _md_line(values):
    return '| ' + ' | '.join(md_cell(v) for v in values) + ' |'


def to_csv(table):
    """CSV text: one line per row (``kind`` ``measured``, ``released`` or ``published``;
    the published values kept apart too, ``kind`` ``published-apart``); for each metric its
    value (percent, 2 decimals, empty when missing), delta against the baseline, status and
    protocol."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator='\n')
    writer.writerow(['method', 'backbone', 'pretrain_epochs', 'pretrain_iters', 'kind',
                     'reduced', 'source', 'checkpoint', 'checkpoint_sha256', 'superseded_by'] + [
        f'{c.key}{suffix}' for c in COLUMNS
        for suffix in ('', '_delta', '_status', '_protocol')])
    for kind, rows in (('row', table.rows), ('published-apart', table.apart)):
        for row in rows:
            values = []
            for column in COLUMNS:
                cell = row.cells[column.key]
                values += [_fmt(cell.value, '.2f'), _fmt(cell.delta, '+.1f'), cell.status,
                           csv_field(cell.protocol or '')]
            kind_text = kind if kind != 'row' else ('published' if row.published else
                                                    'released' if row.released else 'measured')
            writer.writerow([csv_field(row.method), csv_field(row.backbone),
                             _fmt(row.pretrain_epochs, 'd'), _fmt(row.pretrain_iters, 'd'),
                             kind_text, str(row.reduced).lower(), csv_field(row.source),
                             csv_field(row.checkpoint or ''), row.checkpoint_sha256 or '',
                             row.superseded_by or ''] + values)
    return buf.getvalue()


def _fmt(value, spec):
    return '' if value is None else format(value, spec)


def bar_groups(table):
    """The groups of bars: one per metric, protocol and pretraining that some rows share,
    in column order; bars stand side by side only where their values compare.

    Returns:
        list[tuple[Column, str | None, tuple, list[tuple[int, float]]]]: (column, protocol,
        (pretrain epochs, iterations), [(row index, value)]).
    """
    groups = {}
    for i, row in enumerate(table.rows):
        for column in COLUMNS:
            cell = row.cells[column.key]
            if cell.value is None or row.superseded_by:
                continue
            groups.setdefault((column.key, cell.protocol, row.pretraining), []).append(
                (i, cell.value))
    order = [c.key for c in COLUMNS]
    by_key = {c.key: c for c in COLUMNS}
    return [(by_key[key], protocol, pretraining, bars) for (key, protocol, pretraining), bars
            in sorted(groups.items(), key=lambda item: order.index(item[0][0]))]


def _group_title(column, protocol, pretraining):
    epochs, iters = pretraining
    pretrained = (f'{epochs} ep pretraining' if epochs is not None else
                  f'{iters} it pretraining' if iters is not None else '')
    lines = [column.title, *textwrap.wrap(protocol or 'protocol not stated', 26), pretrained]
    return '\n'.join(printable(line) for line in lines if line)


def to_png(table):
    """PNG bytes of grouped bars (:func:`bar_groups`): published rows hatched. Missing
    values and superseded rows get no bar."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    groups = bar_groups(table)
    fig = Figure(figsize=(max(6.0, 2.2 * len(groups) + 2.0), 5.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    labelled = set()
    for x, (_, _, _, bars) in enumerate(groups):
        width = 0.8 / len(bars)
        for j, (i, value) in enumerate(bars):
            row = table.rows[i]
            ax.bar(x - 0.4 + width * (j + 0.5), value, width,
                   label=None if i in labelled else printable(row.label),
                   color=BAR_COLORS[i % len(BAR_COLORS)],
                   hatch='//' if row.published else None, edgecolor='white', linewidth=0.5)
            labelled.add(i)
    ax.set_xticks(range(len(groups)), [_group_title(*group[:3]) for group in groups],
                  fontsize='x-small')
    ax.set_ylabel('percent')
    ax.set_title('Transfer results, side by side where the protocol is the same' if groups
                 else 'No finished results yet')
    if labelled:
        ax.legend(fontsize='small', loc='upper left', bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format='png')
    return buf.getvalue()


def to_html(table, png):
    """A self-contained HTML page: inline CSS, what the page must say first, the table, its
    notes, the numbers not compared and the plot ``png`` (bytes) as a base64 data URI; no
    external URL or script."""
    body = []
    page_scope = scope(table)
    if page_scope:
        body.append(f'<p class="scope"><strong>{_html(page_scope)}</strong></p>')
    body += ['<table>', '<tr>' + ''.join(f'<th>{_html(h)}</th>' for h in HEADERS) + '</tr>']
    for row in table.rows:
        classes = ' '.join(name for name, on in (('published', row.published),
                                                  ('released', row.released),
                                                  ('baseline', row is table.baseline),
                                                  ('superseded', row.superseded_by)) if on)
        tds = [f'<td>{_html(text)}</td>' for text in cells(row)[:4]]
        for column in COLUMNS:
            cell = row.cells[column.key]
            kind = 'num' if cell.value is not None else (
                'failed' if cell.status == 'failed' else 'missing')
            title = f' title="{_html(cell.protocol)}"' if cell.protocol else ''
            tds.append(f'<td class="{kind}"{title}>{_html(cell.text())}</td>')
        body.append((f'<tr class="{classes}">' if classes else '<tr>') + ''.join(tds) + '</tr>')
    body.append('</table>')
    body.append('<ul>' + ''.join(f'<li>{_html(n)}</li>' for n in notes(table)) + '</ul>')
    apart = apart_lines(table)
    if apart:
        body.append(f'<h2>{_html(APART_TITLE)}</h2>')
        body.append('<ul>' + ''.join(f'<li>{_html(line)}</li>' for line in apart) + '</ul>')
    data = base64.b64encode(png).decode('ascii')
    body.append(f'<img alt="metrics per method" src="data:image/png;base64,{data}">')
    return ('<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<title>mixedconv leaderboard</title>\n<style>{CSS}</style>\n</head>\n<body>\n'
            '<h1>mixedconv leaderboard</h1>\n' + '\n'.join(body) + '\n</body>\n</html>\n')


def _html(text):
    return html.escape(printable(text))


def write_leaderboard(table, out_dir):
    """Write ``leaderboard.{md,csv,html,png}`` into ``out_dir`` (created if needed), each
    atomically.

    Returns:
        dict[str, str]: Format (``'md'``, ``'csv'``, ``'html'``, ``'png'``) -> file path.

    Raises:
        NotADirectoryError: ``out_dir`` (or a folder above it) is a file.
        OSError: a file could not be written (full disk, no permission); the previous file
            of that name is then unchanged.
    """
    from ..fileio import atomic_write
    if osp.exists(out_dir) and not osp.isdir(out_dir):
        raise NotADirectoryError(f'the leaderboard folder {out_dir} is a file; give a folder '
                                 '(it is created when missing)')
    png = to_png(table)
    contents = {'png': png, 'csv': to_csv(table), 'html': to_html(table, png),
                'md': to_markdown(table)}
    paths = {}
    for ext in ('md', 'csv', 'html', 'png'):
        paths[ext] = osp.join(out_dir, f'leaderboard.{ext}')
    for ext, content in contents.items():
        data = content if isinstance(content, bytes) else content.encode('utf-8')
        atomic_write(paths[ext], data)
    return paths
