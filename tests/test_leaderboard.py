"""Summary records, result collection (ours and real mmengine work dirs) and leaderboard files."""
import csv
import hashlib
import json
import os
import os.path as osp
import runpy
import shutil
import subprocess
import sys

import pytest
import torch
from mmengine.evaluator import BaseMetric
from mmengine.model import BaseModel
from mmengine.registry import DATASETS, METRICS, MODELS
from mmengine.runner import Runner
from PIL import Image
from torch.utils.data import Dataset

from mixedconv.leaderboard import (PUBLISHED, SummaryError, TaskSummary, build_table, collect,
                                   current_git_commit, make_leaderboard, read_summary,
                                   sha256_of, summary_path, utc_now, write_summary)
from mixedconv.leaderboard.render import to_markdown

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
MAE_CKPT = '/ckpts/mae_vit-base-p16_8xb512-amp-coslr-1600e_in1k.pth'


@MODELS.register_module(force=True)
class LeaderboardToyModel(BaseModel):
    """A linear regressor; ``backbone`` is only recorded in the config, like a real detector's."""

    def __init__(self, backbone=None):
        super().__init__()
        self.lin = torch.nn.Linear(2, 1)

    def forward(self, inputs, labels, mode='tensor'):
        out = self.lin(inputs).squeeze(-1)
        if mode == 'loss':
            return dict(loss=((out - labels) ** 2).mean())
        return out


@METRICS.register_module(force=True)
class LeaderboardToyCocoMetric(BaseMetric):
    """Reports COCO-style keys in [0, 1], rising by 0.008 per evaluation (0.508, 0.516, ...)."""
    default_prefix = 'coco'

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.calls = 0

    def process(self, data_batch, data_samples):
        self.results.append(len(data_samples))

    def compute_metrics(self, results):
        self.calls += 1
        return dict(bbox_mAP=0.5 + 0.008 * self.calls, segm_mAP=0.443 + 0.008 * self.calls)


@DATASETS.register_module(force=True)
class LeaderboardToyData(Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, i):
        return dict(inputs=torch.full((2,), float(i)), labels=torch.tensor(float(i)))


@pytest.fixture(scope='module')
def mmengine_work_dir(tmp_path_factory):
    """A plain work dir from a real 2-epoch mmengine run of a Mask R-CNN-like config whose
    backbone is an MAE-pretrained ViT-B (final eval: bbox 0.516, segm 0.459 at epoch 2)."""
    work_dir = str(tmp_path_factory.mktemp('plain') / 'mask-rcnn_plain')
    loader = dict(dataset=dict(type='LeaderboardToyData'), batch_size=2, num_workers=0,
                  sampler=dict(type='DefaultSampler', shuffle=False),
                  collate_fn=dict(type='default_collate'))
    cfg = dict(
        model=dict(type='LeaderboardToyModel', backbone=dict(
            type='VisionTransformer', arch='b',
            init_cfg=dict(type='Pretrained', checkpoint=MAE_CKPT))),
        work_dir=work_dir, train_dataloader=loader, val_dataloader=loader,
        val_evaluator=dict(type='LeaderboardToyCocoMetric'),
        train_cfg=dict(by_epoch=True, max_epochs=2, val_interval=1), val_cfg=dict(),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        default_hooks=dict(logger=dict(type='LoggerHook', interval=1),
                           checkpoint=dict(type='CheckpointHook', interval=-1, save_last=False)),
        env_cfg=dict(dist_cfg=dict(backend='gloo')), randomness=dict(seed=0))
    from mmengine.config import Config
    Runner.from_cfg(Config(cfg)).train()
    return work_dir


CONVMAE_CKPT = '/ckpts/convmae_base_1600ep.pth'
CONVMAE_SHA = hashlib.sha256(b'convmae').hexdigest()


def make_record(**fields):
    base = dict(task='coco-maskrcnn', status='done', method='ConvMAE', backbone='ConvViT-B',
                pretrain_epochs=1600, metrics={'coco/bbox_mAP': 0.519, 'coco/segm_mAP': 0.462},
                checkpoint=CONVMAE_CKPT, checkpoint_sha256=CONVMAE_SHA)
    if fields.get('method') == 'MAE':
        base.update(checkpoint=MAE_CKPT, checkpoint_sha256=None)
    return TaskSummary(**{**base, **fields})


@pytest.fixture
def bench_dir(tmp_path):
    """Benchmark summaries: ConvMAE (COCO done, ADE20K failed, IN-1K done) and MAE (ADE20K
    done, IN-1K fine-tuning still running); MAE's COCO comes from the plain mmengine dir."""
    bench = tmp_path / 'bench'
    records = {
        'convmae': [make_record(),
                    make_record(task='ade20k-upernet', status='failed', metrics={},
                                error='Traceback (most recent call last):\n  ...\n'
                                      'RuntimeError: CUDA out of memory'),
                    make_record(task='in1k-finetune', metrics={'accuracy/top1': 85.0123})],
        'mae': [make_record(task='ade20k-upernet', method='MAE', backbone='ViT-B',
                            metrics={'mIoU': 48.1}),
                make_record(task='in1k-finetune', method='MAE', backbone='ViT-B',
                            status='running', metrics={})],
    }
    for name, recs in records.items():
        for rec in recs:
            write_summary(summary_path(str(bench / name), rec.task), rec)
    return str(bench)


def expected_markdown(bench_dir):
    failed = osp.join(bench_dir, 'convmae', 'ade20k-upernet', 'summary.json')
    running = osp.join(bench_dir, 'mae', 'in1k-finetune', 'summary.json')
    return (
        '| method | backbone | pretrain epochs | checkpoint | COCO box AP | COCO mask AP '
        '| ADE20K mIoU | IN-1K top-1 | IN-1K linear |\n'
        '| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: |\n'
        f'| ConvMAE | ConvViT-B | 1600 | convmae_base_1600ep.pth ({CONVMAE_SHA[:12]}) '
        '| 51.9 (+0.3) | 46.2 (+0.3) | failed | 85.0 | missing |\n'
        '| MAE | ViT-B | 1600 | mae_vit-base-p16_8xb512-amp-coslr-1600e_in1k.pth | 51.6 | 45.9 '
        '| 48.1 | missing (running) | missing |\n'
        '\n'
        '- Values in percent. Deltas against MAE ViT-B 1600e.\n'
        f'- ConvMAE ConvViT-B 1600e: ade20k-upernet failed: RuntimeError: CUDA out of memory '
        f'({failed})\n'
        f'- MAE ViT-B 1600e: in1k-finetune running ({running})\n')


def test_summary_round_trip(tmp_path):
    ckpt = tmp_path / 'ckpt.pth'
    ckpt.write_bytes(b'weights' * 1000)
    rec = make_record(checkpoint=str(ckpt), checkpoint_sha256=sha256_of(str(ckpt)),
                      config='configs/x.py', git_commit='abc', wall_time_s=12.5,
                      started=utc_now(), finished=utc_now())
    path = summary_path(str(tmp_path / 'work'), 'coco-maskrcnn')
    write_summary(path, rec)
    assert read_summary(path) == rec
    assert os.listdir(osp.dirname(path)) == ['summary.json']  # no temp file left behind
    assert rec.checkpoint_sha256 == hashlib.sha256(b'weights' * 1000).hexdigest()
    rec.status, rec.metrics = 'failed', {}  # rewriting replaces the record
    write_summary(path, rec)
    assert read_summary(path).status == 'failed'


@pytest.mark.parametrize('content,problem', [
    ('{"task": "coco-maskrcnn", "status": "done"', 'not valid JSON'),
    (json.dumps(make_record().to_dict() | {'status': 'finished'}), "status 'finished'"),
    (json.dumps({'task': 'coco-maskrcnn', 'status': 'done'}), "missing required fields"),
    (json.dumps(make_record().to_dict() | {'metrics': {'mIoU': 'high'}}), 'metrics must map'),
])
def test_malformed_summary_names_file(tmp_path, content, problem):
    path = tmp_path / 'summary.json'
    path.write_text(content)
    with pytest.raises(SummaryError, match='malformed summary') as info:
        read_summary(str(path))
    assert str(path) in str(info.value)
    assert problem in str(info.value)
    with pytest.raises(SummaryError, match=str(path)):  # the leaderboard stops on it too
        collect([str(tmp_path)])


def test_current_git_commit(tmp_path):
    assert current_git_commit(str(tmp_path)) is None  # not a checkout
    git = ['git', '-C', str(tmp_path), '-c', 'user.name=t', '-c', 'user.email=t@t']
    subprocess.run(git + ['init', '-q'], check=True)
    (tmp_path / 'f.txt').write_text('a')
    subprocess.run(git + ['add', 'f.txt'], check=True)
    subprocess.run(git + ['commit', '-qm', 'init'], check=True)
    head = subprocess.run(git + ['rev-parse', 'HEAD'], capture_output=True, text=True,
                          check=True).stdout.strip()
    assert current_git_commit(str(tmp_path)) == head
    (tmp_path / 'f.txt').write_text('b')
    assert current_git_commit(str(tmp_path)) == head + '-dirty'


def test_collect_plain_mmengine_work_dir(mmengine_work_dir, tmp_path):
    (result,) = collect([mmengine_work_dir])
    rec = result.record
    assert (rec.task, rec.status, rec.method, rec.backbone, rec.pretrain_epochs) == (
        'coco-maskrcnn', 'done', 'MAE', 'ViT-B', 1600)
    assert rec.metrics == pytest.approx({'coco/bbox_mAP': 0.516, 'coco/segm_mAP': 0.459})
    assert result.eval_step == 2 and rec.checkpoint == MAE_CKPT
    assert rec.config.startswith(mmengine_work_dir) and rec.config.endswith('.py')

    # The text log alone gives the same final metrics.
    log_only = str(tmp_path / 'log_only')
    shutil.copytree(mmengine_work_dir, log_only)
    for vis_dir in collect_run_dirs(log_only, 'vis_data'):
        shutil.rmtree(vis_dir)
    assert collect([log_only])[0].record.metrics == pytest.approx(rec.metrics)

    # Killed during epoch 2: the final evaluation is missing, so the run is interrupted.
    killed = str(tmp_path / 'killed')
    shutil.copytree(mmengine_work_dir, killed)
    (scalars,) = collect_run_dirs(killed, osp.join('vis_data', 'scalars.json'))
    with open(scalars) as f:
        lines = f.readlines()
    first_eval = next(i for i, line in enumerate(lines) if 'coco/bbox_mAP' in line)
    with open(scalars, 'w') as f:
        f.writelines(lines[:first_eval + 2])
    (result,) = collect([killed])
    assert result.record.status == 'interrupted' and result.eval_step == 1
    assert 'missing (interrupted)' in to_markdown(build_table([result]))

    # Overrides replace inferred fields; bad ones are reported with the directory.
    (result,) = collect([mmengine_work_dir], {mmengine_work_dir: dict(pretrain_epochs=800)})
    assert result.record.pretrain_epochs == 800
    with pytest.raises(SummaryError, match='override'):
        collect([mmengine_work_dir], {mmengine_work_dir: dict(task='coco')})


def collect_run_dirs(work_dir, sub):
    return [osp.join(work_dir, d, sub) for d in sorted(os.listdir(work_dir))
            if osp.exists(osp.join(work_dir, d, sub))]


def test_leaderboard_files(bench_dir, mmengine_work_dir, tmp_path):
    out = str(tmp_path / 'out')
    paths = make_leaderboard([bench_dir, mmengine_work_dir], out, baseline='MAE ViT-B')
    with open(paths['md']) as f:
        assert f.read() == expected_markdown(bench_dir)

    with open(paths['html']) as f:
        page = f.read()
    for external in ('http://', 'https://', '<script src', '<link'):
        assert external not in page
    assert 'data:image/png;base64,' in page and '<style>' in page
    assert '<td class="failed">failed</td>' in page and '85.0' in page

    with open(paths['csv']) as f:
        rows = list(csv.DictReader(f))
    convmae, mae = rows
    assert (convmae['method'], convmae['coco_box_ap'], convmae['coco_box_ap_delta']) == (
        'ConvMAE', '51.90', '+0.3')
    assert (convmae['ade20k_miou'], convmae['ade20k_miou_status']) == ('', 'failed')
    assert (mae['in1k_top1'], mae['in1k_top1_status']) == ('', 'running')
    assert (mae['in1k_linear'], mae['in1k_linear_status']) == ('', 'missing')

    with open(paths['png'], 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'
    with Image.open(paths['png']) as img:
        img.verify()


def test_published_rows_and_baseline_errors(bench_dir):
    results = collect([bench_dir])
    table = build_table(results, PUBLISHED, baseline='MAE ViT-B (published)')
    text = to_markdown(table)
    assert ('| 51.9 (+0.3) | 46.2 (+0.3) | failed | 85.0 (+1.4) | missing |') in text
    assert '| MAE (published: MAE paper) | ViT-B | 1600 | — | 51.6 | 45.9 | 48.1 | 83.6 | 68.0 |' \
        in text
    assert '| MixedAE (published: MixedAE paper leaderboard entry) | ViT-B | 1600 | — | missing ' \
        in text
    assert '- Rows marked published are numbers reported by their source, not measured here.' \
        in text
    with pytest.raises(ValueError, match="matches no row; give one of: 'ConvMAE ConvViT-B"):
        build_table(results, baseline='BEiT ViT-B')
    with pytest.raises(ValueError, match='matches several rows'):
        build_table(results, PUBLISHED, baseline='ConvMAE ConvViT-B (published)')


def test_cli(bench_dir, mmengine_work_dir, tmp_path):
    out = str(tmp_path / 'cli_out')
    proc = subprocess.run(
        [sys.executable, osp.join(REPO, 'tools', 'leaderboard.py'), bench_dir, mmengine_work_dir,
         '--out', out, '--baseline', 'MAE ViT-B', '--published',
         '--override', f'{mmengine_work_dir}:method=MAE,pretrain_epochs=1600'],
        capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for ext in ('md', 'csv', 'html', 'png'):
        path = osp.join(out, f'leaderboard.{ext}')
        assert path in proc.stdout and osp.isfile(path)
    with open(osp.join(out, 'leaderboard.md')) as f:
        text = f.read()
    assert text.splitlines()[:4] == expected_markdown(bench_dir).splitlines()[:4]
    assert '(published: ConvMAE README)' in text



@pytest.mark.parametrize('argv,message', [
    (['{tmp}/nope', '--out', '{tmp}/o'], 'error: work directory not found'),
    (['{bench}', '--out', '{tmp}/o', '--baseline', 'BEiT ViT-B'], 'error: baseline'),
])
def test_cli_errors(bench_dir, tmp_path, argv, message):
    """Bad input ends the tool with a one-line error instead of a traceback."""
    main = runpy.run_path(osp.join(REPO, 'tools', 'leaderboard.py'))['main']
    with pytest.raises(SystemExit) as info:
        main([a.format(tmp=tmp_path, bench=bench_dir) for a in argv])
    assert str(info.value).startswith(message)
    with pytest.raises(SystemExit):  # argparse rejects a malformed override
        main([bench_dir, '--out', str(tmp_path), '--override', 'method=MAE'])
