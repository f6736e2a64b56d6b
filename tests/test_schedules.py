"""Every recipe's learning rate, stepped through its whole run with the real mmengine
schedulers, equals the official schedule at every iteration.

The official schedules are restated here as formulas from the official code:

* ImageNet (pretraining, fine-tuning, linear probing): ``adjust_learning_rate`` of
  facebookresearch/mae ``util/lr_sched.py`` (copied unchanged into Alpha-VL/ConvMAE), called
  before every iteration with the fractional epoch; ``min_lr`` comes before ``lr_scale``.
* COCO: detectron2's ``LRMultiplier`` (``detectron2/solver/lr_scheduler.py``) evaluates a
  ``WarmupParamScheduler`` (a fvcore ``CompositeParamScheduler`` of a linear warmup, rescaled
  to its interval, and the main scheduler on the fixed interval) at ``iter / max_iter``.
* ADE20K: mmcv 1.x ``PolyLrUpdaterHook`` with linear warmup, as the official runs used it
  (the poly factor over all iterations from 0, times the warmup factor).
"""
import bisect
import math
import os.path as osp
import warnings

import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.optim import OptimWrapper, build_optim_wrapper
from mmengine.registry import PARAM_SCHEDULERS, init_default_scope
from mmpretrain.registry import MODELS as PRETRAIN_MODELS

from mixedconv import register_all_modules
from mixedconv.benchmark.tiny import no_amp_without_cuda
from mixedconv.families import FAMILIES

register_all_modules()

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
WHERE_EPSILON = 1e-6  # fvcore ParamScheduler.WHERE_EPSILON


def mae_lr(epoch, lr, min_lr, warmup_epochs, epochs):
    """util/lr_sched.py adjust_learning_rate, before the lr_scale multiplication."""
    if epoch < warmup_epochs:
        return lr * epoch / warmup_epochs
    return min_lr + (lr - min_lr) * 0.5 * (
        1. + math.cos(math.pi * (epoch - warmup_epochs) / (epochs - warmup_epochs)))


def d2_multistep(values, milestones, num_updates):
    """fvcore MultiStepParamScheduler."""
    def value(where):
        return values[bisect.bisect_right(milestones, int((where + WHERE_EPSILON) * num_updates))]
    return value


def d2_cosine(start, end):
    """fvcore CosineParamScheduler."""
    return lambda where: end + 0.5 * (start - end) * (1 + math.cos(math.pi * where))


def d2_warmup(scheduler, warmup_factor, warmup_length):
    """detectron2 WarmupParamScheduler (linear, rescale_interval=False) as fvcore's
    CompositeParamScheduler evaluates it."""
    start, end = warmup_factor * scheduler(0.), scheduler(warmup_length)

    def value(where):
        if where + WHERE_EPSILON <= warmup_length:
            alpha = where / warmup_length
            return end * alpha + start * (1 - alpha)
        return scheduler(where)
    return value


def mmcv_poly_warmup(it, base_lr, max_iters, power, min_lr, warmup_iters, warmup_ratio):
    """mmcv 1.x PolyLrUpdaterHook.get_lr, times get_warmup_lr's factor (warmup='linear')."""
    lr = (base_lr - min_lr) * (1 - it / max_iters) ** power + min_lr
    if it < warmup_iters:
        lr *= 1 - (1 - it / warmup_iters) * (1 - warmup_ratio)
    return lr


def schedulers_of(cfg, optim_wrapper, epoch_length):
    """The config's schedulers, built as mmengine's Runner builds them."""
    return [PARAM_SCHEDULERS.build(dict(s), default_args=dict(optimizer=optim_wrapper,
                                                              epoch_length=epoch_length))
            for s in cfg.param_scheduler]


def lr_curves(optim_wrapper, schedulers, steps):
    """(steps, groups) tensor of the lr each group trains with at every iteration."""
    curves = []
    with warnings.catch_warnings():  # scheduler.step() without optimizer.step()
        warnings.simplefilter('ignore', UserWarning)
        for _ in range(steps):
            curves.append([group['lr'] for group in optim_wrapper.param_groups])
            for scheduler in schedulers:
                scheduler.step()
    return torch.tensor(curves, dtype=torch.float64)


def single_group(lr):
    return OptimWrapper(torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr))


# config -> the official run's values (facebookresearch/mae FINETUNE.md and main_finetune.py
# defaults for ViT-B; Alpha-VL/ConvMAE FINETUNE.md and main_finetune.py defaults)
FINETUNE = {
    'convmae/convmae_convvit-base-p16_8xb128-coslr-100e_in1k.py': 'ConvViT',
    'mae/mae_vit-base-p16_8xb128-coslr-100e_in1k.py': 'PlainViT',
    'mixedae/mixedae_vit-base-p16_8xb128-coslr-100e_in1k.py': 'PlainViT',
}
FINETUNE_OFFICIAL = dict(lr=5e-4 * 1024 / 256, min_lr=1e-6, warmup_epochs=5, epochs=100)


@pytest.mark.parametrize('name', sorted(FINETUNE))
def test_finetuning_layer_groups_follow_the_official_schedule(name):
    """Each layer-decay group decays to min_lr x its lr scale (util/lr_sched.py applies
    min_lr before lr_scale), through the recipe's own optimizer constructor."""
    cfg = Config.fromfile(osp.join(ROOT, 'configs', name))
    init_default_scope('mmpretrain')
    backbone = cfg.model.backbone
    backbone.update(arch=dict(FAMILIES[FINETUNE[name]].tiny), init_cfg=None)
    model = PRETRAIN_MODELS.build(cfg.model)
    no_amp_without_cuda(cfg)
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    # the layer-decay groups, and the group through which mmengine's OptimWrapper logs the
    # base lr (no lr_scale: the official lr before scaling)
    scales = [group.get('lr_scale', 1.) for group in optim_wrapper.param_groups]
    assert len(set(scales)) > 3

    epoch_length = 8
    official = FINETUNE_OFFICIAL
    assert cfg.train_cfg.max_epochs == official['epochs']
    assert cfg.optim_wrapper.optimizer.lr == official['lr']
    steps = official['epochs'] * epoch_length
    got = lr_curves(optim_wrapper, schedulers_of(cfg, optim_wrapper, epoch_length), steps)
    expected = torch.tensor(
        [[mae_lr(it / epoch_length, official['lr'], official['min_lr'],
                 official['warmup_epochs'], official['epochs']) * scale for scale in scales]
         for it in range(steps)], dtype=torch.float64)
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=0)
    # the lowest group ends below the absolute 1e-6 that a floor shared by all groups gives
    assert got[-1].min() < official['min_lr']


# config -> (official lr, min_lr, warmup epochs, epochs): Alpha-VL/ConvMAE PRETRAIN.md and
# main_pretrain.py; facebookresearch/mae PRETRAIN.md and main_pretrain.py (MixedAE follows
# MAE's recipe); Alpha-VL/ConvMAE FINETUNE.md (linear probing) and main_linprobe.py
IMAGENET_OTHER = {
    'convmae/convmae_convvit-base-p16_8xb384-amp-coslr-1600e_in1k.py':
        (1.5e-4 * 3072 / 256, 0., 40, 1600),
    'mae/mae_vit-base-p16_8xb512-amp-coslr-1600e_in1k.py': (1.5e-4 * 4096 / 256, 0., 40, 1600),
    'mixedae/mixedae_vit-base-p16_8xb256-amp-coslr-1600e_in1k.py':
        (1.5e-4 * 2048 / 256, 0., 40, 1600),
    'mixedae/mixedae_vit-base-p16_8xb256-amp-coslr-800e_in1k.py':
        (1.5e-4 * 2048 / 256, 0., 40, 800),
    'convmae/convmae_convvit-base-p16_8xb512-linear-coslr-90e_in1k.py':
        (0.1 * 4096 / 256, 0., 10, 90),
}


@pytest.mark.parametrize('name', sorted(IMAGENET_OTHER))
def test_pretraining_and_linear_probe_follow_the_official_schedule(name):
    cfg = Config.fromfile(osp.join(ROOT, 'configs', name))
    lr, min_lr, warmup_epochs, epochs = IMAGENET_OTHER[name]
    assert cfg.train_cfg.max_epochs == epochs
    assert cfg.optim_wrapper.optimizer.lr == pytest.approx(lr, rel=1e-12)
    epoch_length = 2
    optim_wrapper = single_group(cfg.optim_wrapper.optimizer.lr)
    got = lr_curves(optim_wrapper, schedulers_of(cfg, optim_wrapper, epoch_length),
                    epochs * epoch_length)[:, 0]
    expected = torch.tensor([mae_lr(it / epoch_length, lr, min_lr, warmup_epochs, epochs)
                             for it in range(epochs * epoch_length)], dtype=torch.float64)
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-15)


# config -> (max_iter, schedule, warmup_length, warmup_factor, relative tolerance):
# Alpha-VL/ConvMAE DET/configs/convmae/convmae_base_mask_rcnn_FPN_{100,25}ep.py (max_iter
# 368750 // 4, CosineParamScheduler(1, 0), warmup_length 0.125 / 100 x 4);
# Official-ConvMAE-Det projects/ConvMAEDet/configs/COCO/mask_rcnn_vitdet_convmae_b_25ep.py and
# detectron2 projects/ViTDet/configs/COCO/mask_rcnn_vitdet_b_100ep.py (MultiStep at 163889,
# 177546 of 184375, warmup 250 / max_iter)
VITDET_STEPS = d2_multistep([1.0, 0.1, 0.01], [163889, 177546], 184375)
DETECTION = {
    'convmae/mask-rcnn_convvit-base-p16_fpn_8xb4-amp-lsj-1024-25e_coco.py':
        (368750 // 4, d2_cosine(1.0, 0.0), 0.125 / 100 * 4, 0.001),
    'convmae/mask-rcnn_convvit-base-p16_sfp_8xb2-amp-lsj-1024-25e_coco.py':
        (184375, VITDET_STEPS, 250 / 184375, 0.001),
    'mixedae/mask-rcnn_vit-base-p16_sfp_16xb4-amp-lsj-1024-100e_coco.py':
        (184375, VITDET_STEPS, 250 / 184375, 0.001),
    'mae/mask-rcnn_vit-base-p16_sfp_16xb4-amp-lsj-1024-100e_coco.py':
        (184375, VITDET_STEPS, 250 / 184375, 0.001),
}


@pytest.mark.parametrize('name', sorted(DETECTION))
def test_detection_follows_detectron2s_schedule(name):
    cfg = Config.fromfile(osp.join(ROOT, 'configs', name))
    max_iter, schedule, warmup_length, warmup_factor = DETECTION[name]
    assert cfg.train_cfg.type == 'IterBasedTrainLoop' and cfg.train_cfg.max_iters == max_iter
    official = d2_warmup(schedule, warmup_factor, warmup_length)
    optim_wrapper = single_group(1.0)
    got = lr_curves(optim_wrapper, schedulers_of(cfg, optim_wrapper, None), max_iter)[:, 0]
    expected = torch.tensor([official(it / max_iter) for it in range(max_iter)],
                            dtype=torch.float64)
    # the first iteration after detectron2's warmup
    warmup = next(it for it in range(max_iter) if it / max_iter + WHERE_EPSILON > warmup_length)
    # after the warmup: the same values; during it mmengine multiplies the linear warmup by
    # the cosine where detectron2 interpolates towards the cosine's value at the warmup's end
    # (ConvMAE FPN: at most 1.5e-4 apart; the step schedules: equal)
    torch.testing.assert_close(got[warmup:], expected[warmup:], rtol=1e-9, atol=0)
    torch.testing.assert_close(got[:warmup], expected[:warmup], rtol=2e-4, atol=0)


# mmsegmentation@e9e8333 configs/mae/upernet_mae-base_fp16_8x2_512x512_160k_ade20k.py and
# Alpha-VL/ConvMAE SEG/configs/convmae/upernet_convmae_base_512_slide_160k_ade20k.py with their
# schedule_160k.py: poly power 1, min_lr 0, linear warmup 1500 iterations from 1e-6, 160000
# iterations
SEGMENTATION = [
    'convmae/upernet_convvit-base-p16_8xb2-amp-160k_ade20k-512x512.py',
    'mixedae/upernet_vit-base-p16_8xb2-amp-160k_ade20k-512x512.py',
    'mae/upernet_vit-base-p16_8xb2-amp-160k_ade20k-512x512.py',
]


@pytest.mark.parametrize('name', SEGMENTATION)
def test_segmentation_follows_mmcv_poly_with_warmup(name):
    cfg = Config.fromfile(osp.join(ROOT, 'configs', name))
    max_iters = 160000
    assert cfg.train_cfg.max_iters == max_iters
    optim_wrapper = single_group(1.0)
    got = lr_curves(optim_wrapper, schedulers_of(cfg, optim_wrapper, None), max_iters)[:, 0]
    expected = torch.tensor([mmcv_poly_warmup(it, 1.0, max_iters, 1.0, 0.0, 1500, 1e-6)
                             for it in range(max_iters)], dtype=torch.float64)
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-15)


@pytest.mark.parametrize('kwargs, message', [
    (dict(warmup=5), 'needs end='),
    (dict(warmup=10, end=10), 'shorter than the schedule'),
    (dict(warmup=1, end=10, eta_min=-1e-6), 'must not be negative'),
])
def test_warmup_cosine_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PARAM_SCHEDULERS.build(dict(type='WarmupCosineLR', by_epoch=False, **kwargs),
                               default_args=dict(optimizer=single_group(1.0)))
