"""Computing ConvMAE stages 1-2 on the visible 16x16 blocks of a masked image only
(the skip-masked path; Gao et al. 2022, sec. 3.2 defines the masked convolution).

Block layout ("visible blocks"): a stage-s feature map of a masked image is kept as
``(B, L, r, r, C)``, the ``r x r`` positions (r = 16 for pixels, 4 at stage 1, 2 at stage 2,
1 at stage 3) of each of the L visible tokens of the stage-3 grid, in the order of ``ids_keep``.
Per-position operations (LayerNorm, 1x1 convolutions, MLP) act on the last dimension, and a
convolution whose kernel equals its stride and divides ``r`` is a Linear layer on regrouped
positions (:func:`strided_conv_blocks`). Only the 5x5 depthwise convolution mixes neighbouring
blocks (:func:`visible_depthwise_conv`).
"""
import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable


def map_to_blocks(x, ids_keep, block):
    """Cut a dense map into the r x r cells of the stage-3 grid and keep the visible ones.

    Args:
        x (Tensor): (B, C, H, W), H and W multiples of ``block``.
        ids_keep (Tensor): (B, L) long indices into the (H/block * W/block) cells, row-major.
        block (int): cell side r.

    Returns:
        Tensor: (B, L, r, r, C).

    The visible cells are read by indexing the (B, gh, r, gw, r, C) view of the map, which for
    a channels-last map (the convolutions' outputs here) copies only the visible cells.
    """
    b, c, h, w = x.shape
    gh, gw = h // block, w // block
    cells = x.permute(0, 2, 3, 1).reshape(b, gh, block, gw, block, c)
    batch = torch.arange(b, device=x.device)[:, None]
    return cells[batch, ids_keep // gw, :, ids_keep % gw]


def blocks_to_map(x, ids_keep, grid_hw, pad=0):
    """Inverse of :func:`map_to_blocks`: a dense (B, C, gh*r, gw*r) map, zero at masked cells
    (and in a ``pad``-wide border around it when ``pad`` > 0).

    The visible cells are written into the (B, gh, r, gw, r, C) view of a zero map, so the map
    comes out channels-last (NHWC memory, NCHW shape) without a permuting copy; the depthwise
    convolution that consumes it runs several times faster in that layout on CPU, its
    backward above all.

    Args:
        x (Tensor): (B, L, r, r, C) visible blocks.
        ids_keep (Tensor): (B, L) their cell indices.
        grid_hw (tuple[int, int]): stage-3 grid (gh, gw).
        pad (int): width of the zero border.
    """
    b, _, r, _, c = x.shape
    gh, gw = grid_hw
    cells = x.new_zeros(b, gh * r + 2 * pad, gw * r + 2 * pad, c)
    inner = cells[:, pad:pad + gh * r, pad:pad + gw * r].view(b, gh, r, gw, r, c)
    batch = torch.arange(b, device=x.device)[:, None]
    inner[batch, ids_keep // gw, :, ids_keep % gw] = x
    return cells.permute(0, 3, 1, 2)


def pointwise(conv, x):
    """A 1x1 convolution of visible blocks: (B, L, r, r, C_in) -> (B, L, r, r, C_out).

    It runs as a convolution, as in the dense path and the official code, of a channels-last
    (B, C_in, L*r, r) view of the blocks (no copy in or out). On CPU, oneDNN's convolution
    computes the stage-1/2 shapes at about twice the rate of the MKL matmul behind
    ``F.linear`` (fwd + bwd, measured with ``tools/analysis/speed.py``).
    """
    b, n, r, _, c = x.shape
    out = F.conv2d(x.reshape(b, n * r, r, c).permute(0, 3, 1, 2), conv.weight, conv.bias)
    return out.permute(0, 2, 3, 1).reshape(b, n, r, r, -1)


def strided_conv_blocks(conv, x):
    """A convolution with kernel = stride = k (no padding) on visible blocks.

    Args:
        conv (nn.Conv2d): weight (C_out, C_in, k, k).
        x (Tensor): (B, L, r, r, C_in), k divides r.

    Returns:
        Tensor: (B, L, r/k, r/k, C_out), equal to the convolution of the dense map at the
        visible cells.
    """
    b, n, r, _, c = x.shape
    k = conv.kernel_size[0]
    x = x.reshape(b, n, r // k, k, r // k, k, c).permute(0, 1, 2, 4, 6, 3, 5)
    return F.linear(x.flatten(4), conv.weight.flatten(1), conv.bias)


def halo_blocks(x, ids_keep, grid_hw, pad):
    """Every visible cell with a ``pad``-wide border read from the zero-filled map.

    Args:
        x (Tensor): (B, L, r, r, C) visible blocks.
        ids_keep (Tensor): (B, L) their cell indices.
        grid_hw (tuple[int, int]): stage-3 grid (gh, gw).
        pad (int): border width.

    Returns:
        Tensor: (B * L, C, r + 2 pad, r + 2 pad), channels-last memory.
    """
    b, n, r, _, c = x.shape
    gw = grid_hw[1]
    padded = blocks_to_map(x, ids_keep, grid_hw, pad).permute(0, 2, 3, 1)
    side, width = r + 2 * pad, padded.shape[2]
    batch = torch.arange(b, device=x.device)[:, None]
    offsets = torch.arange(side, device=x.device)
    rows = (ids_keep // gw * r)[..., None, None] + offsets[:, None]
    cols = (ids_keep % gw * r)[..., None, None] + offsets
    cells = padded.flatten(1, 2)[batch, (rows * width + cols).flatten(1)]
    return cells.view(b * n, side, side, c).permute(0, 3, 1, 2)


class VisibleDepthwiseConv(torch.autograd.Function):
    """Depthwise convolution of the zero-filled map, read at the visible cells.

    Forward: the dense map of :func:`blocks_to_map`, one convolution, the visible cells of
    the result. Only the visible blocks are saved for backward, not the dense map (4x their
    size at 75 % masking). Backward: the input gradient is the convolution of the zero-filled
    output-gradient map with the flipped kernel; the weight gradient only needs the
    positions whose output gradient is non-zero, i.e. the visible cells, so when the cells
    with their halo (:func:`halo_blocks`) cover no more area than the dense map it is
    computed on them: at stage 1 of ConvMAE-B (r = 4, 5x5 kernel, 75 % masking) both areas
    are equal and the halo layout is several times faster on CPU (README, Speed and memory).
    """

    @staticmethod
    def forward(ctx, x, weight, bias, ids_keep, grid_hw, padding):
        """(B, L, r, r, C) visible blocks -> (B, L, r, r, C) convolved visible blocks."""
        ctx.save_for_backward(x, weight, ids_keep)
        ctx.grid_hw, ctx.padding, ctx.has_bias = grid_hw, padding, bias is not None
        weight, bias = weight.to(x.dtype), None if bias is None else bias.to(x.dtype)
        dense = F.conv2d(blocks_to_map(x, ids_keep, grid_hw), weight, bias,
                         padding=padding, groups=x.shape[-1])
        return map_to_blocks(dense, ids_keep, x.shape[2])

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        x, weight, ids_keep = ctx.saved_tensors
        _, n, r, _, c = x.shape
        (gh, gw), pad = ctx.grid_hw, ctx.padding
        w = weight.to(grad.dtype)
        grad_x = grad_w = grad_b = None
        grad_map = blocks_to_map(grad, ids_keep, ctx.grid_hw)
        if ctx.needs_input_grad[0]:
            grad_x = map_to_blocks(
                F.conv2d(grad_map, w.flip(-2, -1), padding=pad, groups=c), ids_keep, r)
        if ctx.needs_input_grad[1]:
            if (r + 2 * pad) ** 2 * n <= gh * gw * r * r:
                inputs = halo_blocks(x.to(grad.dtype), ids_keep, ctx.grid_hw, pad)
                grad_out, conv_pad = grad.flatten(0, 1).permute(0, 3, 1, 2), 0
            else:
                inputs = blocks_to_map(x.to(grad.dtype), ids_keep, ctx.grid_hw)
                grad_out, conv_pad = grad_map, pad
            grad_w = torch.ops.aten.convolution_backward(
                grad_out, inputs, w, None, [1, 1], [conv_pad, conv_pad], [1, 1], False,
                [0, 0], c, [False, True, False])[1].to(weight.dtype)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad.sum((0, 1, 2, 3)).to(weight.dtype)
        return grad_x, grad_w, grad_b, None, None, None


def visible_depthwise_conv(conv, x, ids_keep, grid_hw):
    """``conv`` (a stride-1 depthwise ``nn.Conv2d`` with odd kernel and 'same' padding) on
    the zero-filled map of the visible blocks, read at the visible cells.

    Args:
        conv (nn.Conv2d): weight (C, 1, k, k), padding (k - 1) / 2.
        x (Tensor): (B, L, r, r, C) visible blocks.
        ids_keep (Tensor): (B, L) their cell indices.
        grid_hw (tuple[int, int]): stage-3 grid (gh, gw).

    Returns:
        Tensor: (B, L, r, r, C), equal to ``map_to_blocks(conv(blocks_to_map(x)))``.
    """
    return VisibleDepthwiseConv.apply(x, conv.weight, conv.bias, ids_keep, tuple(grid_hw),
                                      conv.padding[0])


