"""ConvViT and PlainViT behave as mm users expect of a backbone: any input size for dense
outputs, ResNet-era options, mm stage numbering, output channels, only the pyramid levels asked
for, a clear error for outputs nothing reads, and the libraries' layer-decay settings."""
import ast
import glob
import os.path as osp
import re
import warnings

import pytest
import torch
import torch.nn.functional as F
from mmcv.cnn.bricks.transformer import AdaptivePadding
from mmengine.config import Config, ConfigDict
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope

from mixedconv.dropin import backbone_out_channels, check_config
from mixedconv.families import CONVVIT, PLAINVIT
from mixedconv.registry import MODELS

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONV = dict(CONVVIT.tiny)    # widths 16, 32, 64; stage-3 depth 2
PLAIN = dict(PLAINVIT.tiny)  # width 64, depth 4


def convvit(**kwargs):
    return MODELS.build(dict(type='ConvViT', arch=CONV, img_size=64, **kwargs))


def plainvit(**kwargs):
    return MODELS.build(dict(type='PlainViT', arch=PLAIN, img_size=64, **kwargs))


# ------------------------------------------------------------------------------ input sizes
def test_convvit_pads_dense_inputs_and_crops_every_level():
    model = convvit(out_indices=(0, 1, 2, 3)).eval()
    x = torch.randn(1, 3, 50, 75)
    padded = AdaptivePadding(kernel_size=16, stride=16, padding='corner')(x)  # mmseg ViT's pad
    assert padded.shape[-2:] == (64, 80)
    torch.testing.assert_close(model.pad_input(x), padded)
    with torch.no_grad():
        outs, full = model(x), model(padded)
    assert [tuple(o.shape[-2:]) for o in outs] == [(13, 19), (7, 10), (4, 5), (2, 2)]
    for out, ref in zip(outs, full):
        torch.testing.assert_close(out, ref[..., :out.shape[-2], :out.shape[-1]])


def test_plainvit_pyramid_pads_and_crops():
    model = plainvit(out_indices=(0, 1, 2, 3), rescale_to_pyramid=True).eval()
    x = torch.randn(2, 3, 40, 56)
    with torch.no_grad():
        outs, full = model(x), model(F.pad(x, (0, 8, 0, 8)))
    assert [tuple(o.shape[-2:]) for o in outs] == [(10, 14), (5, 7), (3, 4), (1, 2)]
    for out, ref in zip(outs, full):
        torch.testing.assert_close(out, ref[..., :out.shape[-2], :out.shape[-1]])


def test_classifier_outputs_and_masked_path_stay_strict():
    with pytest.raises(ValueError, match='multiples of 16, got 40x64'):
        plainvit(out_type='avg_featmap')(torch.randn(1, 3, 40, 64))
    with pytest.raises(ValueError, match='multiples of 16, got 40x64'):
        convvit().forward_masked(torch.randn(1, 3, 40, 64), torch.zeros(1, 2, dtype=torch.long))
    with pytest.raises(ValueError, match='patch_pad must be one of'):
        convvit(patch_pad='center')


# --------------------------------------------------------------------------- pyramid levels
def test_three_level_pyramid_builds_only_its_branches():
    model = plainvit(out_indices=(1, 2, 3), rescale_to_pyramid=True)
    assert model.pyramid_rescales == (2, 1, 0.5) and not hasattr(model, 'fpn1')
    assert not any(name.startswith('fpn1') for name, _ in model.named_parameters())
    outs = model.eval()(torch.randn(1, 3, 64, 64))
    assert [tuple(o.shape[-2:]) for o in outs] == [(8, 8), (4, 4), (2, 2)]  # strides 8/16/32
    assert model.out_strides == (8, 16, 32)
    chosen = plainvit(out_indices=(0, 3), rescale_to_pyramid=True, pyramid_rescales=(4, 1))
    assert hasattr(chosen, 'fpn1') and not hasattr(chosen, 'fpn2')
    assert [o.shape[-1] for o in chosen.eval()(torch.randn(1, 3, 64, 64))] == [16, 4]


@pytest.mark.parametrize('rescales, message', [
    ((2, 1), 'one rescale per out index'), ((1, 2, 0.5), 'from the finest'),
    ((3, 1, 0.5), 'distinct values of'), (None, 'exactly 4')])
def test_bad_pyramid_rescales(rescales, message):
    out_indices = (0, 1) if rescales is None else (0, 1, 2)
    with pytest.raises(ValueError, match=message):
        plainvit(out_indices=out_indices, rescale_to_pyramid=True, pyramid_rescales=rescales)


# ---------------------------------------------------------------------------- unread outputs
def test_unread_pyramid_level_raises_at_the_first_backward():
    model = plainvit(out_indices=(0, 1, 2, 3), rescale_to_pyramid=True).train()
    outs = model(torch.randn(2, 3, 64, 64))
    with pytest.raises(ValueError, match=r'output 0 \(block 0, fpn1, stride 4\): 6 '
                                         r'\(fpn1\.0\.bias.*start_level=0'):
        sum(o.mean() for o in outs[1:]).backward()  # FPN start_level=1 skips level 0
    read_all = plainvit(out_indices=(0, 1, 2, 3), rescale_to_pyramid=True).train()
    sum(o.mean() for o in read_all(torch.randn(2, 3, 64, 64))).backward()
    assert read_all.fpn1[0].weight.grad is not None


def test_unread_outputs_without_own_parameters_pass():
    model = convvit(out_indices=(0, 1, 2, 3)).train()  # /32 by max-pooling: no parameters
    outs = model(torch.randn(1, 3, 64, 64))
    outs[2].mean().backward()
    conv = convvit(out_indices=(0, 1, 2, 3), out_level4='conv').train()
    with pytest.raises(ValueError, match=r'level 3 \(stride 32\): 2 \(level4_conv'):
        conv(torch.randn(1, 3, 64, 64))[2].mean().backward()


def test_parameters_no_output_uses_raise_at_the_first_training_forward():
    model = plainvit(out_indices=(1,))  # blocks 2-3 and the final norm feed nothing
    with torch.no_grad():
        model(torch.randn(1, 3, 64, 64))  # no gradient, nothing to check
    model.eval()(torch.randn(1, 3, 64, 64))
    with pytest.raises(ValueError, match=r'no output depends on .* \(blocks\.2\.'):
        model.train()(torch.randn(1, 3, 64, 64))


# ------------------------------------------------------------------------------ freezing
def _frozen(model):
    return {n for n, p in model.named_parameters() if not p.requires_grad}


def test_convvit_freezes_in_mm_numbering():
    assert _frozen(convvit(frozen_stages=-1)) == set()
    stem = convvit(frozen_stages=0)
    assert _frozen(stem) == {n for n, _ in stem.named_parameters()
                             if n.startswith('patch_embed1.')}
    two = convvit(frozen_stages=2).train()
    assert {n.split('.')[0] for n in _frozen(two)} == {'patch_embed1', 'blocks1',
                                                         'patch_embed2', 'blocks2'}
    assert not two.blocks2.training and two.blocks3.training
    assert two.pos_embed.requires_grad  # trainable by default, as mm's ViTs
    probe = convvit(frozen_stages=3, out_type='avg_featmap').train()
    assert not any(p.requires_grad for p in probe.parameters()) and not probe.fc_norm.training
    with pytest.raises(ValueError, match=r'frozen_stages must be in -1\.\.3'):
        convvit(frozen_stages=4)


# mmpretrain VisionTransformer names -> ours, applied in order
MMPRETRAIN_NAMES = ((r'^patch_embed\.projection\.', 'patch_embed.proj.'),
                    (r'^layers\.(\d+)\.ln([12])\.', r'blocks.\1.norm\2.'),
                    (r'\.ffn\.layers\.0\.0\.', '.mlp.fc1.'), (r'\.ffn\.layers\.1\.', '.mlp.fc2.'),
                    (r'^layers\.', 'blocks.'), (r'^ln1\.', 'norm.'), (r'^ln2\.', 'fc_norm.'))


def _our_name(name):
    for pattern, replacement in MMPRETRAIN_NAMES:
        name = re.sub(pattern, replacement, name)
    return name


@pytest.mark.parametrize('stages', [1, 4])
def test_plainvit_freezes_as_mmpretrain_vit(stages):
    """Same frozen parameters as mmpretrain's ViT (ours numbers block names the same way;
    at the full depth the final norms freeze too)."""
    from mmpretrain.models import VisionTransformer
    ref = VisionTransformer(arch=dict(embed_dims=64, num_layers=4, num_heads=2,
                                      feedforward_channels=128), img_size=64,
                            out_type='avg_featmap', frozen_stages=stages)
    ours = plainvit(out_type='avg_featmap', frozen_stages=stages).train()
    assert _frozen(ours) == {_our_name(n) for n in _frozen(ref)}
    assert ours.norm.training == (stages < 4) and ours.fc_norm.training == (stages < 4)


# ----------------------------------------------------------------------- ResNet-era options
def test_pretrained_maps_to_init_cfg_as_mmseg():
    with pytest.warns(UserWarning, match='pretrained is deprecated'):
        model = convvit(pretrained='ckpt.pth')
    assert model.init_cfg == dict(type='Pretrained', checkpoint='ckpt.pth')
    with pytest.raises(ValueError, match=r'set model\.pretrained=None'):
        convvit(pretrained='ckpt.pth', init_cfg=dict(type='Pretrained', checkpoint='ours.pth'))
    with pytest.raises(ValueError, match=r"'open-mmlab://resnet50_v1c', CNN weights .* "
                                         r'set model\.pretrained=None'):
        plainvit(pretrained='open-mmlab://resnet50_v1c')


def test_mmseg_segmentor_passes_model_pretrained_to_our_backbone():
    init_default_scope('mmseg')
    from mmseg.registry import MODELS as SEG_MODELS
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        seg = SEG_MODELS.build(ConfigDict(
            type='EncoderDecoder', pretrained='ours.pth',
            backbone=dict(type='PlainViT', arch=PLAIN, img_size=64, out_indices=(3, )),
            decode_head=dict(type='FCNHead', in_channels=64, channels=8, num_classes=2)))
    assert seg.backbone.init_cfg == dict(type='Pretrained', checkpoint='ours.pth')


def test_norm_eval_and_refused_options():
    model = plainvit(out_indices=(0, 1, 2, 3), rescale_to_pyramid=True, norm_eval=True).train()
    assert not model.fpn1[1].training and model.blocks.training
    with pytest.raises(TypeError, match=r'depth=50, an option of ResNet-style backbones .* '
                                        r'_delete_=True'):
        convvit(depth=50)
    with pytest.raises(TypeError, match=r"no option 'norm_cfg'|norm_cfg=.*ResNet"):
        plainvit(norm_cfg=dict(type='BN'))
    with pytest.raises(TypeError, match=r"no option 'out_indice'; did you mean 'out_indices'"):
        plainvit(out_indice=(3, ))


# ----------------------------------------------------------------------- output channels
@pytest.mark.parametrize('cfg, channels', [
    (dict(type='ConvViT', arch=CONV, out_indices=(0, 1, 2, 3)), [16, 32, 64, 64]),
    (dict(type='ConvViT', arch=CONV, out_indices=(1, 2, 3)), [32, 64, 64]),
    (dict(type='ConvViT', arch=CONV, out_type='avg_featmap'), [64]),
    (dict(type='PlainViT', arch=PLAIN, out_indices=(1, 2, 3), rescale_to_pyramid=True),
     [64] * 3),
    (dict(type='PlainViT', arch=PLAIN), [64]),
])
def test_out_channels_attribute_is_what_comes_out(cfg, channels):
    model = MODELS.build(dict(cfg, img_size=64)).eval()
    assert model.out_channels == channels == backbone_out_channels(cfg)
    with torch.no_grad():
        assert [o.shape[1] for o in model(torch.randn(1, 3, 64, 64))] == channels


# ---------------------------------------------------------------------------- config check
def _config(**model):
    return Config(dict(model=dict(type='EncoderDecoder', **model)))


@pytest.mark.parametrize('model, message', [
    (dict(backbone=dict(type='ConvViT', arch=CONV),
          neck=dict(type='FPN', in_channels=[16, 32, 64, 64], out_channels=8, num_outs=5)),
     r'model\.neck expects in_channels=\[16, 32, 64, 64\], but the ConvViT backbone gives 1 '
     r'maps with channels \[64\]'),
    (dict(backbone=dict(type='PlainViT', arch=PLAIN, out_indices=(1, 2, 3)),
          decode_head=dict(type='UPerHead', in_channels=[64] * 4, in_index=[0, 1, 2, 3])),
     r'model\.decode_head expects in_index=\[0, 1, 2, 3\]'),
    (dict(backbone=dict(type='PlainViT', arch=PLAIN, out_indices=(0, 1, 2, 3)),
          neck=dict(type='Feature2Pyramid', embed_dim=768, rescales=[4, 2, 1, 0.5])),
     r'model\.neck expects 4 maps of 768 channels'),
    (dict(backbone=dict(type='ConvViT', arch=CONV, out_indices=(0, 1, 2, 3)),
          decode_head=dict(type='UPerHead', in_channels=[16, 32, 64, 64], in_index=[0, 1, 2, 3]),
          auxiliary_head=dict(type='FCNHead', in_channels=64, in_index=1)),
     r'model\.auxiliary_head expects in_channels=64'),
])
def test_config_check_names_the_mismatch(model, message):
    with pytest.raises(ValueError, match=message):
        check_config(_config(**model))


def test_config_check_passes_matching_readers_and_other_backbones():
    check_config(_config(
        backbone=dict(type='PlainViT', arch=PLAIN, out_indices=(0, 1, 2, 3)),
        neck=dict(type='Feature2Pyramid', embed_dim=64, rescales=[4, 2, 1, 0.5]),
        decode_head=dict(type='UPerHead', in_channels=[64] * 4, in_index=[0, 1, 2, 3]),
        auxiliary_head=dict(type='FCNHead', in_channels=64, in_index=2)))
    check_config(_config(backbone=dict(type='ResNet', depth=50),
                         neck=dict(type='FPN', in_channels=[1, 2])))


# ------------------------------------------------------------------------------ layer decay
def _segmentor(backbone):
    init_default_scope('mmseg')
    from mmseg.registry import MODELS as SEG_MODELS
    return SEG_MODELS.build(dict(type='EncoderDecoder', backbone=backbone, decode_head=dict(
        type='FCNHead', in_channels=64, channels=8, num_classes=2)))


def _groups(model, constructor, paramwise_cfg):
    wrapper = build_optim_wrapper(model, dict(
        optimizer=dict(type='AdamW', lr=1.0, weight_decay=0.05), constructor=constructor,
        paramwise_cfg=paramwise_cfg))
    names = {id(p): n for n, p in model.named_parameters()}
    return {names[id(p)]: (g['lr'], g['weight_decay'])
            for g in wrapper.optimizer.param_groups for p in g['params']}


def _layer_of(name):
    """embed / block i / rest, from mmseg MAE names or ours."""
    match = re.match(r'backbone\.(?:layers|blocks)\.(\d+)\.', name)
    if match:
        return f'block{match.group(1)}'
    if name.startswith(('backbone.patch_embed', 'backbone.cls_token', 'backbone.pos_embed')):
        return 'embed'
    return 'rest'


def test_mmseg_paramwise_cfg_gives_mmseg_mae_scales():
    """mmseg's LearningRateDecayOptimizerConstructor on mmseg's own MAE, and ours on PlainViT
    with the same paramwise_cfg: the same lr per layer and weight decay per parameter kind."""
    paramwise_cfg = dict(num_layers=4, decay_rate=0.5, decay_type='layer_wise')
    mae = _segmentor(dict(type='MAE', img_size=64, embed_dims=64, num_layers=4, num_heads=2,
                          mlp_ratio=2, out_indices=(3, )))
    theirs = _groups(mae, 'LearningRateDecayOptimizerConstructor', dict(paramwise_cfg))
    vit = _segmentor(dict(type='PlainViT', arch=PLAIN, img_size=64, out_indices=(3, ),
                          use_rel_pos=True, with_cls_token=True, layer_scale_init=0.1))
    ours = _groups(vit, 'LayerDecayOptimWrapperConstructor', dict(paramwise_cfg))
    params = dict(mae.named_parameters()), dict(vit.named_parameters())

    def table(groups, named):
        rows = {}
        for name, (lr, wd) in groups.items():
            rows.setdefault((_layer_of(name), named[name].ndim == 1), set()).add((lr, wd))
        return rows
    expected = table(theirs, params[0])
    assert table(ours, params[1]) == expected
    assert expected[('block0', False)] == {(0.5 ** 4, 0.05)}  # num_layers 4: 0.5 ** (5 - 1)


def test_library_constructors_cannot_take_our_backbones_and_we_say_what_to_write():
    vit = _segmentor(dict(type='PlainViT', arch=PLAIN, img_size=64, out_indices=(3, )))
    for constructor in ('LayerDecayOptimizerConstructor', 'LearningRateDecayOptimizerConstructor'):
        paramwise_cfg = dict(num_layers=4, layer_decay_rate=0.5) \
            if constructor.startswith('LayerDecay') else dict(num_layers=4, decay_rate=0.5)
        with pytest.raises(NotImplementedError):  # mmseg keys on its classes' names
            _groups(vit, constructor, paramwise_cfg)
        cfg = _config(backbone=dict(type='PlainViT', arch=PLAIN, out_indices=(3, )))
        cfg.optim_wrapper = dict(constructor=constructor, paramwise_cfg=paramwise_cfg)
        with pytest.raises(ValueError, match=rf"^{constructor} \(mmseg.*\) assigns layer ids only "
                                             r".* write optim_wrapper\.constructor="
                                             r"'LayerDecayOptimWrapperConstructor'"):
            check_config(cfg)
    with pytest.raises(ValueError, match='num_layers=3 is fewer than the 4 transformer blocks'):
        _groups(vit, 'LayerDecayOptimWrapperConstructor', dict(num_layers=3, decay_rate=0.5))
    with pytest.raises(ValueError, match="decay_type 'stage_wise' is not supported"):
        _groups(vit, 'LayerDecayOptimWrapperConstructor',
                dict(num_layers=4, decay_rate=0.5, decay_type='stage_wise'))


@pytest.mark.parametrize('path', sorted(glob.glob(osp.join(ROOT, 'configs', '*', '*.py'))),
                         ids=lambda p: osp.relpath(p, osp.join(ROOT, 'configs')))
def test_shipped_recipes_pass_the_config_check(path):
    check_config(Config.fromfile(path))


def test_readme_channel_tables_are_the_families():
    text = open(osp.join(ROOT, 'README.md')).read()
    for family, n in ((CONVVIT, 4), (PLAINVIT, 3)):
        table = re.search(rf'\| {family.name} `(\w+)` \|(.*)\|\n\s*\|[-|]+\|\n\s*\|(.*)\|\n', text)
        archs = [table.group(1)] + re.findall(r'`(\w+)`', table.group(2))
        cells = [c.strip() for c in table.group(3).split('|')]
        assert sorted(map(family.canonical, archs)) == sorted(family.arch_zoo)
        for arch, cell in zip(archs, cells, strict=True):
            shown, _, repeat = cell.partition(' * ')
            shown = ast.literal_eval(shown) * (n if repeat == 'n' else 1)
            assert shown == family.out_channels(arch, range(n)), (family.name, arch)
