"""The bf16 AMP runs of the CUDA tests: the real recipes, shrunk by
:mod:`mixedconv.benchmark.tiny`, through mmengine's Runner on the GPU."""
import os.path as osp
from dataclasses import dataclass

import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.runner import Runner

from mixedconv.benchmark.recipes import PRETRAIN_CONFIGS
from mixedconv.benchmark.tiny import shrink_pretrain
from mixedconv.config_files import config_path


def _first_tensor(value):
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        for item in value:
            found = _first_tensor(item)
            if found is not None:
                return found
    return None


def watch_layer_dtypes(module):
    """The dtypes of the outputs of ``module``'s linear and convolution layers from now on
    (a set of names, filled in place): ``'bfloat16'`` where autocast ran them. Leaf layers are
    hooked because the pretraining models call the backbone's methods, not its forward."""
    dtypes = set()

    def hook(_layer, _inputs, output):
        tensor = _first_tensor(output)
        if tensor is not None:
            dtypes.add(str(tensor.dtype).replace('torch.', ''))
    for layer in module.modules():
        if isinstance(layer, (nn.Linear, nn.Conv2d)):
            layer.register_forward_hook(hook)
    return dtypes


def assert_bf16_amp(cfg):
    """The recipe trains with bf16 AMP, and shrinking it kept that on CUDA."""
    wrapper = cfg.optim_wrapper
    assert (wrapper.get('type'), wrapper.get('dtype')) == ('AmpOptimWrapper', 'bfloat16'), \
        f'not a bf16 AMP recipe: {wrapper}'


@dataclass
class PretrainRun:
    """One bf16 AMP pretraining step on the GPU."""
    method: str
    family: str  # the backbone type of the recipe
    loss: float
    layer_dtypes: set
    on_cuda: bool
    checkpoint: str


def pretrain_on_cuda(method, data_root, work_dir):
    """One step (batch 8) of ``method``'s pretraining recipe, shrunk to the tiny models."""
    cfg = Config.fromfile(config_path(PRETRAIN_CONFIGS[method]))
    cfg = shrink_pretrain(cfg, data_root, iters=1, batch_size=8)
    assert_bf16_amp(cfg)
    cfg.work_dir = work_dir
    runner = Runner.from_cfg(cfg)
    dtypes = watch_layer_dtypes(runner.model.backbone)
    runner.train()
    loss = runner.message_hub.get_scalar('train/loss').current()
    return PretrainRun(method=method, family=cfg.model.backbone.type, loss=loss,
                       layer_dtypes=dtypes, on_cuda=next(runner.model.parameters()).is_cuda,
                       checkpoint=osp.join(work_dir, 'iter_1.pth'))

