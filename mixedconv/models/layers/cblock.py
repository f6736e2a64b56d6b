"""The convolution block of ConvMAE stages 1-2 (Gao et al. 2022, sec. 3.1) and the helpers that
run it on the visible 16x16 blocks of a masked image only.

Block layout ("visible blocks"): a stage-s feature map of a masked image is kept as
``(B, L, r, r, C)``, the ``r x r`` positions (r = 16 for pixels, 4 at stage 1, 2 at stage 2,
1 at stage 3) of each of the L visible tokens of the stage-3 grid, in the order of ``ids_keep``.
Per-position operations (LayerNorm, 1x1 convolutions, MLP) act on the last dimension, and a
convolution whose kernel equals its stride and divides ``r`` is a Linear layer on regrouped
positions (:func:`strided_conv_blocks`). Only the 5x5 depthwise convolution mixes neighbouring
blocks; it runs on a dense map that is zero at masked positions (:func:`blocks_to_map`).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import DropPath, Mlp


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


def blocks_to_map(x, ids_keep, grid_hw):
    """Inverse of :func:`map_to_blocks`: a dense (B, C, gh*r, gw*r) map, zero at masked cells.

    The visible cells are written into the (B, gh, r, gw, r, C) view of a zero map, so the map
    comes out channels-last (NHWC memory, NCHW shape) without a permuting copy; the depthwise
    convolution that consumes it runs several times faster in that layout on CPU, its
    backward above all.

    Args:
        x (Tensor): (B, L, r, r, C) visible blocks.
        ids_keep (Tensor): (B, L) their cell indices.
        grid_hw (tuple[int, int]): stage-3 grid (gh, gw).
    """
    b, _, r, _, c = x.shape
    gh, gw = grid_hw
    cells = x.new_zeros(b, gh, r, gw, r, c)
    batch = torch.arange(b, device=x.device)[:, None]
    cells[batch, ids_keep // gw, :, ids_keep % gw] = x
    return cells.view(b, gh * r, gw * r, c).permute(0, 3, 1, 2)


def pointwise(conv, x):
    """A 1x1 convolution applied to channels-last features (..., C_in) -> (..., C_out)."""
    return F.linear(x, conv.weight.flatten(1), conv.bias)


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


def channels_last_norm(norm, x):
    """Apply a LayerNorm over the channels of a (B, C, H, W) map."""
    return norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class CBlock(nn.Module):
    """ConvMAE convolution block (pre-norm, two residual branches)::

        x = x + drop_path(conv2(attn(m * conv1(norm1(x)))))
        x = x + drop_path(mlp(norm2(x)))

    ``attn`` is a 5x5 depthwise convolution (the name used by the official checkpoints),
    ``conv1``/``conv2`` and the MLP's ``fc1``/``fc2`` are 1x1 convolutions (4-D weights) and
    ``m`` is the keep-mask of masked convolution (pretraining only): it zeroes the masked
    positions before the only operation that mixes positions, so visible outputs never see
    masked inputs.

    Args:
        dim (int): channels C.
        mlp_ratio (float): hidden width of the MLP as a multiple of C.
        drop_path (float): stochastic depth rate of both branches.
    """

    def __init__(self, dim, mlp_ratio=4., drop_path=0.):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.conv1 = nn.Conv2d(dim, dim, 1)
        self.attn = nn.Conv2d(dim, dim, 5, padding=2, groups=dim)
        self.conv2 = nn.Conv2d(dim, dim, 1)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU, use_conv=True)

    def forward(self, x, keep_mask=None):
        """Dense computation.

        Args:
            x (Tensor): (B, C, H, W).
            keep_mask (Tensor | None): (B, 1, H, W), 1 at visible and 0 at masked positions.

        Returns:
            Tensor: (B, C, H, W).
        """
        y = self.conv1(channels_last_norm(self.norm1, x))
        if keep_mask is not None:
            y = y * keep_mask
        x = x + self.drop_path(self.conv2(self.attn(y)))
        return x + self.drop_path(self.mlp(channels_last_norm(self.norm2, x)))

    def forward_visible(self, x, ids_keep, grid_hw):
        """The same block computed at visible positions only (skip-masked path).

        Equals :meth:`forward` with the keep-mask at every visible position: the per-position
        operations run as Linear layers on the visible blocks, the depthwise convolution on a
        dense map that is zero at masked positions.

        Args:
            x (Tensor): (B, L, r, r, C) visible blocks (module docstring).
            ids_keep (Tensor): (B, L) their indices on the stage-3 grid.
            grid_hw (tuple[int, int]): stage-3 grid (gh, gw).

        Returns:
            Tensor: (B, L, r, r, C).
        """
        y = pointwise(self.conv1, self.norm1(x))
        y = map_to_blocks(self.attn(blocks_to_map(y, ids_keep, grid_hw)), ids_keep, x.shape[2])
        x = x + self.drop_path(pointwise(self.conv2, y))
        h = self.mlp.act(pointwise(self.mlp.fc1, self.norm2(x)))
        return x + self.drop_path(pointwise(self.mlp.fc2, h))
