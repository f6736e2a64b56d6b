"""tools/dist_train.sh with 2 CPU processes (gloo): ConvMAE and MixedAE pretraining and a
Mask R-CNN transfer train 2 iterations on both ranks, and rank 0's checkpoint loads."""
import json
import math
import os
import os.path as osp
import socket
import subprocess
import sys

import pytest
from mmengine.config import Config

from mixedconv.benchmark.tiny import shrink_pretrain, shrink_transfer
from mixedconv.checkpoint import safe_load
from mixedconv.data import make_coco, make_image_folder

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIGS = {
    'convmae': 'configs/convmae/convmae_convvit-base-p16_8xb384-amp-coslr-1600e_in1k.py',
    'mixedae': 'configs/mixedae/mixedae_vit-base-p16_8xb256-amp-coslr-1600e_in1k.py',
    'mask-rcnn': 'configs/convmae/mask-rcnn_convvit-base-p16_fpn_8xb4-amp-lsj-1024-25e_coco.py',
}

PROBE = '''
import json
import os.path as osp

from mmengine.dist import get_rank, get_world_size
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class RankProbeHook(Hook):
    """Each rank writes what it trained on to rank<r>.json in the work dir."""

    def before_run(self, runner):
        self.record = dict(rank=get_rank(), world_size=get_world_size(), iters=[],
                           losses=[], batch_sizes=[])

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.record['iters'].append(runner.iter + 1)
        self.record['losses'].append(float(outputs['loss'].detach()))
        self.record['batch_sizes'].append(len(data_batch['inputs']))

    def after_run(self, runner):
        with open(osp.join(runner.work_dir, f'rank{get_rank()}.json'), 'w') as f:
            json.dump(self.record, f)
'''


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    """16 images (2 steps of 2 ranks x 4) and 8 COCO images (2 steps of 2 ranks x 2)."""
    root = tmp_path_factory.mktemp('data')
    make_image_folder(str(root / 'imagenet' / 'train'), num_images=16)
    make_coco(str(root / 'coco'), num_train=8, num_val=2)
    return root


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def tiny_config(kind, data, out_dir):
    cfg = Config.fromfile(osp.join(ROOT, CONFIGS[kind]))
    if kind == 'mask-rcnn':
        cfg = shrink_transfer(cfg, str(data / 'coco'))
        cfg.model.backbone.init_cfg = None
        cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
        cfg.train_cfg.pop('val_interval')
    else:
        cfg = shrink_pretrain(cfg, str(data / 'imagenet'), batch_size=4)
    assert 'SyncBN' not in cfg.pretty_text  # gloo on CPU has no SyncBN; tiny.py removes it
    cfg.custom_imports.imports.append('probe')
    cfg.custom_hooks.append(dict(type='RankProbeHook'))
    (out_dir / 'probe.py').write_text(PROBE)
    cfg.dump(str(out_dir / 'tiny.py'))
    return out_dir / 'tiny.py', cfg.train_dataloader.batch_size


def dist_train(config, work_dir, nproc=2):
    env = dict(os.environ, PYTHON=sys.executable, PORT=str(free_port()),
               PYTHONPATH=str(osp.dirname(config)), OMP_NUM_THREADS='1')
    return subprocess.run(['bash', osp.join(ROOT, 'tools', 'dist_train.sh'), str(config),
                           str(nproc), '--work-dir', str(work_dir)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize('kind', sorted(CONFIGS))
def test_two_cpu_processes_train_and_rank0_checkpoint_loads(kind, data, tmp_path):
    config, batch = tiny_config(kind, data, tmp_path)
    out = dist_train(config, tmp_path / 'work')
    assert out.returncode == 0, out.stderr[-4000:]
    log = out.stdout + out.stderr
    assert 'distributed backend nccl -> gloo' in log

    records = [json.loads((tmp_path / 'work' / f'rank{r}.json').read_text()) for r in (0, 1)]
    for rank, record in enumerate(records):
        assert record['rank'] == rank and record['world_size'] == 2
        assert record['iters'] == [1, 2]
        # the per-device batch (MixedAE: one mixing group of 1 / 0.25 images per device)
        assert record['batch_sizes'] == [batch, batch]
        assert all(math.isfinite(loss) for loss in record['losses']), record
    assert records[0]['losses'] != records[1]['losses']  # each rank read its own shard

    ckpt = safe_load(tmp_path / 'work' / 'iter_2.pth')
    assert ckpt['meta']['iter'] == 2
    assert not any(k.startswith('module.') for k in ckpt['state_dict'])
    assert 'rng_state' in ckpt and 'optimizer' in ckpt

