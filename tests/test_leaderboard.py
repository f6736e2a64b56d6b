"""Result collection (ours and real mmengine work dirs), the table with its protocols, and
the leaderboard files and tool."""
import csv
import glob
import hashlib
import json
import os
import os.path as osp
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from mmengine.evaluator import BaseMetric
from mmengine.model import BaseModel
from mmengine.registry import DATASETS, METRICS, MODELS
from mmengine.runner import Runner
from PIL import Image
from torch.utils.data import Dataset

from mixedconv.leaderboard import (GAINS, PUBLISHED, SummaryError, TaskSummary, build_table,
                                   collect, make_leaderboard, read_summary, summary_path,
                                   write_summary)
from mixedconv.leaderboard.render import to_csv, to_html, to_markdown
from mixedconv.results import protocols

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
        '- Values in percent. Deltas against MAE ViT-B 1600e (only where the protocol and '
        'the pretraining are the same).\n'
        f'- ConvMAE ConvViT-B 1600e: ade20k-upernet failed: RuntimeError: CUDA out of memory '
        f'({failed})\n'
        f'- MAE ViT-B 1600e: in1k-finetune running ({running})\n')


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


def test_published_rows_say_their_protocol_and_compare_only_like_with_like(bench_dir,
                                                                          tmp_path):
    """Every published value has its protocol and source; deltas and bars only between
    values of the same protocol and pretraining; values without a stated protocol and gains
    without absolute values are shown apart, never compared."""
    from mixedconv.leaderboard.render import bar_groups
    write_summary(summary_path(bench_dir + '/convmae', 'coco-maskrcnn'),
                  make_record(protocol=protocols.CONVMAE_VITDET_25EP))
    write_summary(summary_path(bench_dir + '/convmae', 'in1k-finetune'),
                  make_record(task='in1k-finetune', metrics={'accuracy/top1': 85.0123},
                              protocol=protocols.FINETUNE_100EP))
    write_summary(summary_path(str(tmp_path / 'mixedae'), 'coco-maskrcnn'),
                  make_record(method='MixedAE', backbone='ViT-B', checkpoint='/c/mixedae.pth',
                              checkpoint_sha256=hashlib.sha256(b'm').hexdigest(),
                              metrics={'coco/bbox_mAP': 0.525, 'coco/segm_mAP': 0.466},
                              protocol=protocols.VITDET_100EP))
    results = collect([bench_dir, str(tmp_path / 'mixedae')])
    table = build_table(results, PUBLISHED, baseline='MAE ViT-B (published)', gains=GAINS)
    text = to_markdown(table)
    # ConvMAE's COCO recipe is not MAE's: no delta; its fine-tuning protocol is the same
    assert '| 51.9 | 46.2 | failed | 85.0 (+1.4) | missing |' in text
    assert '| MixedAE | ViT-B | 1600 | mixedae.pth (62c66a7a5dd7) | 52.5 (+0.9) | 46.6 (+0.7) |' \
        in text
    assert '| MAE (published) | ViT-B | 1600 | — | 51.6 | 45.9 | 48.1 | 83.6 | 68.0 |' in text
    assert ('- MAE ViT-B 1600e (published): COCO box AP, COCO mask AP: Mask R-CNN, ViTDet '
            'simple pyramid, LSJ 1024, 100 ep (detectron2 ViTDet README)') in text
    assert '| MAE (published, MAE-paper detection) | ViT-B | 1600 | — | 50.3 | 44.9 |' in text
    # MixedAE's absolute values state no protocol: apart, not in the table; its gains as gains
    table_part, apart = text.split('Published numbers not compared')
    assert 'MixedAE (published)' not in table_part
    assert ('- MixedAE ViT-B (published): COCO mask AP 43.5 (a results-aggregator site), '
            'ADE20K mIoU 48.7 (MixedAE leaderboard entry), IN-1K top-1 83.9') in apart
    assert ('MixedAE ViT-B over MAE ViT-B, the same protocol for both; epochs and recipes not '
            'stated there (MixedAE paper (arXiv 2303.17152), abstract): IN-1K top-1 +0.3, '
            'ADE20K mIoU +1.7, COCO AP (box or mask not stated) +0.9') in apart
    for row in table.rows:
        for key, cell in row.cells.items():
            if row.published and cell.value is not None:
                assert cell.protocol and cell.source, (row.label, key)
    for column, protocol, pretraining, bars in bar_groups(table):
        assert len({(table.rows[i].cells[column.key].protocol, table.rows[i].pretraining)
                    for i, _ in bars}) == 1
        if column.key == 'coco_box_ap' and protocol == protocols.VITDET_100EP:
            assert sorted(table.rows[i].label for i, _ in bars) == [
                'MAE ViT-B 1600e (published)', 'MixedAE ViT-B 1600e']
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
    assert '| ConvMAE (published) | ConvViT-B | 1600 | — | 53.9 | 47.6 | 51.7 |' in text


def run_tool(tool, *args, **kwargs):
    return subprocess.run([sys.executable, osp.join(REPO, 'tools', tool), *args],
                          capture_output=True, text=True, timeout=120, **kwargs)


@pytest.mark.parametrize('argv,message', [
    (['{tmp}/nope', '--out', '{tmp}/o'], 'error: work directory not found'),
    (['{bench}', '--out', '{tmp}/o', '--baseline', 'BEiT ViT-B'], 'error: baseline'),
    (['{bench}', '--out', '{tmp}/a_file'],
     'error: --out {tmp}/a_file: {tmp}/a_file is a file, not a directory; pass a directory'),
    (['{bench}', '--out', '{tmp}/a_file/sub'],
     'error: --out {tmp}/a_file/sub: {tmp}/a_file is a file, not a directory; pass a '
     'directory (it is created when missing)'),
])
def test_cli_errors(bench_dir, tmp_path, argv, message):
    """Bad input ends the tool with a one-line error instead of a traceback."""
    (tmp_path / 'a_file').write_text('x')
    out = run_tool('leaderboard.py', *[a.format(tmp=tmp_path, bench=bench_dir) for a in argv])
    assert out.returncode == 2 and 'Traceback' not in out.stderr
    assert out.stderr.startswith(message.format(tmp=tmp_path)), out.stderr
    out = run_tool('leaderboard.py', bench_dir, '--out', str(tmp_path), '--override',
                   'method=MAE')
    assert out.returncode == 2 and 'bad override' in out.stderr  # argparse's own error


def test_leaderboard_tool_runs_its_own_checkout(bench_dir, tmp_path):
    """From a clone, tools/leaderboard.py imports that checkout's mixedconv, not whatever
    mixedconv is installed (a stand-in here, first on PYTHONPATH)."""
    fake = tmp_path / 'installed' / 'mixedconv'
    fake.mkdir(parents=True)
    (fake / '__init__.py').write_text("raise SystemExit('the installed mixedconv was used')\n")
    out = run_tool('leaderboard.py', bench_dir, '--out', str(tmp_path / 'o'), cwd=str(tmp_path),
                   env=dict(os.environ, PYTHONPATH=str(tmp_path / 'installed')))
    assert out.returncode == 0, out.stderr[-2000:]


def test_full_disk_keeps_the_previous_leaderboard(bench_dir, tmp_path):
    """A write that fails part-way (a full disk; here a file size limit) leaves every
    leaderboard file whole: the previous one, never a truncated one; one error line."""
    out_dir = tmp_path / 'out'
    first = make_leaderboard([bench_dir], str(out_dir))
    before = {ext: open(path, 'rb').read() for ext, path in first.items()}
    write_summary(summary_path(bench_dir + '/mae', 'coco-maskrcnn'),
                  make_record(method='MAE', backbone='ViT-B'))

    def limit_file_size():
        import resource
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail (EFBIG)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1500, 1500))

    out = subprocess.run([sys.executable, osp.join(REPO, 'tools', 'leaderboard.py'), bench_dir,
                          '--out', str(out_dir)], capture_output=True, text=True, timeout=120,
                         preexec_fn=limit_file_size)
    assert out.returncode == 2 and out.stderr.startswith('error: ')
    assert 'Traceback' not in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert 'could not write ' + str(out_dir) in out.stderr and 'free disk space' in out.stderr
    assert '.part' not in out.stderr, out.stderr
    for ext, path in first.items():
        data = open(path, 'rb').read()
        assert data == before[ext] or len(data) <= 1500, ext  # whole: old, or new and small
    assert not [n for n in os.listdir(out_dir) if n.endswith('.part')]


def test_text_from_outside_cannot_break_the_tables(tmp_path):
    """Newlines, pipes, markup and formula starts in a method name or a checkpoint path stay
    inside their cell in every format."""
    nasty_method = '=HYPERLINK("x")\n| injected | row |'
    nasty_path = '/ckpts/a\nb|<img src=x onerror=alert(1)>.pth'
    write_summary(summary_path(str(tmp_path / 'r'), 'ade20k-upernet'),
                  make_record(task='ade20k-upernet', method=nasty_method, checkpoint=nasty_path,
                              metrics={'mIoU': 40.0}))
    table = build_table(collect([str(tmp_path)]))
    md = to_markdown(table)
    rows = [line for line in md.splitlines() if line.startswith('|')]
    assert len(rows) == 3 and all(line.count(' | ') == 8 for line in rows), rows
    assert '<img' not in md and '\\n' in rows[2]
    page = to_html(table, b'')
    assert '<img src=x' not in page and '&lt;img src=x onerror=alert(1)&gt;' in page
    (record,) = list(csv.DictReader(to_csv(table).splitlines()))
    assert record['method'].startswith("'=HYPERLINK") and '\n' not in record['checkpoint']


def _collect_in_subprocess(work_dir, timeout=120):
    code = ('import sys, json; from mixedconv.leaderboard import collect; '
            f'r = collect([{work_dir!r}])[0].record; '
            'print(json.dumps([r.checkpoint, r.checkpoint_sha256]))')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         timeout=timeout, cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def _pointing_at(mmengine_work_dir, tmp_path, name, target):
    """A copy of the plain work dir whose dumped configs name ``target`` as the
    pretrained checkpoint."""
    copy = tmp_path / name
    shutil.copytree(mmengine_work_dir, copy)
    for path in glob.glob(str(copy / '**' / '*.py'), recursive=True):
        text = open(path).read().replace(MAE_CKPT, str(target))
        open(path, 'w').write(text)
    return str(copy)


def test_only_checkpoint_files_are_hashed(mmengine_work_dir, tmp_path):
    """A dumped config may name any path: a FIFO (or /proc/kmsg) is not read, a large file
    that is no checkpoint is not hashed, a checkpoint file is."""
    fifo = tmp_path / 'mae_vit-base_1600e.pth'
    os.mkfifo(fifo)
    assert _collect_in_subprocess(_pointing_at(mmengine_work_dir, tmp_path, 'fifo', fifo),
                                  timeout=60)[1] is None
    big = tmp_path / 'data_1600e.pth'
    with open(big, 'wb') as f:
        f.truncate(3 << 30)  # sparse: 3 GB of zeros
    started = time.time()
    assert _collect_in_subprocess(_pointing_at(mmengine_work_dir, tmp_path, 'big', big))[1] \
        is None
    assert time.time() - started < 60
    real = tmp_path / 'mae_1600e.pth'
    torch.save({'state_dict': {'w': torch.zeros(3)}}, real)
    assert _collect_in_subprocess(_pointing_at(mmengine_work_dir, tmp_path, 'real', real))[1] \
        == hashlib.sha256(real.read_bytes()).hexdigest()


def test_a_changed_checkpoint_file_supersedes_its_old_row(tmp_path):
    """The same path benchmarked before and after it changed: two rows, the older marked
    superseded (in the table, its notes and the CSV), and it gets no bar."""
    from mixedconv.leaderboard.render import bar_groups
    old, new = (hashlib.sha256(x).hexdigest() for x in (b'old', b'new'))
    for name, sha, started, value in (('a', old, '2026-01-01T00:00:00+00:00', 40.0),
                                      ('b', new, '2026-02-01T00:00:00+00:00', 42.0)):
        write_summary(summary_path(str(tmp_path / name), 'ade20k-upernet'),
                      make_record(task='ade20k-upernet', checkpoint='/c/enc.pth',
                                  checkpoint_sha256=sha, started=started, finished=started,
                                  metrics={'mIoU': value}))
    table = build_table(collect([str(tmp_path)]))
    md = to_markdown(table)
    assert f'| enc.pth ({old[:12]}), superseded |' in md
    assert f'| enc.pth ({new[:12]}) |' in md
    assert f'/c/enc.pth has changed since these results; its newer content is {new[:12]}' in md
    (superseded,) = [r for r in csv.DictReader(to_csv(table).splitlines()) if r['superseded_by']]
    assert superseded['checkpoint_sha256'] == old
    assert [v for *_, bars in bar_groups(table) for _, v in bars] == [42.0]
