"""Multi-head self-attention through ``F.scaled_dot_product_attention``, with an optional
relative position bias (BEiT, Bao et al. 2022) that can be resized to any token grid."""
import torch
import torch.nn as nn
import torch.nn.functional as F


class RelativePositionBias(nn.Module):
    """Learned bias per head for every 2-D offset between two tokens of an (H, W) grid.

    The table has (2H-1)(2W-1) rows, is zero-initialised (a pretrained encoder without it
    is unchanged at the start of transfer, as in the ConvMAE/MAE segmentation recipes) and
    is resized bicubically when the grid of the input (or of a checkpoint) differs.

    Args:
        num_heads (int): heads.
        grid_hw (tuple[int, int]): token grid the table is built for.
    """

    def __init__(self, num_heads, grid_hw):
        super().__init__()
        self.grid_hw = tuple(grid_hw)
        h, w = self.grid_hw
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * h - 1) * (2 * w - 1), num_heads))

    @staticmethod
    def resize_table(table, src_hw, dst_hw):
        """(2Hs-1)(2Ws-1) x heads -> (2Hd-1)(2Wd-1) x heads, bicubic."""
        if tuple(src_hw) == tuple(dst_hw):
            return table
        heads = table.shape[1]
        grid = table.T.reshape(1, heads, 2 * src_hw[0] - 1, 2 * src_hw[1] - 1)
        grid = F.interpolate(grid.float(), size=(2 * dst_hw[0] - 1, 2 * dst_hw[1] - 1),
                             mode='bicubic', align_corners=False)
        return grid.to(table.dtype).reshape(heads, -1).T

    @staticmethod
    def _offset_index(h, w, device):
        coords = torch.stack(torch.meshgrid(torch.arange(h, device=device),
                                            torch.arange(w, device=device),
                                            indexing='ij')).flatten(1)
        rel = coords[:, :, None] - coords[:, None, :]
        return (rel[0] + h - 1) * (2 * w - 1) + (rel[1] + w - 1)

    def forward(self, grid_hw):
        """Bias for a grid (H, W): (heads, H*W, H*W)."""
        grid_hw = tuple(grid_hw)
        table = self.resize_table(self.relative_position_bias_table, self.grid_hw, grid_hw)
        index = self._offset_index(*grid_hw, table.device)
        return table[index].permute(2, 0, 1)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        key = prefix + 'relative_position_bias_table'
        if key in state_dict:
            table = state_dict[key]
            src = grid_of_table(table.shape[0], self.grid_hw)
            state_dict[key] = self.resize_table(table, src, self.grid_hw)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def grid_of_table(rows, target_hw):
    """Grid (H, W) whose offset table has ``rows`` rows (square unless it is the target)."""
    if rows == (2 * target_hw[0] - 1) * (2 * target_hw[1] - 1):
        return target_hw
    side = (int(round(rows ** 0.5)) + 1) // 2
    if (2 * side - 1) ** 2 != rows:
        raise ValueError(f'relative position table with {rows} rows fits no square grid')
    return side, side


class Attention(nn.Module):
    """Multi-head self-attention with a fused ``qkv`` projection (timm parameter names).

    Args:
        dim (int): channels C.
        num_heads (int): heads; ``dim`` must divide by it.
        qkv_bias (bool): bias in the qkv projection.
        attn_drop (float): dropout on the attention weights (training only).
        proj_drop (float): dropout after the output projection.
        rel_pos_grid (tuple[int, int] | None): build a :class:`RelativePositionBias` for this
            grid; ``forward`` then needs ``grid_hw`` and the sequence must be exactly the grid.
    """

    def __init__(self, dim, num_heads, qkv_bias=True, attn_drop=0., proj_drop=0.,
                 rel_pos_grid=None):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'dim {dim} is not divisible by num_heads {num_heads}')
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.rel_pos = RelativePositionBias(num_heads, rel_pos_grid) if rel_pos_grid else None

    def split_heads(self, x):
        """(B, N, C) -> q, k, v each (B, heads, N, C/heads)."""
        b, n, _ = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim)
        return qkv.permute(2, 0, 3, 1, 4).unbind(0)

    def merge_heads(self, x):
        """(B, heads, N, C/heads) -> projected (B, N, C)."""
        x = x.transpose(1, 2).flatten(2)
        return self.proj_drop(self.proj(x))

    def forward(self, x, grid_hw=None):
        """x: (B, N, C) -> (B, N, C); ``grid_hw`` is the (H, W) of the N tokens for the bias."""
        q, k, v = self.split_heads(x)
        bias = None
        if self.rel_pos is not None:
            if grid_hw is None:
                raise ValueError('relative position bias needs the token grid (grid_hw)')
            bias = self.rel_pos(grid_hw).to(q.dtype).unsqueeze(0)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=bias, dropout_p=self.attn_drop if self.training else 0.)
        return self.merge_heads(out)
