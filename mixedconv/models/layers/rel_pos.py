"""Relative position terms added to the attention logits, in the three forms the official
transfer recipes use:

* :class:`RelativePositionBias`: a learned bias per head for every 2-D offset of an (H, W)
  grid (BEiT, Bao et al. 2022, sec. 2.3), optionally with BEiT's three extra rows for a
  class token (mmseg's ``BEiTAttention``/``MAEAttention``). Used per block (``'bias'``) or
  one table per attention kind shared by all blocks (``'shared'``, ConvMAE ``DET/models/
  convmae.py``: ``windowed_rel_pos_bias`` and ``global_rel_pos_bias``).
* :class:`DecomposedRelPos`: ViTDet's query-dependent terms (Li et al. 2022, sec. 3;
  detectron2 ``modeling/backbone/utils.py`` ``add_decomposed_rel_pos``): two tables
  ``rel_pos_h`` (2H-1, C) and ``rel_pos_w`` (2W-1, C) per block; the logit of query
  (i, j) and key (k, l) gets ``q_ij . Rh[i-k] + q_ij . Rw[j-l]`` with the unscaled query.

All forms return an additive logit mask (see :func:`~.attention.attend`).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from .pos_embed import infer_grid

REL_POS_TYPES = (None, 'bias', 'shared', 'decomposed')


def offset_index(h, w, device=None):
    """(H*W, H*W) long: row of the (2H-1)(2W-1) offset table for every query/key pair."""
    coords = torch.stack(torch.meshgrid(torch.arange(h, device=device),
                                        torch.arange(w, device=device),
                                        indexing='ij')).flatten(1)
    rel = coords[:, :, None] - coords[:, None, :]
    return (rel[0] + h - 1) * (2 * w - 1) + (rel[1] + w - 1)


def offset_rows(h, w):
    """Rows of the offset table of an (h, w) grid: one per 2-D offset."""
    return (2 * h - 1) * (2 * w - 1)


class RelativePositionBias(nn.Module):
    """Learned bias per head and 2-D offset of an (H, W) token grid.

    The table has (2H-1)(2W-1) rows, plus 3 with ``num_extra_tokens=1`` (BEiT's rows for
    class-to-patch, patch-to-class and class-to-class). It is zero-initialised, so a
    pretrained encoder is unchanged at the start of transfer, and resized bicubically for
    another grid (the extra rows are kept).

    Args:
        num_heads (int): heads.
        grid_hw (tuple[int, int]): token grid the table is built for.
        num_extra_tokens (int): 0, or 1 for a leading class token.
    """

    def __init__(self, num_heads, grid_hw, num_extra_tokens=0):
        super().__init__()
        if num_extra_tokens not in (0, 1):
            raise ValueError(f'num_extra_tokens must be 0 or 1, got {num_extra_tokens}')
        self.grid_hw = tuple(grid_hw)
        self.num_extra_tokens = num_extra_tokens
        h, w = self.grid_hw
        rows = offset_rows(h, w) + 3 * num_extra_tokens
        self.relative_position_bias_table = nn.Parameter(torch.zeros(rows, num_heads))

    def resize_table(self, table, src_hw, dst_hw):
        """Offset rows of grid ``src_hw`` -> ``dst_hw`` (bicubic); extra rows kept."""
        if tuple(src_hw) == tuple(dst_hw):
            return table
        extra = 3 * self.num_extra_tokens
        offsets, tail = (table[:-extra], table[-extra:]) if extra else (table, table[:0])
        heads = table.shape[1]
        grid = offsets.T.reshape(1, heads, 2 * src_hw[0] - 1, 2 * src_hw[1] - 1)
        grid = F.interpolate(grid.float(), size=(2 * dst_hw[0] - 1, 2 * dst_hw[1] - 1),
                             mode='bicubic', align_corners=False)
        return torch.cat([grid.to(table.dtype).reshape(heads, -1).T, tail])

    def table_grid(self, rows):
        """Grid of a stored table with ``rows`` rows (for loading)."""
        return infer_grid(rows - 3 * self.num_extra_tokens, self.grid_hw, offset_rows,
                          'relative position table')

    def forward(self, grid_hw, q=None):
        """Bias for a grid (H, W): (1, heads, T, T), T = extra + H*W."""
        grid_hw = tuple(grid_hw)
        table = self.resize_table(self.relative_position_bias_table, self.grid_hw, grid_hw)
        index = offset_index(*grid_hw, table.device)
        if self.num_extra_tokens:
            rows = table.shape[0]
            n = index.shape[0]
            full = index.new_empty(n + 1, n + 1)
            full[1:, 1:] = index
            full[0, :] = rows - 3
            full[:, 0] = rows - 2
            full[0, 0] = rows - 1
            index = full
        return table[index].permute(2, 0, 1).unsqueeze(0)


def resize_rows(table, rows):
    """(L, C) -> (rows, C), linear along L (detectron2 ``get_rel_pos``)."""
    if table.shape[0] == rows:
        return table
    out = F.interpolate(table.T.unsqueeze(0).float(), size=rows, mode='linear')
    return out.squeeze(0).T.to(table.dtype)


def rel_pos_for(table, q_len, k_len):
    """ViTDet's ``get_rel_pos``: (q_len, k_len, C) rows of a (L, C) table for every
    query/key offset, the table linearly resized to 2 max(q_len, k_len) - 1 rows first."""
    table = resize_rows(table, 2 * max(q_len, k_len) - 1)
    q_coords = torch.arange(q_len, device=table.device)[:, None] * max(k_len / q_len, 1.0)
    k_coords = torch.arange(k_len, device=table.device)[None, :] * max(q_len / k_len, 1.0)
    index = (q_coords - k_coords) + (k_len - 1) * max(q_len / k_len, 1.0)
    return table[index.long()]


class DecomposedRelPos(nn.Module):
    """ViTDet's decomposed, query-dependent relative position terms.

    Args:
        head_dim (int): channels per head C.
        grid_hw (tuple[int, int]): token grid the tables are built for (the window for
            windowed blocks); they are resized linearly for other grids, at every forward as
            in detectron2.
        zero_init (bool): zero tables (detectron2's default ``rel_pos_zero_init=True``),
            else truncated normal (std 0.02).
    """

    def __init__(self, head_dim, grid_hw, zero_init=True):
        super().__init__()
        self.grid_hw = tuple(grid_hw)
        h, w = self.grid_hw
        self.rel_pos_h = nn.Parameter(torch.zeros(2 * h - 1, head_dim))
        self.rel_pos_w = nn.Parameter(torch.zeros(2 * w - 1, head_dim))
        if not zero_init:
            nn.init.trunc_normal_(self.rel_pos_h, std=.02)
            nn.init.trunc_normal_(self.rel_pos_w, std=.02)

    def terms(self, grid_hw, q):
        """The two factors: (B, heads, H, W, H) height and (B, heads, H, W, W) width terms
        of every query (unscaled q: (B, heads, H*W, C))."""
        h, w = grid_hw
        b, heads, _, c = q.shape
        r_q = q.reshape(b, heads, h, w, c)
        rh = rel_pos_for(self.rel_pos_h, h, h).to(q.dtype)
        rw = rel_pos_for(self.rel_pos_w, w, w).to(q.dtype)
        # einsum returns permuted views; contiguous terms (H*W*max(H, W) values per head)
        # make the broadcast sum in forward contiguous, so its reshape to (N, N) is a view
        rel_h = torch.einsum('bnhwc,hkc->bnhwk', r_q, rh).contiguous()
        rel_w = torch.einsum('bnhwc,wkc->bnhwk', r_q, rw).contiguous()
        return rel_h, rel_w

    def forward(self, grid_hw, q):
        """q: (B, heads, H*W, C) unscaled queries -> additive mask (B, heads, H*W, H*W)."""
        rel_h, rel_w = self.terms(grid_hw, q)
        b, heads, n, _ = q.shape
        return (rel_h[..., :, None] + rel_w[..., None, :]).reshape(b, heads, n, n)


class SharedRef:
    """A reference to a module owned elsewhere (one relative position table used by many
    blocks): calling it calls the module, and ``nn.Module`` does not register it, so the
    parameter lives once in the state dict, under its owner."""

    def __init__(self, module):
        self.module = module

    def __call__(self, *args, **kwargs):
        return self.module(*args, **kwargs)


def build_rel_pos(rel_pos_type, num_heads, head_dim, grid_hw, num_extra_tokens=0,
                  shared=None):
    """The relative position term of one attention layer.

    Args:
        rel_pos_type (str | None): see :data:`REL_POS_TYPES`.
        grid_hw (tuple[int, int]): the layer's token grid (its window when windowed).
        shared (nn.Module | None): for ``'shared'``, the table this layer uses.

    Returns:
        nn.Module | SharedRef | None
    """
    if rel_pos_type not in REL_POS_TYPES:
        raise ValueError(f'rel_pos_type must be one of {REL_POS_TYPES}, got {rel_pos_type!r}')
    if rel_pos_type == 'bias':
        return RelativePositionBias(num_heads, grid_hw, num_extra_tokens)
    if rel_pos_type == 'shared':
        if shared is None:
            raise ValueError("rel_pos_type='shared' needs the shared table")
        return SharedRef(shared)
    if rel_pos_type == 'decomposed':
        if num_extra_tokens:
            raise ValueError('decomposed relative position needs a sequence without class '
                             'token (ViTDet drops it)')
        return DecomposedRelPos(head_dim, grid_hw)
    return None
