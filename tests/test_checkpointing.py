"""Activation checkpointing modes of ``run_blocks``: ``'elementwise'`` recomputes norms,
activations and the depthwise convolution in backward but no matmul and no attention, and
changes no gradient; it is the default of ConvViT's skip-masked stages 1-2."""
import pytest
import torch

from mixedconv.models.backbones import ConvViT, PlainViT
from mixedconv.models.selfsup import random_masking
from mixedconv.registry import MODELS
from op_counter import OpCounter

aten = torch.ops.aten
MATMULS = (aten.mm.default, aten.addmm.default)
CONVVIT = dict(embed_dims=(16, 32, 64), depths=(1, 2, 2), num_heads=2, mlp_ratios=(2, 2, 2))


def backward_ops(model, outputs):
    """Ops run by the backward of ``sum(mean(o ** 2))``, and the parameter gradients."""
    with OpCounter() as ops:
        sum(o.square().mean() for o in outputs).backward()
    grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    model.zero_grad()
    return ops.counts, grads


def assert_same_grads(grads, reference):
    assert len(grads) == len(reference) > 0
    for a, b in zip(grads, reference):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_convvit_skip_path_recomputes_elementwise_work_only():
    """Default (with_cp=None): stages 1-2 of the skip path keep matmul outputs and recompute
    GELU and the depthwise convolution in backward."""
    torch.manual_seed(0)
    model = MODELS.build(dict(type='ConvMAE', backbone=dict(type='ConvViT', arch=CONVVIT,
                                                            img_size=64),
                              neck=dict(type='ReconstructionDecoder', embed_dim=32, depth=1,
                                        num_heads=2))).train()
    imgs = torch.randn(2, 3, 64, 96)
    ids_keep, _, _ = random_masking(2, 24, 0.6, generator=torch.Generator().manual_seed(2))
    runs = {}
    for with_cp in (None, False, True):
        model.backbone.with_cp = with_cp
        runs[with_cp] = backward_ops(model, model.backbone.forward_masked(imgs, ids_keep))
    (lean, lean_grads), (plain, plain_grads), (full, _) = runs[None], runs[False], runs[True]
    assert_same_grads(lean_grads, plain_grads)
    blocks12 = sum(CONVVIT['depths'][:2])
    assert plain[aten.gelu.default] == 0
    assert lean[aten.gelu.default] == blocks12  # one MLP per stage-1/2 block, recomputed
    conv = aten.convolution.default  # the depthwise convolution's forward, recomputed
    assert lean[conv] == plain[conv] + blocks12
    assert sum(lean[op] for op in MATMULS) == sum(plain[op] for op in MATMULS)
    assert sum(full[op] for op in MATMULS) > sum(plain[op] for op in MATMULS)


def test_skip_path_mode_is_a_named_option():
    """``skip_path_cp`` sets stages 1-2 of the skip path while ``with_cp`` is None; an
    explicit ``with_cp`` applies to them too."""
    torch.manual_seed(0)
    imgs = torch.randn(2, 3, 64, 64)
    ids_keep, _, _ = random_masking(2, 16, 0.6, generator=torch.Generator().manual_seed(2))
    gelus = {}
    for with_cp, skip_path_cp in ((None, False), (None, 'elementwise'), (False, 'elementwise')):
        model = ConvViT(arch=CONVVIT, img_size=64, skip_path_cp=skip_path_cp).train()
        model.with_cp = with_cp
        ops, _ = backward_ops(model, model.forward_masked(imgs, ids_keep))
        gelus[with_cp, skip_path_cp] = ops[aten.gelu.default]
    assert gelus == {(None, False): 0, (None, 'elementwise'): sum(CONVVIT['depths'][:2]),
                     (False, 'elementwise'): 0}
    with pytest.raises(ValueError, match="one of False, True, 'elementwise', got None"):
        ConvViT(arch=CONVVIT, img_size=64, skip_path_cp=None)


def test_elementwise_mode_keeps_attention_outputs():
    torch.manual_seed(0)
    vit = PlainViT(arch=dict(embed_dim=64, depth=2, num_heads=2), img_size=64).train()
    x = torch.randn(2, 3, 64, 64)
    runs = {}
    for with_cp in (False, 'elementwise', True):
        vit.with_cp = with_cp
        runs[with_cp] = backward_ops(vit, vit(x))
    (plain, plain_grads), (lean, lean_grads), (full, _) = (
        runs[False], runs['elementwise'], runs[True])
    assert_same_grads(lean_grads, plain_grads)
    attention = [op for op in full if 'attention' in str(op) and 'backward' not in str(op)]
    assert attention, 'the full recompute reruns the attention kernel'
    assert not any(lean[op] for op in attention)
    assert lean[aten.gelu.default] == 2 and lean[aten.native_layer_norm.default] == 4
    assert sum(lean[op] for op in MATMULS) == sum(plain[op] for op in MATMULS)


def test_with_cp_values_are_checked():
    with pytest.raises(ValueError, match="one of None, False, True, 'elementwise', got 'all'"):
        ConvViT(arch=CONVVIT, img_size=64, with_cp='all')
    with pytest.raises(ValueError, match="one of False, True, 'elementwise', got None"):
        PlainViT(arch=dict(embed_dim=64, depth=2, num_heads=2), img_size=64, with_cp=None)
    with pytest.raises(ValueError, match="got 1"):
        PlainViT(arch=dict(embed_dim=64, depth=2, num_heads=2), img_size=64, with_cp=1)
