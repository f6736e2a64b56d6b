"""Write a :class:`~.table.Table` as Markdown, CSV, a self-contained HTML page and a PNG plot.

All formats show the same cell texts (:meth:`~.table.Cell.text`); the CSV additionally keeps
value, delta and status in separate columns for machines. The HTML page has inline CSS and the
plot inlined as a ``data:image/png;base64`` URI, so it opens anywhere without other files.
"""
import base64
import csv
import html
import io
import os
import os.path as osp

from .metrics import COLUMNS

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
"""


def cells(row):
    """The displayed texts of one row, in :data:`HEADERS` order."""
    return [row.method_text, row.backbone, row.epochs_text, row.checkpoint_text] + [
        row.cells[c.key].text() for c in COLUMNS]


def notes(table):
    """Lines shown under the table: the baseline, unfinished tasks and published protocols."""
    lines = ['Values in percent.' + (f' Deltas against {table.baseline.label}.'
                                     if table.baseline else '')]
    if any(row.published for row in table.rows):
        lines.append('Rows marked published are numbers reported by their source, '
                     'not measured here.')
    lines += [f'{row.label}: {note}' for row in table.rows for note in row.notes]
    return lines


def to_markdown(table):
    """A GitHub Markdown table followed by its notes as a list."""
    align = ['---'] * 4 + ['---:'] * len(COLUMNS)
    lines = [_md_line(HEADERS), _md_line(align)]
    lines += [_md_line(cells(row)) for row in table.rows]
    lines += [''] + [f'- {note}' for note in notes(table)]
    return '\n'.join(lines) + '\n'


def _md_line(values):
    return '| ' + ' | '.join(str(v).replace('|', '\\|') for v in values) + ' |'


def to_csv(table):
    """CSV text: one line per row; for each metric its value (percent, 2 decimals, empty when
    missing), delta against the baseline and status."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator='\n')
    writer.writerow(['method', 'backbone', 'pretrain_epochs', 'published', 'source',
                     'checkpoint', 'checkpoint_sha256'] + [
        f'{c.key}{suffix}' for c in COLUMNS for suffix in ('', '_delta', '_status')])
    for row in table.rows:
        values = []
        for column in COLUMNS:
            cell = row.cells[column.key]
            values += [_fmt(cell.value, '.2f'), _fmt(cell.delta, '+.1f'), cell.status]
        writer.writerow([row.method, row.backbone, _fmt(row.pretrain_epochs, 'd'),
                         str(row.published).lower(), row.source, row.checkpoint or '',
                         row.checkpoint_sha256 or ''] + values)
    return buf.getvalue()


def _fmt(value, spec):
    return '' if value is None else format(value, spec)


def to_png(table):
    """PNG bytes of grouped bars: one group per metric with any value, one bar per row
    (published rows hatched). Missing values get no bar."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    columns = [c for c in COLUMNS if any(r.cells[c.key].value is not None for r in table.rows)]
    fig = Figure(figsize=(max(6.0, 2.2 * len(columns) + 2.0), 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    width = 0.8 / max(len(table.rows), 1)
    for i, row in enumerate(table.rows):
        xs, heights = [], []
        for x, column in enumerate(columns):
            value = row.cells[column.key].value
            if value is not None:
                xs.append(x - 0.4 + width * (i + 0.5))
                heights.append(value)
        ax.bar(xs, heights, width, label=row.label, color=BAR_COLORS[i % len(BAR_COLORS)],
               hatch='//' if row.published else None, edgecolor='white', linewidth=0.5)
    ax.set_xticks(range(len(columns)), [c.title for c in columns])
    ax.set_ylabel('percent')
    ax.set_title('Transfer results per method' if columns else 'No finished results yet')
    if table.rows:
        ax.legend(fontsize='small', loc='upper left', bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format='png')
    return buf.getvalue()


def to_html(table, png):
    """A self-contained HTML page: inline CSS, the table, its notes and the plot ``png``
    (bytes) as a base64 data URI; no external URL or script."""
    body = ['<table>', '<tr>' + ''.join(f'<th>{html.escape(h)}</th>' for h in HEADERS) + '</tr>']
    for row in table.rows:
        classes = ' '.join(name for name, on in (('published', row.published),
                                                  ('baseline', row is table.baseline)) if on)
        tds = [f'<td>{html.escape(text)}</td>' for text in cells(row)[:4]]
        for column in COLUMNS:
            cell = row.cells[column.key]
            kind = 'num' if cell.value is not None else (
                'failed' if cell.status == 'failed' else 'missing')
            tds.append(f'<td class="{kind}">{html.escape(cell.text())}</td>')
        body.append((f'<tr class="{classes}">' if classes else '<tr>') + ''.join(tds) + '</tr>')
    body.append('</table>')
    body.append('<ul>' + ''.join(f'<li>{html.escape(n)}</li>' for n in notes(table)) + '</ul>')
    data = base64.b64encode(png).decode('ascii')
    body.append(f'<img alt="metrics per method" src="data:image/png;base64,{data}">')
    return ('<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<title>mixedconv leaderboard</title>\n<style>{CSS}</style>\n</head>\n<body>\n'
            '<h1>mixedconv leaderboard</h1>\n' + '\n'.join(body) + '\n</body>\n</html>\n')


def write_leaderboard(table, out_dir):
    """Write ``leaderboard.{md,csv,html,png}`` into ``out_dir`` (created if needed).

    Returns:
        dict[str, str]: Format (``'md'``, ``'csv'``, ``'html'``, ``'png'``) -> file path.
    """
    os.makedirs(out_dir, exist_ok=True)
    png = to_png(table)
    contents = {'md': to_markdown(table), 'csv': to_csv(table), 'html': to_html(table, png),
                'png': png}
    paths = {}
    for ext, content in contents.items():
        paths[ext] = osp.join(out_dir, f'leaderboard.{ext}')
        mode = 'wb' if isinstance(content, bytes) else 'w'
        with open(paths[ext], mode, **({} if mode == 'wb' else {'encoding': 'utf-8'})) as f:
            f.write(content)
    return paths
