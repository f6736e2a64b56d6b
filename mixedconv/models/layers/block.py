"""The pre-norm transformer block shared by ConvViT stage 3, PlainViT and the MAE-style
decoders (timm parameter names: norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2, ls1/ls2)."""
from functools import partial

import torch
import torch.nn as nn
from timm.layers import DropPath, LayerScale, Mlp
from torch.utils.checkpoint import (CheckpointPolicy, checkpoint,
                                    create_selective_checkpoint_contexts, noop_context_fn)

from .attention import Attention
from .window import window_partition, window_unpartition

LayerNorm6 = partial(nn.LayerNorm, eps=1e-6)


class Block(nn.Module):
    """``x + drop_path(ls1(attn(norm1(x))))`` then ``x + drop_path(ls2(mlp(norm2(x))))``.

    Args:
        dim (int): channels C.
        num_heads (int): attention heads.
        mlp_ratio (float): hidden width of the MLP as a multiple of C.
        qkv_bias (bool): bias in the qkv projection.
        drop_path (float): stochastic depth rate of both branches.
        layer_scale_init (float | None): initial LayerScale value; None disables it.
        window_size (int): 0 for global attention, otherwise the side S of the
            non-overlapping windows the (H, W) token map is cut into (ViTDet).
        rel_pos (nn.Module | SharedRef | None): the attention's relative position term
            (:func:`~mixedconv.models.layers.rel_pos.build_rel_pos`, for the window's grid in
            windowed blocks).
        attn_layer (type): attention class; must take (dim, num_heads, qkv_bias, rel_pos).
        norm_eps (float): epsilon of both LayerNorms.
    """

    def __init__(self, dim, num_heads, mlp_ratio=4., qkv_bias=True, drop_path=0.,
                 layer_scale_init=None, window_size=0, rel_pos=None, attn_layer=Attention,
                 norm_eps=1e-6):
        super().__init__()
        self.window_size = window_size
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = attn_layer(dim, num_heads, qkv_bias=qkv_bias, rel_pos=rel_pos)
        self.ls1 = LayerScale(dim, layer_scale_init) if layer_scale_init else nn.Identity()
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU)
        self.ls2 = LayerScale(dim, layer_scale_init) if layer_scale_init else nn.Identity()

    def attention(self, x, grid_hw=None, **attn_kwargs):
        """Attention branch on (B, N, C); windows need ``grid_hw`` with N = H*W (no CLS)."""
        if not self.window_size:
            return self.attn(x, grid_hw=grid_hw, **attn_kwargs)
        if grid_hw is None or grid_hw[0] * grid_hw[1] != x.shape[1]:
            raise ValueError('window attention needs the token grid, and no extra tokens')
        b, _, c = x.shape
        windows, padded = window_partition(x.view(b, *grid_hw, c), self.window_size)
        windows = self.attn(windows, grid_hw=(self.window_size, self.window_size), **attn_kwargs)
        return window_unpartition(windows, self.window_size, padded, grid_hw).view(b, -1, c)

    def forward(self, x, grid_hw=None, **attn_kwargs):
        """x: (B, N, C) -> (B, N, C)."""
        x = x + self.drop_path(self.ls1(self.attention(self.norm1(x), grid_hw, **attn_kwargs)))
        return x + self.drop_path(self.ls2(self.mlp(self.norm2(x))))


_aten = torch.ops.aten
# ops whose outputs 'elementwise' checkpointing keeps (with dense convolutions, see the policy)
SAVED_OPS = frozenset({
    _aten.mm.default, _aten.addmm.default, _aten.bmm.default,
    _aten._scaled_dot_product_flash_attention_for_cpu.default,
    _aten._scaled_dot_product_flash_attention.default,
    _aten._scaled_dot_product_efficient_attention.default,
    _aten._scaled_dot_product_cudnn_attention.default,
})


def _save_matmul_outputs(ctx, op, *args, **kwargs):
    """Selective-checkpoint policy: keep what matmuls, attention kernels and dense
    (``groups=1``) convolutions produce, recompute everything else (depthwise convolutions
    included)."""
    if op in SAVED_OPS or (op is _aten.convolution.default and args[8] == 1):
        return CheckpointPolicy.MUST_SAVE
    return CheckpointPolicy.PREFER_RECOMPUTE


CP_MODES = (False, True, 'elementwise')


def check_cp_mode(with_cp, allowed=CP_MODES):
    """Raise a ValueError naming the accepted values unless ``with_cp`` is one of them."""
    if not any(with_cp is mode or (isinstance(mode, str) and with_cp == mode)
               for mode in allowed):
        raise ValueError(f'with_cp must be one of {", ".join(map(repr, allowed))}, got '
                         f'{with_cp!r}')


def run_blocks(blocks, x, with_cp=False, **kwargs):
    """Run ``blocks`` in order, with activation checkpointing in training.

    Args:
        blocks (Iterable[callable]): blocks (or block methods) taking ``x`` and ``kwargs``.
        x (Tensor): input of the first block.
        with_cp (bool | str): ``False``: keep every activation; ``True``: keep only each
            block's input and recompute the block in backward; ``'elementwise'``: keep the
            block input and the outputs of matmuls, attention and dense convolutions,
            recompute the element-wise work (norms, activations, gathers and scatters,
            depthwise convolutions) from them, which costs no matmul or attention time.
    """
    check_cp_mode(with_cp)
    recompute = with_cp and x.requires_grad and torch.is_grad_enabled()
    context_fn = (partial(create_selective_checkpoint_contexts, _save_matmul_outputs)
                  if with_cp == 'elementwise' else noop_context_fn)
    for blk in blocks:
        if recompute:
            x = checkpoint(blk, x, use_reentrant=False, context_fn=context_fn, **kwargs)
        else:
            x = blk(x, **kwargs)
    return x
