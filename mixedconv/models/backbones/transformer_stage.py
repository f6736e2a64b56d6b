"""The ViT stage of both backbones: ConvViT's stage 3 and all of PlainViT.

One builder makes the blocks with their window attention and relative position terms. The
block layout follows ViTDet (Li et al. 2022, sec. 3: windowed blocks with a few global ones)
and the relative position forms of the official transfer recipes
(:mod:`~mixedconv.models.layers.rel_pos`).
"""
import torch.nn as nn

from ..layers import REL_POS_TYPES, Attention, Block, RelativePositionBias, build_rel_pos

# where rel_pos_type='shared' keeps its two tables on the backbone (ConvMAE DET/models/convmae.py
# names, so the official detection checkpoints load as they are)
SHARED_TABLES = ('windowed_rel_pos_bias', 'global_rel_pos_bias')


def resolve_rel_pos_type(rel_pos_type, use_rel_pos=False):
    """``rel_pos_type`` checked, with the older ``use_rel_pos=True`` meaning ``'bias'``."""
    if use_rel_pos and rel_pos_type is None:
        rel_pos_type = 'bias'
    if rel_pos_type not in REL_POS_TYPES:
        raise ValueError(f'rel_pos_type must be one of {REL_POS_TYPES}, got {rel_pos_type!r}')
    return rel_pos_type


def build_transformer_stage(owner, depth, dim, num_heads, mlp_ratio, grid_hw, drop_path,
                            window_size=0, global_blocks=(), rel_pos_type=None,
                            num_extra_tokens=0, attn_layer=Attention, **block_kwargs):
    """The blocks of a ViT stage.

    With ``rel_pos_type='shared'`` the two shared tables are registered on ``owner`` first,
    under :data:`SHARED_TABLES` (the windowed one only when there are windows).

    Args:
        owner (nn.Module): the backbone that will hold the blocks.
        depth (int): blocks.
        dim (int): channels C.
        num_heads (int): attention heads.
        mlp_ratio (float): MLP width as a multiple of C.
        grid_hw (tuple[int, int]): token grid of the global blocks' relative position tables.
        drop_path (Sequence[float]): stochastic depth rate of each block.
        window_size (int): window side of the windowed blocks; 0 = every block global.
        global_blocks (Sequence[int]): blocks that stay global when windowed (negative
            indices count from the end).
        rel_pos_type (str | None): see :func:`resolve_rel_pos_type`.
        num_extra_tokens (int): class tokens in front of the grid tokens (0 or 1).
        attn_layer (type): attention class of the blocks.
        **block_kwargs: ``qkv_bias``, ``layer_scale_init``, ``norm_eps`` of :class:`Block`.

    Returns:
        nn.ModuleList: ``depth`` blocks.
    """
    global_blocks = {i % depth for i in global_blocks}
    window_grid = (window_size, window_size)
    if rel_pos_type == 'shared':
        if window_size:
            setattr(owner, SHARED_TABLES[0], RelativePositionBias(num_heads, window_grid))
        setattr(owner, SHARED_TABLES[1], RelativePositionBias(num_heads, grid_hw))
    blocks = nn.ModuleList()
    for i in range(depth):
        windowed = window_size > 0 and i not in global_blocks
        shared = getattr(owner, SHARED_TABLES[0] if windowed else SHARED_TABLES[1], None)
        rel_pos = build_rel_pos(rel_pos_type, num_heads, dim // num_heads,
                                window_grid if windowed else grid_hw, num_extra_tokens,
                                shared=shared)
        blocks.append(Block(dim, num_heads, mlp_ratio, drop_path=drop_path[i],
                            window_size=window_size if windowed else 0, rel_pos=rel_pos,
                            attn_layer=attn_layer, **block_kwargs))
    return blocks

