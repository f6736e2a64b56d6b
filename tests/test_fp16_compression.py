"""Fp16CompressionHook: DDP gradients all-reduced in float16 (the official detection runs'
``train.ddp.fp16_compression=True``), checked in a 2-process gloo job with real mmengine
runners, and harmless in a single-process run."""
import json
import os
import os.path as osp
import socket
import subprocess
import sys

import torch
import torch.nn as nn
from mmengine.model import BaseModel
from mmengine.runner import Runner

from mixedconv import register_all_modules

register_all_modules()
ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

# Each rank trains one SGD step (lr 1) of loss = w * x on its own x: the all-reduced gradient
# of w is the mean of the ranks' x, and w ends at minus that mean. Rank 0's x = 1 + 2^-20 is
# not a float16 number (float16 keeps 10 mantissa bits): compressed, it rounds to 1 and the
# mean is exactly 1; in float32 the mean is 1 + 2^-21.
PROGRAM = '''
import json
import sys

import torch
import torch.nn as nn
from mmengine.dist import get_rank
from mmengine.model import BaseModel
from mmengine.runner import Runner

from mixedconv import register_all_modules

register_all_modules()
# mmengine's init_dist selects a CUDA device first: on CPU the group is started here, and the
# runners use it
torch.distributed.init_process_group('gloo')
X = [1 + 2 ** -20, 1.0]


class Scalar(BaseModel):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, inputs, mode='loss'):
        return dict(loss=(self.w * inputs).sum())


def train(work_dir, hook, wrapper='MMDistributedDataParallel'):
    runner = Runner(
        model=Scalar(), work_dir=work_dir, launcher='pytorch',
        env_cfg=dict(dist_cfg=dict(backend='gloo')),
        cfg=dict(model_wrapper_cfg=dict(type=wrapper, device_ids=None)),
        train_dataloader=dict(dataset=[dict(inputs=torch.tensor(x)) for x in X],
                              sampler=dict(type='DefaultSampler', shuffle=False),
                              batch_size=1, collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=1.0)),
        train_cfg=dict(by_epoch=False, max_iters=1),
        default_hooks=dict(checkpoint=None, fp16_compression=hook))
    runner.train()
    return runner.model.module.w.item()


out = sys.argv[1]
record = dict(fp16=train(out + '/fp16', dict(type='Fp16CompressionHook')),
              fp32=train(out + '/fp32', dict(type='Fp16CompressionHook', enabled=False)))
try:
    train(out + '/separate', dict(type='Fp16CompressionHook'),
          wrapper='MMSeparateDistributedDataParallel')
except TypeError as err:
    record['separate'] = str(err)
if get_rank() == 0:
    with open(out + '/result.json', 'w') as f:
        json.dump(record, f)
'''


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_two_gloo_processes_all_reduce_in_float16(tmp_path):
    script = tmp_path / 'compressed.py'
    script.write_text(PROGRAM)
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS='1')
    out = subprocess.run(
        [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2',
         '--master_port', str(free_port()), str(script), str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-4000:]
    assert 'DDP gradients are all-reduced in float16' in out.stdout + out.stderr
    result = json.loads((tmp_path / 'result.json').read_text())
    assert result['fp16'] == -1.0  # float16 all-reduce: (fp16(1 + 2^-20) + 1) / 2 = 1
    assert result['fp32'] == -(1 + 2 ** -21)  # without the hook: float32 all-reduce
    assert 'needs a DistributedDataParallel model' in result['separate']
    assert 'default_hooks.fp16_compression.enabled=False' in result['separate']


class Scalar(BaseModel):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, inputs, mode='loss'):
        return dict(loss=(self.w * inputs).sum())


def test_single_process_run_is_unchanged(tmp_path, capsys):
    x = 1 + 2 ** -20
    runner = Runner(
        model=Scalar(), work_dir=str(tmp_path),
        train_dataloader=dict(dataset=[dict(inputs=torch.tensor(x))],
                              sampler=dict(type='DefaultSampler', shuffle=False),
                              batch_size=1, collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=1.0)),
        train_cfg=dict(by_epoch=False, max_iters=1),
        default_hooks=dict(checkpoint=None, fp16_compression=dict(type='Fp16CompressionHook')))
    runner.train()
    assert runner.model.w.item() == -x  # float32 gradient, no all-reduce
    assert 'not a distributed run' in capsys.readouterr().out
