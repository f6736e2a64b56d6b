"""Every shipped config has a section in docs/recipes.md and resolves to the official values
recorded there."""
import ast
import glob
import os.path as osp
import re

import pytest
from mmengine.config import Config

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TABLE = osp.join(ROOT, 'docs', 'recipes.md')
# our stated deviations from the official runs (docs/recipes.md, introduction)
DEVIATIONS = {'optim_wrapper.dtype': 'bfloat16'}
_ABSENT = object()


def recipe_rows():
    """{config path: [(setting, key, official)]} of every config's section (sections headed
    by something other than a config path are not recipe tables)."""
    sections, current = {}, None
    for line in open(TABLE).read().splitlines():
        if line.startswith('## '):  # a section that is not a config's ends the table
            match = re.match(r'^## (\S+\.py)', line)
            current = sections.setdefault(match.group(1), []) if match else None
            continue
        if current is None or not line.startswith('| ') or line.startswith('| setting'):
            continue
        cells = [c.strip() for c in line.strip().strip('|').split(' | ')]
        if len(cells) == 5 and cells[1]:
            current.append((cells[0], cells[1], ast.literal_eval(cells[2])))
    return sections


def lookup(cfg, key):
    node = cfg
    for part in key.split('.'):
        if isinstance(node, (list, tuple)):
            index = int(part)
            if index >= len(node):
                return _ABSENT
            node = node[index]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return _ABSENT
    return node


def plain(value):
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


ROWS = recipe_rows()


def shipped_configs():
    """Every config under configs/ but the _base_ files, relative to configs/."""
    root = osp.join(ROOT, 'configs')
    return sorted(osp.relpath(path, root)
                  for path in glob.glob(osp.join(root, '**', '*.py'), recursive=True)
                  if '_base_' not in osp.relpath(path, root).split(osp.sep))


def test_table_covers_every_shipped_config():
    assert sorted(ROWS) == shipped_configs()
    for name, rows in ROWS.items():
        assert len(rows) > 10, name
        officials = {}
        for _, key, official in rows:  # a key described twice has one official value
            assert officials.setdefault(key, official) == official, f'{name}: {key}'


def test_config_names_state_the_official_batch():
    """The GPUs x per-GPU batch in a config name is the total batch of its table."""
    for name in ROWS:
        cfg = Config.fromfile(osp.join(ROOT, 'configs', name))
        gpus, per_gpu = map(int, re.search(r'_(\d+)xb(\d+)', name).groups())
        assert cfg.train_dataloader.batch_size == per_gpu, name
        assert cfg.auto_scale_lr.base_batch_size == gpus * per_gpu, name


@pytest.mark.parametrize('name', sorted(ROWS))
def test_config_has_the_official_values(name):
    cfg = Config.fromfile(osp.join(ROOT, 'configs', name)).to_dict()
    wrong = []
    for setting, key, official in ROWS[name]:
        expected = DEVIATIONS.get(key, official)
        value = lookup(cfg, key)
        if value is _ABSENT:
            if expected is not None:
                wrong.append(f'{key}: absent, official {expected!r} ({setting})')
        elif plain(value) != plain(expected):
            wrong.append(f'{key}: {value!r}, official {expected!r} ({setting})')
    assert not wrong, '\n'.join(wrong)
