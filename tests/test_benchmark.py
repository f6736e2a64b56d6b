"""The benchmark runner: checkpoint inspection, task processes, resume, the embedded chain."""
import json
import os.path as osp
import subprocess
import sys

import pytest
import torch

from mixedconv.benchmark import Launch, describe_checkpoint, run_task
from mixedconv.benchmark.runner import run_chain
from mixedconv.benchmark.tiny import ARCHS
from mixedconv.checkpoint import CheckpointError
from mixedconv.leaderboard import read_summary
from mixedconv.models.backbones.convvit import ConvViT
from mixedconv.models.backbones.plain_vit import PlainViT

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
SMALL = dict(pretrain_iters=2, transfer_iters=2)


@pytest.fixture(scope='module')
def chain(tmp_path_factory):
    """The embedded chain, reduced: two methods, one task, 2 iterations each."""
    work_dir = str(tmp_path_factory.mktemp('bench'))
    files = run_chain(['convmae', 'mae'], ['ade20k-upernet'], work_dir, iters=SMALL)
    return work_dir, files


def test_embedded_chain_writes_leaderboard(chain):
    work_dir, files = chain
    for kind in ('md', 'csv', 'html', 'png'):
        assert osp.isfile(files[kind])
    table = open(files['md']).read()
    assert '| ConvMAE | ConvViT-tiny |' in table and '| MAE | ViT-tiny |' in table
    assert 'Deltas against MAE ViT-tiny' in table
    record = read_summary(osp.join(work_dir, 'transfer', 'convmae_convvit-tiny_iter_2',
                                   'ade20k-upernet', 'summary.json'))
    assert record.status == 'done' and 0 <= record.metrics['mIoU'] <= 100
    assert len(record.checkpoint_sha256) == 64 and record.wall_time_s > 0


def test_done_task_is_not_rerun(chain):
    work_dir, _ = chain
    task_dir = osp.join(work_dir, 'transfer', 'mae_vit-tiny_iter_2')
    path = osp.join(task_dir, 'ade20k-upernet', 'summary.json')
    before = open(path).read()
    info = describe_checkpoint(osp.join(work_dir, 'pretrain', 'mae', 'iter_2.pth'))
    record = run_task(info, 'ade20k-upernet', task_dir, embedded=True)
    assert record.status == 'done' and open(path).read() == before


def test_failed_task_is_recorded(chain, tmp_path):
    """A task whose data is missing fails, with the error in its summary."""
    work_dir, _ = chain
    info = describe_checkpoint(osp.join(work_dir, 'pretrain', 'convmae', 'iter_2.pth'))
    record = run_task(info, 'ade20k-upernet', str(tmp_path), data_root=str(tmp_path / 'none'),
                      embedded=True)
    assert record.status == 'failed' and record.error
    assert read_summary(str(tmp_path / 'ade20k-upernet' / 'summary.json')).status == 'failed'


def test_interrupted_task_resumes(chain):
    """A task left unfinished is run again from its last checkpoint, not from scratch."""
    work_dir, _ = chain
    task_dir = osp.join(work_dir, 'transfer', 'convmae_convvit-tiny_iter_2')
    path = osp.join(task_dir, 'ade20k-upernet', 'summary.json')
    with open(path) as f:
        stored = json.load(f)
    with open(path, 'w') as f:
        json.dump(dict(stored, status='interrupted'), f)
    info = describe_checkpoint(osp.join(work_dir, 'pretrain', 'convmae', 'iter_2.pth'))
    record = run_task(info, 'ade20k-upernet', task_dir, osp.join(work_dir, 'data'),
                      embedded=True)
    assert record.status == 'done' and record.metrics == stored['metrics']
    log = open(osp.join(task_dir, 'ade20k-upernet', 'train.log')).read()
    assert 'resumed epoch: 0, iter: 2' in log


def test_describe_pretraining_checkpoints(chain):
    work_dir, _ = chain
    convmae = describe_checkpoint(osp.join(work_dir, 'pretrain', 'convmae', 'iter_2.pth'))
    assert (convmae.family, convmae.arch, convmae.method) == ('ConvViT', ARCHS['ConvViT'],
                                                              'ConvMAE')
    mae = describe_checkpoint(osp.join(work_dir, 'pretrain', 'mae', 'iter_2.pth'))
    assert (mae.family, mae.method, mae.backbone_label) == ('PlainViT', 'MAE', 'ViT-tiny')


def test_describe_released_checkpoints(tmp_path):
    """Released checkpoints store no config: family and arch come from the tensors."""
    convmae = tmp_path / 'convmae_base_1600ep.pth'
    torch.save({'model': ConvViT(arch='b').state_dict()}, convmae)
    info = describe_checkpoint(str(convmae))
    assert (info.family, info.arch, info.method, info.backbone_label) == \
        ('ConvViT', 'b', 'ConvMAE', 'ConvViT-B')
    vit = tmp_path / 'vit.pth'
    torch.save({'model': PlainViT(arch='small').state_dict()}, vit)
    with pytest.raises(ValueError, match='pass --method'):
        describe_checkpoint(str(vit))
    assert describe_checkpoint(str(vit), method='MAE').arch == 'small'
    assert describe_checkpoint(str(vit), 'MAE', arch='PlainViT:large').arch == 'large'
    with pytest.raises(CheckpointError, match='not the ConvViT given by --arch'):
        describe_checkpoint(str(vit), 'MAE', arch='ConvViT')
    other = tmp_path / 'resnet.pth'
    torch.save({'state_dict': {'conv1.weight': torch.zeros(1)}}, other)
    with pytest.raises(CheckpointError, match='neither a ConvViT'):
        describe_checkpoint(str(other))


def test_launch_commands():
    cmd = Launch('pytorch', gpus=4).command('c.py', 'w', resume=False)
    assert cmd[1:4] == ['-m', 'torch.distributed.run', '--nproc_per_node=4']
    assert cmd[-2:] == ['--launcher', 'pytorch']
    slurm = Launch('slurm', gpus=16, partition='gpu')
    assert slurm.command('c.py', 'w', resume=False)[1:] == [
        osp.join(ROOT, 'tools', 'slurm_train.sh'), 'gpu', 'mixedconv', 'c.py', 'w']
    assert slurm.env()['GPUS'] == '16'
    with pytest.raises(ValueError, match='needs --partition'):
        Launch('slurm')


@pytest.mark.parametrize('args, message', [
    (['x.pth', '--tasks', 'coco'], 'unknown task .*valid: coco-maskrcnn, ade20k-upernet'),
    (['--pretrain', 'beit'], 'unknown pretraining method .*valid: convmae, mixedae, mae'),
    (['missing.pth'], 'checkpoint not found: missing.pth'),
    (['x.pth', '--arch', 'Swin'], 'unknown backbone .*valid: ConvViT, PlainViT'),
    (['x.pth', '--arch', 'PlainViT:giant'], 'unknown PlainViT arch .*valid: tiny, small, base'),
])
def test_cli_errors_name_valid_choices(args, message):
    out = subprocess.run([sys.executable, osp.join(ROOT, 'tools', 'benchmark.py'), *args],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode != 0
    assert __import__('re').search(message, out.stderr), out.stderr[-500:]


@pytest.mark.parametrize('task, family, arch', [
    ('coco-maskrcnn', 'ConvViT', 'l'), ('coco-maskrcnn', 'PlainViT', 'large'),
    ('ade20k-upernet', 'ConvViT', 'b'), ('ade20k-upernet', 'PlainViT', 'large'),
    ('in1k-finetune', 'ConvViT', 'b'), ('in1k-finetune', 'PlainViT', 'base'),
    ('in1k-linear', 'ConvViT', 's')])
def test_real_recipe_configs_follow_the_checkpoint(task, family, arch, tmp_path):
    """Full-size recipes take the checkpoint's arch (block indices moved to its depth), the
    checkpoint itself and the datasets under --data-root; they build into real models."""
    from mmengine.registry import DefaultScope

    from mixedconv.benchmark import CheckpointInfo, build_task_config
    from mixedconv.benchmark.recipes import (DATA_DIRS, TASK_DATA, backbone_channels,
                                             base_dataset, depth_of)
    info = CheckpointInfo(str(tmp_path / 'enc.pth'), family, arch, 'MAE')
    cfg = build_task_config(info, task, data_root=str(tmp_path / 'data'))
    backbone = cfg.model.backbone
    assert backbone.arch == arch
    assert backbone.init_cfg == dict(type='Pretrained', checkpoint=info.path)
    depth = depth_of(family, arch)
    for key in ('global_blocks', 'out_indices'):
        if backbone.get(key) and family == 'PlainViT' or key == 'global_blocks':
            assert all(0 <= i < depth for i in backbone.get(key) or ()), (key, backbone[key])
    if task == 'coco-maskrcnn' and family == 'PlainViT':
        assert backbone.out_indices == (depth - 1,)
    root = osp.join(str(tmp_path / 'data'), DATA_DIRS[TASK_DATA[task]])
    for split in ('train_dataloader', 'val_dataloader'):
        assert base_dataset(cfg[split]).data_root == root
    if task == 'coco-maskrcnn':
        assert cfg.val_evaluator.ann_file.startswith(root)
    channels = backbone_channels(backbone)
    readers = [cfg.model.get('neck'), cfg.model.get('decode_head'), cfg.model.get('head')]
    width = channels[-1]
    for reader in filter(None, readers):
        if 'in_channels' in reader:
            assert reader.in_channels in (channels, width), reader
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        from mmengine.registry import MODELS
        cfg.model.backbone.init_cfg = None
        model = MODELS.build(cfg.model)
    assert type(model.backbone).__name__ == family
