"""The benchmark's ratios, targets and tables."""
import contextlib
import json
import platform
import re
from pathlib import Path

import torch

BASELINE = 'mae'


def machine_description(device):
    """A short description of the device the numbers come from."""
    if device == 'cuda':
        return f'{torch.cuda.get_device_name()} (CUDA {torch.version.cuda})'
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        match = re.search(r'^model name\s*:\s*(.+)$', Path('/proc/cpuinfo').read_text(), re.M)
        model = match.group(1) if match else model
    return f'{model}, {torch.get_num_threads()} threads'


def add_ratios(rows):
    """Per-image time and peak-memory ratios to the MAE row (None without it)."""
    base = next((r for r in rows if r['key'] == BASELINE), None)
    for row in rows:
        usable = base is not None and row['kind'] == 'pretrain'
        row['time_vs_mae'] = row['ms_per_image'] / base['ms_per_image'] if usable else None
        row['mem_vs_mae'] = (row['peak_mb_per_image'] / base['peak_mb_per_image']
                             if usable and base['peak_mb_per_image'] > 0 else None)


# (description, numerator row, denominator row, quantity, limit, comparison)
TARGETS = (
    ('ConvMAE step time <= 1.2x MAE', 'convmae_skip', 'mae', 'ms_per_image', 1.2, 'le'),
    ('skip-masked path <= 0.75x dense path', 'convmae_skip', 'convmae_dense', 'ms_per_image',
     0.75, 'le'),
    ('MixedAE step time per source image <= 1.05x MAE', 'mixedae', 'mae', 'ms_per_image', 1.05,
     'le'),
    ('ConvMAE peak memory <= 1.3x MAE', 'convmae_skip', 'mae', 'peak_mb_per_image', 1.3, 'le'),
)


def check_targets(rows):
    """The project's speed and memory targets (``TARGETS``: ratios of the rows present) and
    >= 80 % of the matmul ceiling for every pretraining row but the MAE baseline."""
    by_key = {r['key']: r for r in rows}
    results = []
    for text, num, den, quantity, limit, _ in TARGETS:
        if num in by_key and den in by_key and by_key[den][quantity] > 0:
            value = by_key[num][quantity] / by_key[den][quantity]
            results.append(dict(target=text, value=value, limit=limit, met=value <= limit))
    for row in rows:  # our pretraining steps (the baseline is mmpretrain's code)
        if row['kind'] == 'pretrain' and row['key'] != BASELINE:
            value = row['fraction_of_ceiling']
            results.append(dict(target=f'{row["label"]}: >= 80% of the matmul rate',
                                value=value, limit=0.8, met=value >= 0.8))
    return results


COLUMNS = (  # header, row key, format
    ('model', 'label', '{}'),
    ('images', 'images', '{}'),
    ('px', 'img_size', '{}'),
    ('time/step (s)', 'time_s', '{:.3f}'),
    ('min (s)', 'time_min_s', '{:.3f}'),
    ('ms/image', 'ms_per_image', '{:.1f}'),
    ('x MAE (time)', 'time_vs_mae', '{:.2f}'),
    ('GFLOP/step', 'flops', '{:.1f}'),
    ('GFLOP/s', 'achieved_flops_per_s', '{:.1f}'),
    ('% of matmul', 'fraction_of_ceiling', '{:.0%}'),
    ('step peak MiB', 'peak_mb', '{:.0f}'),
    ('peak MiB/image', 'peak_mb_per_image', '{:.1f}'),
    ('x MAE (memory)', 'mem_vs_mae', '{:.2f}'),
    ('params+state MiB', 'held_mb', '{:.0f}'),
)
GIGA = ('flops', 'achieved_flops_per_s')
TINY_TARGETS_NOTE = ('The targets are set for the Base sizes; tiny models are dominated by '
                     'per-operation overhead, so their ratios say nothing about them.')


def markdown(result):
    """The result as Markdown: settings line, the table, the targets."""
    m, s, c = result['machine'], result['settings'], result['ceiling']
    lines = [
        f"Device: {m['description']} ({m['dtype']}, torch {m['torch']}); "
        f"pretraining batch {s['batch']} at {s['img_size']} px, backbones batch 1, detection "
        f"at {s['det_size']} px, segmentation at {s['seg_size']} px; arch {s['arch']}; median "
        f"of {s['repeats']} interleaved repeats after {s['warmup']} warm-up.",
        f"Ceiling: {c['op']} at {c['flops_per_s'] / 1e9:.1f} GFLOP/s.",
        '',
        '| ' + ' | '.join(h for h, _, _ in COLUMNS) + ' |',
        '|' + '|'.join('---' if k == 'label' else '---:' for _, k, _ in COLUMNS) + '|',
    ]
    for row in result['rows']:
        cells = []
        for _, key, fmt in COLUMNS:
            value = row[key]
            if value is None:
                cells.append('-')
            else:
                cells.append(fmt.format(value / 1e9 if key in GIGA else value))
        lines.append('| ' + ' | '.join(cells) + ' |')
    if result['targets']:
        lines += ['', '| target | measured | met |', '|---|---:|:---:|']
        for t in result['targets']:
            fmt = '{:.0%}' if '%' in t['target'] else '{:.3f}x'
            lines.append(f"| {t['target']} | {fmt.format(t['value'])} | "
                         f"{'yes' if t['met'] else 'no'} |")
        if s['arch'] != 'base':
            lines += ['', TINY_TARGETS_NOTE]
    return '\n'.join(lines) + '\n'


def write_outputs(result, out_dir):
    """Write ``speed.json`` and ``speed.md`` into ``out_dir``; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / 'speed.json', out / 'speed.md'
    json_path.write_text(json.dumps(result, indent=2))
    md_path.write_text(markdown(result))
    return json_path, md_path


