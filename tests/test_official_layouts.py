"""Relative position forms, dense-output options, and the official fine-tuned checkpoint
layouts (detectron2 ``model_final.pth``, mmseg ``state_dict``) loading into our backbones."""

import pytest
import torch

from mixedconv.models.backbones import ConvViT, PlainViT
from mixedconv.models.layers import DecomposedRelPos

TINY_CONV = dict(embed_dims=(16, 24, 32), depths=(1, 1, 4), num_heads=2, mlp_ratios=(2, 2, 2))
TINY_VIT = dict(embed_dim=32, depth=4, num_heads=2)


def randomize_(model, seed=0):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.rand(param.shape, generator=gen) * 0.2 - 0.1)
    return model


@pytest.mark.parametrize('mask_kind', ['float', 'bool', None])
def test_attend_equals_sdpa_in_values_and_gradients(mask_kind, monkeypatch):
    """On CPU a float mask takes the explicit path (SDPA is not called), boolean and absent
    masks the fused kernel; all give SDPA's values and gradients."""
    import torch.nn.functional as F

    from mixedconv.models.layers.attention import attend
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 10, 8, generator=gen, requires_grad=True) for _ in range(3))
    mask = {'float': torch.randn(1, 3, 10, 10, generator=gen, requires_grad=True),
            'bool': torch.rand(1, 1, 10, 10, generator=gen) > 0.3, None: None}[mask_kind]
    if mask_kind == 'bool':
        mask[..., 0] = True  # no fully masked row
    inputs = [t for t in (q, k, v, mask) if t is not None and t.requires_grad]
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    expected_grads = torch.autograd.grad(expected.square().sum(), inputs)
    calls = []
    sdpa = F.scaled_dot_product_attention
    monkeypatch.setattr(F, 'scaled_dot_product_attention',
                        lambda *a, **kw: calls.append(1) or sdpa(*a, **kw))
    out = attend(q, k, v, mask)
    grads = torch.autograd.grad(out.square().sum(), inputs)
    assert bool(calls) == (mask_kind != 'float')
    torch.testing.assert_close(out, expected)
    for ours, theirs in zip(grads, expected_grads):
        torch.testing.assert_close(ours, theirs)


def test_attention_equals_timm_and_stacks_qkv_gradients_without_a_copy():
    """Same values and gradients as timm's ViT attention with the same weights; our backward
    stacks the q, k, v gradients straight into the projection's layout, where timm's (heads
    split from a permuted view) needs a contiguous copy of the stacked gradient."""
    from timm.models.vision_transformer import Attention as TimmAttention

    from mixedconv.models.layers import Attention
    from op_counter import OpCounter

    ours = randomize_(Attention(32, 4))
    theirs = TimmAttention(32, 4, qkv_bias=True)
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(2, 10, 32, generator=torch.Generator().manual_seed(0))
    runs = []
    for model in (ours, theirs):
        inp = x.clone().requires_grad_()
        out = model(inp)
        with OpCounter() as ops:
            out.square().sum().backward()
        runs.append((out, inp.grad, model.qkv.weight.grad, ops.counts))
    (out, grad, wgrad, ops), (ref, ref_grad, ref_wgrad, ref_ops) = runs
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(grad, ref_grad)
    torch.testing.assert_close(wgrad, ref_wgrad)
    clone = torch.ops.aten.clone.default
    assert ref_ops[clone] == 1 and ops[clone] == 0
    assert ops[torch.ops.aten.stack.default] == 1


def test_decomposed_rel_pos_equals_direct_per_query_computation():
    h, w, c = 3, 4, 5
    rel = DecomposedRelPos(c, (h, w))
    with torch.no_grad():
        rel.rel_pos_h.normal_()
        rel.rel_pos_w.normal_()
    q = torch.randn(2, 3, h * w, c)
    bias = rel((h, w), q)
    direct = torch.zeros(2, 3, h * w, h * w)
    for i in range(h):
        for j in range(w):
            for k in range(h):
                for m in range(w):
                    qv = q[:, :, i * w + j]
                    direct[:, :, i * w + j, k * w + m] = (
                        qv @ rel.rel_pos_h[i - k + h - 1] + qv @ rel.rel_pos_w[j - m + w - 1])
    torch.testing.assert_close(bias, direct, atol=1e-5, rtol=1e-5)


def test_shared_tables_are_one_parameter_each():
    model = ConvViT(TINY_CONV, img_size=128, window_size=4, global_blocks=(0, 3),
                    rel_pos_type='shared')
    names = [n for n, _ in model.named_parameters() if 'relative_position_bias_table' in n]
    assert names == ['windowed_rel_pos_bias.relative_position_bias_table',
                     'global_rel_pos_bias.relative_position_bias_table']
    refs = [blk.attn.rel_pos.module for blk in model.blocks3]
    assert refs[0] is refs[3] is model.global_rel_pos_bias
    assert refs[1] is refs[2] is model.windowed_rel_pos_bias


def test_official_level4_conv_output_size():
    model = ConvViT(TINY_CONV, img_size=512, out_indices=(3,), out_level4='conv',
                    level4_cfg=dict(padding=0, norm_cfg=dict(type='BN'),
                                    act_cfg=dict(type='GELU'))).eval()
    out, = model(torch.zeros(1, 3, 512, 512))
    assert out.shape == (1, 32, 15, 15)


@pytest.mark.parametrize('cls', [ConvViT, PlainViT])
def test_final_norm_off_returns_the_raw_block_output(cls):
    arch = TINY_CONV if cls is ConvViT else TINY_VIT
    kwargs = dict(out_indices=(2,)) if cls is ConvViT else dict(out_indices=(3,))
    model = randomize_(cls(arch, img_size=64, final_norm=False, **kwargs)).eval()
    blocks = model.blocks3 if cls is ConvViT else model.blocks
    seen = []
    blocks[-1].register_forward_hook(lambda mod, args, out: seen.append(out))
    out, = model(torch.randn(1, 3, 64, 64))
    raw = seen[0][:, -16:]
    torch.testing.assert_close(out, raw.transpose(1, 2).reshape(1, 32, 4, 4))
    assert not hasattr(model, 'norm')


# our names -> the official checkpoint's (the inverse of the loader's renames), per layout
from layouts import _mmseg_mae_names, _seg_names, _vitdet_names  # noqa: E402


LAYOUTS = {
    # ConvMAE DET (detectron2 FPN): backbone.bottom_up., shared tables, index buffers
    'convmae_det_fpn': (ConvViT, dict(arch=TINY_CONV, img_size=128, out_indices=(0, 1, 2, 3),
                                      window_size=4, global_blocks=(0, 3),
                                      rel_pos_type='shared', final_norm=False),
                        'model', 'backbone.bottom_up.', lambda k: k,
                        {'windowed_rel_pos_bias.relative_position_index': (256, 256)}),
    # ConvMAE SEG (mmseg 0.x): backbone., gamma_1/2, per-block tables, fpn.0/fpn.1
    'convmae_seg': (ConvViT, dict(arch=TINY_CONV, img_size=128, out_indices=(0, 1, 2, 3),
                                  out_level4='conv', rel_pos_type='bias', final_norm=False,
                                  layer_scale_init=1.0, norm_eps=1e-5,
                                  level4_cfg=dict(padding=0, norm_cfg=dict(type='BN'),
                                                  act_cfg=dict(type='GELU'))),
                    'state_dict', 'backbone.', _seg_names,
                    {'blocks3.0.attn.relative_position_index': (64, 64)}),
    # Official-ConvMAE-Det (detectron2 ViTDet): backbone.net., decomposed tables
    'convmae_vitdet': (ConvViT, dict(arch=TINY_CONV, img_size=128, window_size=3,
                                     global_blocks=(1,), rel_pos_type='decomposed',
                                     final_norm=False, pretrain_img_size=224,
                                     learnable_pos_embed=True, cblock_norm_eps=1e-6),
                       'model', 'backbone.net.', _vitdet_names, {}),
    # detectron2 ViTDet ViT: backbone.net., decomposed tables, class row in pos_embed
    'd2_vit': (PlainViT, dict(arch=TINY_VIT, img_size=128, out_indices=(3,), window_size=3,
                              global_blocks=(1,), rel_pos_type='decomposed', final_norm=False,
                              pretrain_img_size=224),
               'model', 'backbone.net.', _vitdet_names, {}),
    # mmseg MAE: backbone., mmseg names, class token with BEiT's extra table rows
    'mmseg_mae': (PlainViT, dict(arch=TINY_VIT, img_size=128, out_indices=(1, 3),
                                 rel_pos_type='bias', with_cls_token=True, final_norm=False,
                                 layer_scale_init=1.0),
                  'state_dict', 'backbone.', _mmseg_mae_names,
                  {'layers.0.attn.relative_position_index': (65, 65)}),
}


@pytest.mark.parametrize('layout', sorted(LAYOUTS))
def test_official_finetuned_layout_loads_everything(layout, tmp_path):
    cls, kwargs, wrapper, prefix, rename, buffers = LAYOUTS[layout]
    source = randomize_(cls(**kwargs), seed=1).eval()
    state = {prefix + rename(k): v for k, v in source.state_dict().items()}
    if layout == 'd2_vit':  # detectron2 keeps the pretraining class row of pos_embed
        pos = state[prefix + 'pos_embed']
        state[prefix + 'pos_embed'] = torch.cat([torch.zeros_like(pos[:, :1]), pos], 1)
    for name, shape in buffers.items():
        state[prefix + name] = torch.zeros(shape, dtype=torch.long)
    state['roi_heads.box_predictor.cls_score.weight'] = torch.zeros(4, 8)
    checkpoint = {wrapper: state, 'iteration': 7} if wrapper == 'model' else \
        {'state_dict': state, 'meta': {}, 'optimizer': {}}
    path = tmp_path / 'model_final.pth'
    torch.save(checkpoint, path)

    model = cls(**kwargs, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    report = model.load_report
    assert report.unexpected == [] and report.missing == [] and report.mismatched == []
    assert report.fresh == [] and report.skipped == 1 + len(buffers)
    model.eval()
    x = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        for ours, theirs in zip(model(x), source(x)):
            torch.testing.assert_close(ours, theirs)


def test_mmseg_feature2pyramid_neck_loads_into_the_folded_pyramid(tmp_path):
    """mmseg's MAE UperNet keeps the pyramid in its ``Feature2Pyramid`` neck; our PlainViT
    builds it itself (``rescale_to_pyramid``) and takes those tensors from ``neck.``."""
    from mmseg.models.necks import Feature2Pyramid
    kwargs = dict(arch=TINY_VIT, img_size=64, out_indices=(0, 1, 2, 3), final_norm=False)
    source = randomize_(PlainViT(**kwargs), seed=2).eval()
    neck = randomize_(Feature2Pyramid(32, rescales=[4, 2, 1, 0.5],
                                      norm_cfg=dict(type='BN')), seed=3).eval()
    state = {'backbone.' + _mmseg_mae_names(k): v for k, v in source.state_dict().items()}
    state.update({'neck.' + k: v for k, v in neck.state_dict().items()})
    state['decode_head.conv_seg.weight'] = torch.zeros(4, 8, 1, 1)
    path = tmp_path / 'iter_160000.pth'
    torch.save({'meta': {}, 'state_dict': state}, path)

    model = PlainViT(**kwargs, rescale_to_pyramid=True, pyramid_norm_cfg=dict(type='BN'),
                     init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    report = model.load_report
    assert report.fresh == [] and report.missing == [] and report.unexpected == []
    assert report.skipped == 1
    model.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = neck(source(x))
        for ours, theirs in zip(model(x), expected, strict=True):
            torch.testing.assert_close(ours, theirs)


def test_untaken_transfer_tensor_is_an_error(tmp_path):
    source = ConvViT(TINY_CONV, img_size=64, rel_pos_type='bias', layer_scale_init=1.0)
    path = tmp_path / 'ckpt.pth'
    torch.save({'state_dict': {'backbone.' + _seg_names(k): v
                               for k, v in source.state_dict().items()}}, path)
    model = ConvViT(TINY_CONV, img_size=64, init_cfg=dict(type='Pretrained',
                                                          checkpoint=str(path)))
    with pytest.raises(RuntimeError, match='could not take'):
        model.init_weights()


def test_plain_vit_rel_pos_table_of_another_grid_is_resized(tmp_path):
    source = PlainViT(TINY_VIT, img_size=32, rel_pos_type='bias')
    with torch.no_grad():
        source.blocks[0].attn.rel_pos.relative_position_bias_table.normal_()
    path = tmp_path / 'ckpt.pth'
    torch.save({'model': source.state_dict()}, path)
    model = PlainViT(TINY_VIT, img_size=64, rel_pos_type='bias',
                     init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    table = model.blocks[0].attn.rel_pos.relative_position_bias_table
    assert table.shape == (49, 2) and table.abs().sum() > 0
    assert model.load_report.mismatched == []


@pytest.mark.parametrize('cls', [ConvViT, PlainViT])
def test_short_and_long_arch_names(cls):
    short, long = cls('b', img_size=32), cls('base', img_size=32)
    assert {k: v.shape for k, v in short.state_dict().items()} == \
        {k: v.shape for k, v in long.state_dict().items()}


@pytest.mark.parametrize('cls, kwargs, message', [
    (ConvViT, dict(arch=TINY_CONV, rel_pos_type='table'), 'rel_pos_type must be one of'),
    (PlainViT, dict(arch=TINY_VIT, rel_pos_type='table'), 'rel_pos_type must be one of'),
    (ConvViT, dict(arch=TINY_CONV, out_indices=(2,), level4_cfg=dict(padding=0)),
     'level4_cfg configures'),
    (PlainViT, dict(arch=TINY_VIT, window_size=2, with_cls_token=True), 'with_cls_token=False'),
    (PlainViT, dict(arch=TINY_VIT, rel_pos_type='decomposed', with_cls_token=True),
     'with_cls_token=False'),
])
def test_bad_transfer_options_are_named(cls, kwargs, message):
    with pytest.raises(ValueError, match=message):
        cls(img_size=64, **kwargs)
