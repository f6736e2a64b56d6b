"""tools/analysis/speed.py: a functional run with tiny models (no timing assertions)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TOOL = REPO / 'tools' / 'analysis' / 'speed.py'
TRAIN_ROWS = ['convvit_fpn_train', 'convvit_sfp_train', 'plainvit_sfp_train',
              'convvit_seg_train', 'plainvit_seg_train']
ROWS = ['mae', 'convmae_skip', 'convmae_dense', 'mixedae', 'convvit_det',
        'plainvit_det'] + TRAIN_ROWS
PRETRAIN_ROWS = ROWS[:4]


def run_tool(*args):
    return subprocess.run([sys.executable, '-W', 'ignore', str(TOOL), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope='module')
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp('speed')
    proc = run_tool('--arch', 'tiny', '--img-size', '64', '--det-size', '64', '--seg-size', '96',
                    '--batch', '8',
                    '--repeats', '2', '--warmup', '0', '--device', 'cpu', '--out', str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout, out


def test_json_has_every_row_with_consistent_numbers(tiny_run):
    _, out = tiny_run
    result = json.loads((out / 'speed.json').read_text())
    assert [row['key'] for row in result['rows']] == ROWS
    assert result['machine']['device'] == 'cpu'
    assert result['settings']['arch'] == 'tiny'
    assert result['ceiling']['flops_per_s'] > 0
    assert len(result['ceiling']['times_s']) == 2
    by_key = {row['key']: row for row in result['rows']}
    for row in result['rows']:
        assert len(row['times_s']) == 2 and row['time_s'] > 0
        assert row['flops'] > 0
        assert row['achieved_flops_per_s'] == pytest.approx(row['flops'] / row['time_s'])
        assert row['fraction_of_ceiling'] == pytest.approx(
            row['achieved_flops_per_s'] / result['ceiling']['flops_per_s'])
        assert row['peak_mb'] >= 0 and row['held_mb'] > 0
    for key in PRETRAIN_ROWS:
        row = by_key[key]
        assert (row['images'], row['img_size']) == (8, 64)
        # per-image memory: slope of the step peak between batch 8 and batch 16
        assert set(row['peaks_mb']) == {'8', '16'}
        assert row['peak_mb'] == row['peaks_mb']['8']
        assert row['peak_mb_per_image'] == pytest.approx(
            (row['peaks_mb']['16'] - row['peaks_mb']['8']) / 8)
        assert row['time_vs_mae'] == pytest.approx(
            row['ms_per_image'] / by_key['mae']['ms_per_image'])
    assert by_key['mae']['time_vs_mae'] == pytest.approx(1.0)
    assert (by_key['convvit_det']['images'], by_key['convvit_det']['img_size']) == (1, 64)
    assert by_key['convvit_det']['time_vs_mae'] is None
    assert set(by_key['convvit_det']['peaks_mb']) == {'1'}
    assert by_key['convmae_skip']['overrides'] == {'skip_masked': True}
    assert by_key['convmae_dense']['overrides'] == {'skip_masked': False}
    # the dense path computes every masked position: more FLOPs and a larger live map
    assert by_key['convmae_dense']['flops'] > by_key['convmae_skip']['flops']
    assert by_key['convmae_dense']['peak_mb'] > 0
    # training steps of the transfer backbones: one image at the detection or segmentation side
    for key in TRAIN_ROWS:
        row = by_key[key]
        assert row['kind'] == 'train' and row['images'] == 1, key
        assert row['img_size'] == (96 if 'seg' in key else 64), key
        assert set(row['peaks_mb']) == {'1'} and row['time_vs_mae'] is None, key
        assert row['grad_mb'] > 0, key
    # forward + backward of the inference rows' backbones: about three forwards
    for train, inference in (('convvit_sfp_train', 'convvit_det'),
                             ('plainvit_sfp_train', 'plainvit_det')):
        assert by_key[train]['config'] == by_key[inference]['config']
        assert 2.5 < by_key[train]['flops'] / by_key[inference]['flops'] < 3.5
    assert by_key['convvit_fpn_train']['config'].endswith(
        'mask-rcnn_convvit-base-p16_fpn_8xb4-amp-lsj-1024-25e_coco.py')
    assert 'upernet' in by_key['convvit_seg_train']['config']
    assert 'upernet' in by_key['plainvit_seg_train']['config']
    targets = {t['target'] for t in result['targets']}
    matmul_targets = {t for t in targets if 'matmul rate' in t}
    assert matmul_targets == {f"{by_key[k]['label']}: >= 80% of the matmul rate"
                              for k in ('convmae_skip', 'convmae_dense', 'mixedae')}
    assert 'skip-masked path <= 0.75x dense path' in targets
    assert 'MixedAE step time per source image <= 1.05x MAE' in targets


def test_markdown_table_is_printed_and_written(tiny_run):
    stdout, out = tiny_run
    md = (out / 'speed.md').read_text()
    assert md in stdout
    lines = md.splitlines()
    header = next(line for line in lines if line.startswith('| model |'))
    columns = [c.strip() for c in header.strip('|').split('|')]
    assert columns[:3] == ['model', 'images', 'px']
    assert {'time/step (s)', 'x MAE (time)', 'GFLOP/step', '% of matmul',
            'step peak MiB', 'peak MiB/image', 'x MAE (memory)'} <= set(columns)
    start = lines.index(header) + 2
    body = lines[start:start + len(ROWS)]
    assert [row.split('|')[1].strip() for row in body] == [
        'MAE ViT-tiny (mmpretrain)', 'ConvMAE ConvViT-tiny, skip masked',
        'ConvMAE ConvViT-tiny, dense',
        'MixedAE ViT-tiny', 'ConvViT-tiny backbone, detection', 'ViT-tiny backbone, detection',
        'ConvViT-tiny backbone, FPN detection, train step',
        'ConvViT-tiny backbone, SFP detection, train step', 'ViT-tiny backbone, ViTDet, train step',
        'ConvViT-tiny backbone, UperNet, train step', 'ViT-tiny backbone, UperNet, train step']
    assert all(len(row.strip('|').split('|')) == len(columns) for row in body)
    assert body[0].split('|')[columns.index('x MAE (time)') + 1].strip() == '1.00'
    assert 'The targets are set for the Base sizes' in md


@pytest.mark.parametrize('args, message', [
    (('--img-size', '100'), 'img_size must be a multiple of 16'),
    (('--batch', '6'), 'batch must be a multiple of 4'),
    (('--seg-size', '500'), 'seg_size must be a multiple of 16'),
])
def test_bad_sizes_are_rejected_with_the_fix(tmp_path, args, message):
    proc = run_tool('--arch', 'tiny', '--device', 'cpu', '--out', str(tmp_path), *args)
    assert proc.returncode != 0
    assert message in proc.stderr


def test_tool_runs_its_own_checkout(tmp_path):
    """From a clone, run from another folder, the tool imports that checkout's mixedconv, not
    whatever mixedconv is installed (a stand-in here, first on PYTHONPATH)."""
    fake = tmp_path / 'installed' / 'mixedconv'
    fake.mkdir(parents=True)
    (fake / '__init__.py').write_text("raise SystemExit('the installed mixedconv was used')\n")
    proc = subprocess.run([sys.executable, str(TOOL), '--help'], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=str(tmp_path / 'installed')))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert 'usage:' in proc.stdout
