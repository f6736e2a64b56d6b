"""Every config with a section in docs/recipes.md (transfer, linear probe, pretraining) resolves
to the official values recorded there."""
import ast
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
    """{config path: [(setting, key, official)]} of every section."""
    sections, current = {}, None
    for line in open(TABLE).read().splitlines():
        match = re.match(r'^## (\S+\.py)', line)
        if match:
            current = sections.setdefault(match.group(1), [])
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
TRANSFER = [
    'convmae/mask-rcnn_convvit-base-p16_fpn_8xb4-amp-lsj-1024-25e_coco.py',
    'convmae/mask-rcnn_convvit-base-p16_sfp_8xb2-amp-lsj-1024-25e_coco.py',
    'mixedae/mask-rcnn_vit-base-p16_sfp_16xb4-amp-lsj-1024-100e_coco.py',
    'mae/mask-rcnn_vit-base-p16_sfp_16xb4-amp-lsj-1024-100e_coco.py',
    'convmae/upernet_convvit-base-p16_8xb2-amp-160k_ade20k-512x512.py',
    'mixedae/upernet_vit-base-p16_8xb2-amp-160k_ade20k-512x512.py',
    'mae/upernet_vit-base-p16_8xb2-amp-160k_ade20k-512x512.py',
]
OTHER = [
    'convmae/convmae_convvit-base-p16_8xb512-linear-coslr-90e_in1k.py',
    'convmae/convmae_convvit-base-p16_8xb384-amp-coslr-1600e_in1k.py',
]


def is_transfer(name):
    return 'mask-rcnn' in name or 'upernet' in name


def test_table_covers_every_transfer_config():
    assert sorted(ROWS) == sorted(TRANSFER + OTHER)
    for name, rows in ROWS.items():
        assert osp.isfile(osp.join(ROOT, 'configs', name)), name
        assert len(rows) > (40 if is_transfer(name) else 10), name


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
