"""The visible-block helpers of ConvMAE's skip-masked path: layout round trips, the halo
cells, and the depthwise convolution on visible blocks against the dense reference."""
import pytest
import torch
import torch.nn.functional as F

from mixedconv.models.layers import blocks_to_map, map_to_blocks, visible_depthwise_conv
from mixedconv.models.layers.visible_blocks import VisibleDepthwiseConv, halo_blocks

GRID = (3, 4)


def visible_ids(batch, visible, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, GRID[0] * GRID[1], generator=g).argsort(1)[:, :visible]


def dense_reference(x, weight, bias, ids_keep):
    """The masked convolution as the dense path computes it."""
    out = F.conv2d(blocks_to_map(x, ids_keep, GRID), weight, bias,
                   padding=weight.shape[-1] // 2, groups=x.shape[-1])
    return map_to_blocks(out, ids_keep, x.shape[2])


def test_map_round_trip_is_channels_last_and_zero_at_masked_cells():
    ids = visible_ids(2, 5)
    x = torch.randn(2, 5, 4, 4, 3)
    dense = blocks_to_map(x, ids, GRID)
    assert dense.shape == (2, 3, 12, 16)
    assert dense.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(map_to_blocks(dense, ids, 4), x)
    masked = torch.ones(2, 12, dtype=torch.bool).scatter(1, ids, False).view(2, 1, 3, 1, 4, 1)
    masked = masked.expand(2, 3, 3, 4, 4, 4).reshape(2, 3, 12, 16)
    assert dense[masked].abs().max() == 0 and dense[~masked].abs().min() > 0


def test_halo_blocks_are_the_padded_map_around_each_cell():
    ids = visible_ids(2, 5)
    x = torch.randn(2, 5, 4, 4, 3)
    halos = halo_blocks(x, ids, GRID, pad=2)
    assert halos.shape == (10, 3, 8, 8)
    padded = F.pad(blocks_to_map(x, ids, GRID), (2, 2, 2, 2))
    for b in range(2):
        for i, cell in enumerate(ids[b].tolist()):
            cy, cx = divmod(cell, GRID[1])
            torch.testing.assert_close(halos[b * 5 + i],
                                       padded[b, :, 4 * cy:4 * cy + 8, 4 * cx:4 * cx + 8],
                                       rtol=0, atol=0)


# r = 4 with 3 of 12 cells visible takes the halo branch for the weight gradient (halo area
# 3 * 8 * 8 equals the map's 12 * 4 * 4), the others the dense-map branch
@pytest.mark.parametrize('r,visible', [(4, 3), (4, 9), (2, 3), (1, 6)])
@pytest.mark.parametrize('with_bias', [True, False])
def test_visible_depthwise_conv_matches_the_dense_masked_convolution(r, visible, with_bias):
    torch.manual_seed(0)
    ids = visible_ids(2, visible)
    x = torch.randn(2, visible, r, r, 4, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(4, 1, 5, 5, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(4, dtype=torch.float64, requires_grad=True) if with_bias else None
    inputs = (x, weight) + ((bias,) if with_bias else ())

    def ours(x, weight, bias=None):
        return VisibleDepthwiseConv.apply(x, weight, bias, ids, GRID, 2)

    torch.testing.assert_close(ours(*inputs), dense_reference(x, weight, bias, ids))
    assert torch.autograd.gradcheck(ours, inputs)
    grad = torch.randn(2, visible, r, r, 4, dtype=torch.float64)
    expected = torch.autograd.grad(dense_reference(x, weight, bias, ids), inputs, grad)
    for a, b in zip(torch.autograd.grad(ours(*inputs), inputs, grad), expected):
        torch.testing.assert_close(a, b)


def test_only_visible_sized_tensors_are_saved_for_backward():
    """The dense zero-filled map (4x the visible blocks at 75 % masking) is not kept."""
    conv = torch.nn.Conv2d(8, 8, 5, padding=2, groups=8)
    ids = visible_ids(2, 3)
    x = torch.randn(2, 3, 4, 4, 8, requires_grad=True)
    saved = []

    def pack(t):
        saved.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = visible_depthwise_conv(conv, x, ids, GRID)
    assert max(saved) == x.numel()
    out.sum().backward()
    assert x.grad is not None and conv.weight.grad is not None and conv.bias.grad is not None


def test_frozen_weights_get_no_gradient():
    conv = torch.nn.Conv2d(8, 8, 5, padding=2, groups=8).requires_grad_(False)
    x = torch.randn(2, 3, 4, 4, 8, requires_grad=True)
    visible_depthwise_conv(conv, x, visible_ids(2, 3), GRID).sum().backward()
    assert x.grad.abs().sum() > 0 and conv.weight.grad is None


def test_bfloat16_blocks_with_float32_weights():
    """Autocast feeds bf16 activations with fp32 parameters: gradients keep each input's dtype."""
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(8, 8, 5, padding=2, groups=8)
    ids = visible_ids(2, 3)
    x = torch.randn(2, 3, 4, 4, 8).bfloat16().requires_grad_()
    out = visible_depthwise_conv(conv, x, ids, GRID)
    assert out.dtype == torch.bfloat16
    out.float().square().sum().backward()
    assert x.grad.dtype == torch.bfloat16 and conv.weight.grad.dtype == torch.float32
    reference = dense_reference(x.detach().float(), conv.weight.detach(), conv.bias.detach(), ids)
    torch.testing.assert_close(out.float(), reference, atol=0.1, rtol=0.05)
