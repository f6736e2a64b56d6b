"""Multi-head self-attention with an optional relative position term (:mod:`.rel_pos`)
added to the logits as a mask, through ``F.scaled_dot_product_attention`` where it has a
fused kernel for the inputs (:func:`attend`)."""
import torch.nn as nn
import torch.nn.functional as F

from .rel_pos import DecomposedRelPos


def attend(q, k, v, mask=None, scale=None, dropout_p=0.):
    """``softmax(q @ k^T * scale + mask) @ v`` on (B, heads, N, C/heads) inputs.

    Without a mask, with a boolean one, or on CUDA this is
    ``F.scaled_dot_product_attention``. On other devices a floating-point mask sends SDPA to
    its unfused math path, which also scans the mask for fully masked rows and copies the
    logits; forming the logits explicitly, as detectron2's ``modeling/backbone/vit.py`` does,
    computes the same values with fewer passes over the (N, N) tensor.

    Args:
        q, k, v (Tensor): (B, heads, N, C/heads).
        mask (Tensor | None): additive float mask broadcastable to (B, heads, N, N), or a
            boolean keep-mask.
        scale (float | None): logit scale, default ``(C/heads) ** -0.5`` as SDPA.
        dropout_p (float): dropout on the attention weights; pass 0 in eval mode.

    Returns:
        Tensor: (B, heads, N, C/heads).
    """
    if mask is None or q.is_cuda or not mask.is_floating_point():
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p,
                                              scale=scale)
    if scale is None:
        scale = q.shape[-1] ** -0.5
    logits = (q * scale) @ k.transpose(-2, -1)
    logits += mask
    weights = logits.softmax(dim=-1)
    if dropout_p:
        weights = F.dropout(weights, p=dropout_p)
    return weights @ v


class Attention(nn.Module):
    """Multi-head self-attention with a fused ``qkv`` projection (timm parameter names).

    Logits are ``(q * C**-0.5) @ k^T + rel_pos``; the relative term of ViTDet is computed
    from the unscaled ``q`` (detectron2 ``modeling/backbone/vit.py``).

    Args:
        dim (int): channels C.
        num_heads (int): heads; ``dim`` must divide by it.
        qkv_bias (bool): bias in the qkv projection.
        attn_drop (float): dropout on the attention weights (training only).
        proj_drop (float): dropout after the output projection.
        rel_pos (nn.Module | SharedRef | None): relative position term, built by
            :func:`~mixedconv.models.layers.rel_pos.build_rel_pos`; ``forward`` then needs
            ``grid_hw`` and the sequence must be exactly the grid (plus the table's extra
            tokens).
    """

    def __init__(self, dim, num_heads, qkv_bias=True, attn_drop=0., proj_drop=0.,
                 rel_pos=None):
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
        self.rel_pos = rel_pos

    def split_heads(self, x):
        """(B, N, C) -> q, k, v each (B, heads, N, C/heads), views of the qkv output.

        The views are split along the (B, N, 3, heads, C/heads) layout of the projection, so
        that backward stacks the three gradients straight into that layout (one copy); split
        along a permuted layout, the stacked gradient needs a second, contiguous copy before
        the projection's backward.
        """
        b, n, _ = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim)
        return tuple(t.transpose(1, 2) for t in qkv.unbind(2))

    def merge_heads(self, x):
        """(B, heads, N, C/heads) -> projected (B, N, C)."""
        x = x.transpose(1, 2).flatten(2)
        return self.proj_drop(self.proj(x))

    def position_bias(self, q, grid_hw):
        """Additive logit mask of the relative position term, (1 or B, heads, N, N), or None."""
        if self.rel_pos is None:
            return None
        if grid_hw is None:
            raise ValueError('relative position terms need the token grid (grid_hw)')
        if isinstance(self.rel_pos, DecomposedRelPos):
            return self.rel_pos(grid_hw, q)
        return self.rel_pos(grid_hw).to(q.dtype)

    def forward(self, x, grid_hw=None):
        """x: (B, N, C) -> (B, N, C); ``grid_hw`` is the (H, W) of the patch tokens."""
        q, k, v = self.split_heads(x)
        dropout_p = self.attn_drop if self.training else 0.
        out = attend(q, k, v, self.position_bias(q, grid_hw), self.scale, dropout_p)
        return self.merge_heads(out)
