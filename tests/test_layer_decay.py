"""Parameter groups of the detection recipes equal those of the official optimizers.

The expected lr scale and weight decay of every parameter are computed here from the official
rules, restated as tables (module types) and name tests, independently of our constructor:

* detectron2 ``get_default_optimizer_params`` (facebookresearch/detectron2
  detectron2/solver/build.py): parameters of modules in ``norm_module_types`` get
  ``weight_decay_norm`` (0 in configs/common/optim.py), everything else the optimizer's weight
  decay, then ``overrides`` (keyed by the parameter's own name) replace values;
* ViTDet's ``get_vit_lr_decay_rate`` (detectron2/modeling/backbone/vit.py) and
  Official-ConvMAE-Det's (projects/ConvMAEDet/modeling/convmae.py) lr factors.
"""
import math
import os.path as osp
import re

import pytest
import torch.nn as nn
from mmcv.cnn import build_norm_layer
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope

from mixedconv import register_all_modules
from mixedconv.benchmark.tiny import shrink_transfer
from mixedconv.engine.layer_decay import DETECTRON2_NORM_TYPES, resolve_module_type
from mixedconv.models.backbones.convvit import ConvViT
from mixedconv.models.backbones.plain_vit import PlainViT
from mixedconv.models.layers.norm import LayerNorm2d
from mixedconv.models.layers.rel_pos import DecomposedRelPos, RelativePositionBias

register_all_modules()

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
WD = 0.1
LR = 1e-4
# detectron2 norm_module_types, as listed in detectron2/solver/build.py
D2_NORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.GroupNorm,
                 nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d, nn.LayerNorm,
                 nn.LocalResponseNorm)
# Every module type of our models that holds parameters itself -> whether the official module
# it stands for is a detectron2 norm type. LayerNorm2d stands for detectron2.layers.LayerNorm
# (an nn.Module, not in the list) although it subclasses nn.LayerNorm.
OFFICIAL_IS_NORM = {
    nn.LayerNorm: True, nn.BatchNorm1d: True, nn.BatchNorm2d: True, nn.BatchNorm3d: True,
    nn.SyncBatchNorm: True, nn.GroupNorm: True, nn.InstanceNorm1d: True,
    nn.InstanceNorm2d: True, nn.InstanceNorm3d: True,
    LayerNorm2d: False, nn.Conv2d: False, nn.ConvTranspose2d: False, nn.Linear: False,
    # modules holding pos_embed / relative position tables themselves (detectron2: the ViT
    # backbone, its Attention; Alpha-VL DET: RelativePositionBias)
    PlainViT: False, ConvViT: False, DecomposedRelPos: False, RelativePositionBias: False,
}


def owned_params(model):
    """(full name, own name, owning module) of every trainable parameter."""
    seen = set()
    for module_name, module in model.named_modules():
        for own, param in module.named_parameters(recurse=False):
            if param.requires_grad and param not in seen:
                seen.add(param)
                yield f'{module_name}.{own}' if module_name else own, own, module


def official_is_norm(module):
    for cls in type(module).__mro__:
        if cls in OFFICIAL_IS_NORM:
            return OFFICIAL_IS_NORM[cls]
    # a class added to our models: add what it stands for to the table
    raise AssertionError(f'{type(module).__name__} is not in OFFICIAL_IS_NORM')


def vitdet_lr_factor(name, rate, num_layers):
    """detectron2 get_vit_lr_decay_rate on a full parameter name."""
    layer_id = num_layers + 1
    if name.startswith('backbone'):
        if '.pos_embed' in name or '.patch_embed' in name:
            layer_id = 0
        elif '.blocks.' in name and '.residual.' not in name:
            layer_id = int(name[name.find('.blocks.'):].split('.')[2]) + 1
    return rate ** (num_layers + 1 - layer_id)


def convmae_det_lr_factor(name, rate, num_layers):
    """Official-ConvMAE-Det get_vit_lr_decay_rate on a full parameter name (pos_embed matches
    no case: full lr)."""
    layer_id = num_layers + 1
    if name.startswith('backbone'):
        if '.patch_embed' in name or '.blocks1.' in name or '.blocks2.' in name:
            layer_id = 0
        elif '.blocks3.' in name and '.residual.' not in name:
            layer_id = int(name[name.find('.blocks3.'):].split('.')[2]) + 1
    return rate ** (num_layers + 1 - layer_id)


def detectron2_groups(model, lr_factor, overrides):
    """{full name: (lr scale, weight decay)} under get_default_optimizer_params."""
    expected = {}
    for name, own, module in owned_params(model):
        wd = 0.0 if official_is_norm(module) else WD
        scale = lr_factor(name)
        override = overrides.get(own, {})
        wd = override.get('weight_decay', wd)
        expected[name] = (scale, wd)
    return expected


def built_groups(model, optim_wrapper_cfg):
    """{full name: (lr scale, weight decay)} of the optimizer our config builds."""
    wrapper = build_optim_wrapper(model, optim_wrapper_cfg)
    names = {id(p): n for n, p in model.named_parameters()}
    got = {}
    for group in wrapper.optimizer.param_groups:
        for param in group['params']:
            if param.requires_grad:
                name = names[id(param)]
                assert name not in got, f'{name} is in two groups'
                got[name] = (group['lr'] / LR, group['weight_decay'])
    return got


def assert_same_groups(got, expected):
    assert set(got) == set(expected)
    wrong = [f'{n}: ours {got[n]}, official {expected[n]}' for n in sorted(expected)
             if not (math.isclose(got[n][0], expected[n][0], rel_tol=1e-9)
                     and got[n][1] == expected[n][1])]
    assert not wrong, '\n'.join(wrong)


def tiny_detector(name, tmp_path):
    cfg = shrink_transfer(Config.fromfile(f'{ROOT}/configs/{name}'), str(tmp_path))
    init_default_scope(cfg.default_scope)
    from mmdet.registry import MODELS
    model = MODELS.build(cfg.model)
    cfg.optim_wrapper.optimizer.update(lr=LR, weight_decay=WD)
    return model, cfg.optim_wrapper


def test_default_norm_types_are_detectron2s():
    assert tuple(resolve_module_type(t) for t in DETECTRON2_NORM_TYPES) == D2_NORM_TYPES


@pytest.mark.parametrize('name, lr_factor, overrides', [
    ('mixedae/mask-rcnn_vit-base-p16_sfp_16xb4-amp-lsj-1024-100e_coco.py',
     lambda n: vitdet_lr_factor(n, 0.7, 4), {'pos_embed': {'weight_decay': 0.0}}),
    ('mae/mask-rcnn_vit-base-p16_sfp_16xb4-amp-lsj-1024-100e_coco.py',
     lambda n: vitdet_lr_factor(n, 0.7, 4), {'pos_embed': {'weight_decay': 0.0}}),
    ('convmae/mask-rcnn_convvit-base-p16_sfp_8xb2-amp-lsj-1024-25e_coco.py',
     lambda n: convmae_det_lr_factor(n, 0.8, 2), {'pos_embed': {'weight_decay': 0.0}}),
    # Alpha-VL/ConvMAE DET FPN recipe: no lr_factor_func, two overrides
    ('convmae/mask-rcnn_convvit-base-p16_fpn_8xb4-amp-lsj-1024-25e_coco.py', lambda n: 1.0,
     {'pos_embed': {'weight_decay': 0.0}, 'relative_position_bias_table': {'weight_decay': 0.0}}),
])
def test_detection_recipe_groups_are_the_official_ones(name, lr_factor, overrides, tmp_path):
    """Tiny models of the recipes (stage-3 depth 2 / ViT depth 4, 0-based ids as the official
    functions count them)."""
    model, optim_cfg = tiny_detector(name, tmp_path)
    got = built_groups(model, optim_cfg)
    expected = detectron2_groups(model, lr_factor, overrides)
    assert_same_groups(got, expected)
    # the rule's distinctive cases are present in the tiny model
    decayed_biases = [n for n, (_, wd) in expected.items() if n.endswith('.bias') and wd == WD]
    assert any(n.startswith('backbone.') for n in decayed_biases)
    assert any(n.startswith(('neck.', 'roi_head.')) for n in decayed_biases)
    exempt = [n for n, (_, wd) in expected.items() if wd == 0.0]
    assert any(re.search(r'norm\d?\.weight$', n) for n in exempt)
    if 'sfp' in name:  # LayerNorm2d in the pyramid and the heads: decayed, as detectron2's LN
        ln2d = {f'{m}.weight' for m, mod in model.named_modules() if isinstance(mod, LayerNorm2d)}
        assert ln2d and all(expected[n][1] == WD for n in ln2d)
        rel_pos = [n for n in expected if n.endswith(('rel_pos_h', 'rel_pos_w'))]
        assert rel_pos and all(expected[n][1] == WD for n in rel_pos)
    if 'convvit' in name and 'sfp' in name:
        assert got['backbone.pos_embed'] == (1.0, 0.0)
    if name.startswith(('mixedae/', 'mae/')):
        assert got['backbone.pos_embed'] == (pytest.approx(0.7 ** 5), 0.0)


class NormZoo(nn.Module):
    """A PlainViT backbone and a neck with one module of every norm type and of the layers
    around them."""

    def __init__(self):
        super().__init__()
        self.backbone = PlainViT(arch=dict(embed_dim=16, depth=2, num_heads=2, mlp_ratio=2.),
                                 img_size=32, patch_size=16, window_size=1, global_blocks=(1, ),
                                 rel_pos_type='decomposed', with_cls_token=False,
                                 final_norm=False, fixed_pos_embed=False)
        self.neck = nn.ModuleDict(dict(
            bn1d=nn.BatchNorm1d(4), bn2d=nn.BatchNorm2d(4), bn3d=nn.BatchNorm3d(4),
            sync_bn=nn.SyncBatchNorm(4), mmcv_sync_bn=build_norm_layer(dict(type='SyncBN'), 4)[1],
            gn=nn.GroupNorm(2, 4), in1d=nn.InstanceNorm1d(4, affine=True),
            in2d=nn.InstanceNorm2d(4, affine=True), in3d=nn.InstanceNorm3d(4, affine=True),
            ln=nn.LayerNorm(4), ln2d=LayerNorm2d(4), lrn=nn.LocalResponseNorm(2),
            conv=nn.Conv2d(4, 4, 1), deconv=nn.ConvTranspose2d(4, 4, 2), fc=nn.Linear(4, 4)))


def test_detectron2_rule_on_every_norm_type():
    model = NormZoo()
    cfg = dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=LR, weight_decay=WD),
               constructor='LayerDecayOptimWrapperConstructor',
               paramwise_cfg=dict(layer_decay_rate=0.5, decay_rule='detectron2',
                                  overrides=dict(pos_embed=dict(weight_decay=0.0))))
    got = built_groups(model, cfg)
    expected = detectron2_groups(model, lambda n: vitdet_lr_factor(n, 0.5, 2),
                                 {'pos_embed': {'weight_decay': 0.0}})
    assert_same_groups(got, expected)
    for key in ('bn1d', 'bn2d', 'bn3d', 'sync_bn', 'mmcv_sync_bn', 'gn', 'in1d', 'in2d', 'in3d',
                'ln'):
        assert got[f'neck.{key}.weight'] == (1.0, 0.0) and got[f'neck.{key}.bias'] == (1.0, 0.0)
    for key in ('ln2d', 'conv', 'deconv', 'fc'):
        assert got[f'neck.{key}.bias'] == (1.0, WD)
    assert got['backbone.blocks.0.attn.qkv.bias'] == (0.5 ** 2, WD)
    assert got['backbone.blocks.1.norm1.bias'] == (0.5, 0.0)


def test_mmengine_norm_detection_matches_detectron2_but_for_layernorm2d():
    """The FPN recipe uses mmengine's norm_decay_mult: its norm types agree with detectron2's on
    every type but LayerNorm2d (which that recipe does not contain, see the test above) and
    LocalResponseNorm (no parameters)."""
    model = NormZoo()
    cfg = dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=LR, weight_decay=WD),
               paramwise_cfg=dict(norm_decay_mult=0.0))
    got = built_groups(model, cfg)
    for name, own, module in owned_params(model):
        d2 = 0.0 if isinstance(module, D2_NORM_TYPES) and not isinstance(module, LayerNorm2d) \
            else WD
        if isinstance(module, LayerNorm2d):
            assert got[name][1] == 0.0  # mmengine: a LayerNorm subclass
        else:
            assert got[name][1] == d2, name


@pytest.mark.parametrize('paramwise_cfg, message', [
    (dict(layer_decay_rate=0.5, decay_rule='beit'), 'decay_rule must be one of'),
    (dict(layer_decay_rate=0.5, norm_types=('LayerNorm', )), 'unknown paramwise_cfg keys'),
    (dict(layer_decay_rate=0.5, decay_rule='detectron2', no_decay_names=()),
     'unknown paramwise_cfg keys'),
    (dict(layer_decay_rate=0.5, decay_rule='detectron2', overrides=dict(pos_embed=dict(lr=1))),
     'an override may set'),
    (dict(layer_decay_rate=0.5, decay_rule='detectron2', norm_types=('NoSuchNorm', )),
     'is not a torch.nn module type'),
])
def test_bad_options_are_rejected(paramwise_cfg, message):
    cfg = dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=LR, weight_decay=WD),
               constructor='LayerDecayOptimWrapperConstructor', paramwise_cfg=paramwise_cfg)
    with pytest.raises(ValueError, match=message):
        build_optim_wrapper(NormZoo(), cfg)
