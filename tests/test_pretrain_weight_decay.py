"""The pretraining recipes decay exactly the parameters the official code decays.

Official rule (facebookresearch/mae and Alpha-VL/ConvMAE ``main_pretrain.py``: timm 0.3.2
``optim_factory.add_weight_decay(model, weight_decay)`` with an empty skip list), restated:
a trainable parameter gets no weight decay when it is 1-D or its name ends with ``.bias``;
every other one (class and mask tokens included) gets the optimizer's weight decay. MixedAE
released no code and follows MAE's recipe.
"""
import os.path as osp

import pytest
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope
from mmpretrain.registry import MODELS

from mixedconv import register_all_modules
from mixedconv.benchmark.tiny import no_amp_without_cuda, shrink_pretrain

register_all_modules()
ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
# config -> parameters the official rule decays although a blanket token exemption would not
PRETRAIN = {
    'convmae/convmae_convvit-base-p16_8xb384-amp-coslr-1600e_in1k.py': ['neck.mask_token'],
    'mae/mae_vit-base-p16_8xb512-amp-coslr-1600e_in1k.py': ['backbone.cls_token',
                                                            'neck.mask_token'],
    'mixedae/mixedae_vit-base-p16_8xb256-amp-coslr-1600e_in1k.py': [
        'backbone.cls_token', 'neck.mask_token', 'segment_embed'],
    'mixedae/mixedae_vit-base-p16_8xb256-amp-coslr-800e_in1k.py': [
        'backbone.cls_token', 'neck.mask_token', 'segment_embed'],
}


def official_weight_decay(name, param, weight_decay):
    return 0. if param.ndim <= 1 or name.endswith('.bias') else weight_decay


@pytest.mark.parametrize('name', sorted(PRETRAIN))
def test_pretraining_weight_decay_is_timms_add_weight_decay(name, tmp_path):
    cfg = shrink_pretrain(Config.fromfile(osp.join(ROOT, 'configs', name)), str(tmp_path))
    init_default_scope('mmpretrain')
    model = MODELS.build(cfg.model)
    no_amp_without_cuda(cfg)
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    weight_decay = cfg.optim_wrapper.optimizer.weight_decay
    assert weight_decay == 0.05  # main_pretrain.py --weight_decay 0.05 (PRETRAIN.md)
    got = {id(p): group['weight_decay'] for group in optim_wrapper.optimizer.param_groups
           for p in group['params']}
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    wrong = [f'{n}: {got[id(p)]} (official {official_weight_decay(n, p, weight_decay)})'
             for n, p in trainable.items()
             if got[id(p)] != official_weight_decay(n, p, weight_decay)]
    assert not wrong, '\n'.join(wrong)
    for token in PRETRAIN[name]:
        assert got[id(trainable[token])] == weight_decay, token
