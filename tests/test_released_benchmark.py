"""``tools/benchmark.py --finetuned``: a released fine-tuned detector or segmentor is evaluated
as it is, recorded under the bytes it loaded, and shown as released weights, apart from
models trained here (the official layouts of :mod:`test_whole_models`, tiny, on generated
data)."""
import csv
import hashlib
import json
import os
import os.path as osp
import subprocess
import sys

import pytest

from layouts import ROOT
from mixedconv.benchmark import released
from mixedconv.checkpoint import safe_load
from mixedconv.results.protocols import CONVMAE_FPN_25EP, CONVMAE_VITDET_25EP, RELEASED
from test_whole_models import RECIPES, official_tiny_config, save_official

TOOL = osp.join(ROOT, 'tools', 'benchmark.py')


def tiny_recipe(layout, folder):
    """The layout's tiny recipe, saved under the shipped recipe's file name."""
    os.makedirs(folder, exist_ok=True)
    cfg = official_tiny_config(layout, osp.join(folder, 'unused'))
    path = osp.join(folder, osp.basename(RECIPES[layout][0]))
    cfg.dump(path)
    return path


def benchmark(*args, cwd=ROOT):
    return subprocess.run([sys.executable, TOOL, *args], capture_output=True, text=True,
                          cwd=cwd, timeout=900)


def test_released_detector_is_evaluated_and_shown_as_released(tmp_path):
    config = tiny_recipe('detectron2_convmae_vitdet', str(tmp_path))
    released_file = str(tmp_path / 'model_final.pth')
    save_official('detectron2_convmae_vitdet', released_file)
    work = str(tmp_path / 'work')
    result = benchmark('--finetuned', released_file, '--config', config, '--tasks',
                       'coco-maskrcnn', '--work-dir', work)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    runs = [d for d in sorted(os.listdir(osp.join(work, 'transfer')))
            if d.startswith('released_')]
    assert len(runs) == 1 and runs[0].startswith('released_convmae_convvit-')
    summary = json.load(open(osp.join(work, 'transfer', runs[0], 'coco-maskrcnn',
                                      'summary.json')))
    sha = hashlib.sha256(open(released_file, 'rb').read()).hexdigest()
    assert summary['status'] == 'done' and summary['released'] and summary['reduced']
    assert summary['checkpoint_sha256'] == sha and summary['method'] == 'ConvMAE'
    assert summary['protocol'] == f'{CONVMAE_VITDET_25EP}; {RELEASED} on generated data'
    assert 0 <= summary['metrics']['coco/bbox_mAP'] <= 1
    assert 'coco/segm_mAP' in summary['metrics']
    # the copy it loaded is gone once the task is done
    assert not osp.exists(osp.join(work, 'transfer', runs[0], released.WEIGHTS))

    board = open(osp.join(work, 'leaderboard', 'leaderboard.md')).read()
    assert f'ConvMAE ({RELEASED}, reduced)' in board
    assert 'Rows marked released weights are fine-tuned models' in board
    rows = list(csv.DictReader(open(osp.join(work, 'leaderboard', 'leaderboard.csv'))))
    mine = [row for row in rows if row['checkpoint_sha256'] == sha]
    assert [row['kind'] for row in mine] == ['released']
    assert float(mine[0]['coco_box_ap']) == pytest.approx(
        100 * summary['metrics']['coco/bbox_mAP'], abs=0.01)

    again = benchmark('--finetuned', released_file, '--config', config, '--tasks',
                      'coco-maskrcnn', '--work-dir', work)
    assert again.returncode == 0 and 'done before, not rerun' in again.stdout


def test_the_recipe_a_released_file_fits_is_found(tmp_path, monkeypatch):
    """Among a task's recipes the file goes to the one it loads into whole; the FPN file and
    the ViTDet-style file of ConvMAE each find their own."""
    recipes = {layout: tiny_recipe(layout, str(tmp_path / layout.replace('_', '-')))
               for layout in ('detectron2_convmae_fpn', 'detectron2_convmae_vitdet')}
    monkeypatch.setattr(released, 'task_recipes', lambda task: sorted(recipes.values()))
    for layout, recipe in recipes.items():
        path = str(tmp_path / f'{layout}.pth')
        save_official(layout, path)
        fit, problems = released.fitting_recipe(path, safe_load(path), ['coco-maskrcnn'])
        assert fit == ('coco-maskrcnn', recipe)
        assert len(problems) == 1 and 'does not load whole' in problems[0]


def test_a_released_file_that_fits_no_recipe_is_refused(tmp_path):
    """A tiny released model fits none of the shipped (base) recipes: one error naming each
    recipe's first problem and --config; nothing recorded."""
    released_file = str(tmp_path / 'model_final.pth')
    save_official('detectron2_mae_vitdet', released_file)
    work = str(tmp_path / 'work')
    result = benchmark('--finetuned', released_file, '--tasks', 'coco-maskrcnn',
                       '--work-dir', work, '--method', 'MAE')
    assert result.returncode == 2, result.stderr[-3000:]
    assert 'does not load whole into the recipe of any of the tasks coco-maskrcnn' in \
        result.stderr
    assert 'mask-rcnn_vit-base-p16_sfp' in result.stderr and '--config' in result.stderr
    assert not any(name.startswith('released_') for name in
                   os.listdir(osp.join(work, 'transfer')))


def test_released_plain_vit_needs_its_method(tmp_path):
    config = tiny_recipe('mmseg0x_mae_upernet', str(tmp_path))
    released_file = str(tmp_path / 'iter_160000.pth')
    save_official('mmseg0x_mae_upernet', released_file)
    result = benchmark('--finetuned', released_file, '--config', config, '--tasks',
                       'ade20k-upernet', '--work-dir', str(tmp_path / 'work'))
    assert result.returncode == 2
    assert 'pass --method' in result.stderr and 'MAE' in result.stderr


def test_finetuned_refuses_to_mix_with_pretrained_checkpoints(tmp_path):
    path = str(tmp_path / 'a.pth')
    open(path, 'wb').close()
    result = benchmark(path, '--finetuned', path)
    assert result.returncode == 2 and 'another call with the same --work-dir' in result.stderr
    result = benchmark(path, '--config', path)
    assert result.returncode == 2 and '--config goes with --finetuned' in result.stderr
