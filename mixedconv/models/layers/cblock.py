"""The convolution block of ConvMAE stages 1-2 (Gao et al. 2022, sec. 3.1), computed densely
or on the visible blocks of a masked image (:mod:`.visible_blocks`)."""
import torch.nn as nn
from timm.layers import DropPath, Mlp

from .visible_blocks import pointwise, visible_depthwise_conv


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
        norm_eps (float): epsilon of both LayerNorms (1e-5 in Alpha-VL ConvMAE, 1e-6 in
            Official-ConvMAE-Det).
    """

    def __init__(self, dim, mlp_ratio=4., drop_path=0., norm_eps=1e-5):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.conv1 = nn.Conv2d(dim, dim, 1)
        self.attn = nn.Conv2d(dim, dim, 5, padding=2, groups=dim)
        self.conv2 = nn.Conv2d(dim, dim, 1)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
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
        operations run as Linear layers on the visible blocks, the depthwise convolution
        through :func:`~.visible_blocks.visible_depthwise_conv`.

        Args:
            x (Tensor): (B, L, r, r, C) visible blocks (layout in :mod:`.visible_blocks`).
            ids_keep (Tensor): (B, L) their indices on the stage-3 grid.
            grid_hw (tuple[int, int]): stage-3 grid (gh, gw).

        Returns:
            Tensor: (B, L, r, r, C).
        """
        y = pointwise(self.conv1, self.norm1(x))
        y = visible_depthwise_conv(self.attn, y, ids_keep, grid_hw)
        x = x + self.drop_path(pointwise(self.conv2, y))
        h = self.mlp.act(pointwise(self.mlp.fc1, self.norm2(x)))
        return x + self.drop_path(pointwise(self.mlp.fc2, h))
