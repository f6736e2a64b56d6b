"""MoCoV3LARS: the LARS update of MoCo v3's util/lars.py (used by ConvMAE's and MAE's linear
probing), restated here, and how it differs from mmpretrain's LARS."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper

from mixedconv.benchmark.tiny import no_amp_without_cuda
from mixedconv.engine import MoCoV3LARS

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
LINPROBE = 'configs/convmae/convmae_convvit-base-p16_8xb512-linear-coslr-90e_in1k.py'


def official_rule(params, grads_per_step, lrs, weight_decay, momentum=0.9, trust=0.001):
    """The MoCo v3 rule, step by step: 2-D and larger parameters get weight decay and the
    trust ratio, the others the raw gradient; mu = momentum mu + update; p -= lr mu."""
    params = [p.clone() for p in params]
    mus = [torch.zeros_like(p) for p in params]
    for grads, lr in zip(grads_per_step, lrs):
        for i, (p, g) in enumerate(zip(params, grads)):
            if p.ndim > 1:
                g = g + weight_decay * p
                g = g * (trust * p.norm() / g.norm())
            mus[i] = momentum * mus[i] + g
            params[i] = p - lr * mus[i]
    return params


def run(optimizer_of, params, grads_per_step, lrs):
    params = [p.clone().requires_grad_() for p in params]
    optimizer = optimizer_of(params)
    for grads, lr in zip(grads_per_step, lrs):
        for group in optimizer.param_groups:
            group['lr'] = lr
        for p, g in zip(params, grads):
            p.grad = g.clone()
        optimizer.step()
    return [p.detach() for p in params]


@pytest.fixture
def problem():
    gen = torch.Generator().manual_seed(0)
    params = [torch.randn(10, 6, generator=gen), torch.randn(10, generator=gen)]
    grads = [[torch.randn(p.shape, generator=gen) for p in params] for _ in range(5)]
    lrs = [0.2, 0.6, 1.6, 1.2, 0.4]  # warmup then decay
    return params, grads, lrs


@pytest.mark.parametrize('weight_decay', [0.0, 0.05])
def test_update_is_the_official_rule(problem, weight_decay):
    params, grads, lrs = problem
    ours = run(lambda ps: MoCoV3LARS(ps, lr=lrs[0], weight_decay=weight_decay), params, grads,
               lrs)
    expected = official_rule(params, grads, lrs, weight_decay)
    for got, want in zip(ours, expected):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)
    assert not torch.equal(ours[1], params[1])  # the bias moved, by the raw momentum


def test_mmpretrain_lars_agrees_only_while_the_lr_is_constant(problem):
    """mmpretrain's LARS (with lars_exclude on the bias) puts lr x update into its buffer:
    the same as the official rule at a constant lr, different once the lr changes."""
    from mmpretrain.engine.optimizers import LARS
    params, grads, lrs = problem

    def mmpretrain_lars(ps):
        return LARS([dict(params=[ps[0]]), dict(params=[ps[1]], lars_exclude=True)],
                    lr=lrs[0], momentum=0.9, weight_decay=0.0, eta=0.001, eps=0.0)

    constant = [lrs[0]] * len(lrs)
    for got, want in zip(run(mmpretrain_lars, params, grads, constant),
                         run(lambda ps: MoCoV3LARS(ps, lr=lrs[0]), params, grads, constant)):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)
    theirs = run(mmpretrain_lars, params, grads, lrs)
    ours = run(lambda ps: MoCoV3LARS(ps, lr=lrs[0]), params, grads, lrs)
    assert (theirs[0] - ours[0]).abs().max() > 1e-3


def test_linear_probe_recipe_builds_it_with_one_group():
    cfg = Config.fromfile(osp.join(ROOT, LINPROBE))
    no_amp_without_cuda(cfg)
    head = torch.nn.Linear(8, 3)
    wrapper = build_optim_wrapper(head, cfg.optim_wrapper)
    optimizer = wrapper.optimizer
    assert isinstance(optimizer, MoCoV3LARS)
    assert len(optimizer.param_groups) == 1
    group = optimizer.param_groups[0]
    assert (group['lr'], group['weight_decay'], group['momentum'],
            group['trust_coefficient']) == (1.6, 0.0, 0.9, 0.001)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match='momentum=1.5'):
        MoCoV3LARS([torch.zeros(2, 2, requires_grad=True)], lr=0.1, momentum=1.5)
