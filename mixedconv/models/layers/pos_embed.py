"""Absolute position embeddings: fixed 2-D sin-cos tables and resizing of learned ones."""
import torch
from mmpretrain.models.utils import resize_pos_embed as mmpretrain_resize_pos_embed


def sincos_pos_embed_2d(embed_dim, grid_hw, cls_token=False):
    """Fixed 2-D sin-cos position embedding (MAE, He et al. 2022, appendix A.1).

    Half of the channels encode the row, half the column; each half is a 1-D sin-cos code
    with frequencies ``1 / 10000 ** (2i / (D / 2))``.

    Args:
        embed_dim (int): channels D, a multiple of 4.
        grid_hw (tuple[int, int]): token grid (H, W).
        cls_token (bool): prepend an all-zero row for a class token.

    Returns:
        Tensor: (1, H*W (+1), D), float32.
    """
    if embed_dim % 4:
        raise ValueError(f'sin-cos position embedding needs embed_dim % 4 == 0, got {embed_dim}')
    h, w = grid_hw
    rows, cols = torch.meshgrid(torch.arange(h, dtype=torch.float64),
                                torch.arange(w, dtype=torch.float64), indexing='ij')
    quarter = embed_dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)

    def code(pos):
        angles = pos.reshape(-1, 1) * omega[None]
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    # column code first, as in the MAE reference, so fixed tables match released checkpoints
    table = torch.cat([code(cols), code(rows)], dim=1)
    if cls_token:
        table = torch.cat([table.new_zeros(1, embed_dim), table], dim=0)
    return table.float().unsqueeze(0)


def resize_pos_embed(pos_embed, src_hw, dst_hw, num_extra_tokens=0):
    """Resize a learned/fixed position embedding from grid ``src_hw`` to ``dst_hw`` (bicubic,
    :func:`mmpretrain.models.utils.resize_pos_embed`), after checking that it has that grid.

    Args:
        pos_embed (Tensor): (1, num_extra_tokens + Hs*Ws, D).
        src_hw, dst_hw (tuple[int, int]): source and target token grids.
        num_extra_tokens (int): leading tokens (class token) that are kept as they are.

    Returns:
        Tensor: (1, num_extra_tokens + Hd*Wd, D).
    """
    src_hw, dst_hw = tuple(src_hw), tuple(dst_hw)
    n_grid = pos_embed.shape[1] - num_extra_tokens
    if n_grid != src_hw[0] * src_hw[1]:
        raise ValueError(f'position embedding has {n_grid} grid tokens, which does not fit the '
                         f'{src_hw[0]}x{src_hw[1]} grid it is said to come from')
    return mmpretrain_resize_pos_embed(pos_embed, src_hw, dst_hw, mode='bicubic',
                                       num_extra_tokens=num_extra_tokens)


def grid_tokens(h, w):
    """Entries of a position embedding of an (h, w) grid: one per token."""
    return h * w


def infer_grid(count, target_hw, size_of=grid_tokens, what='position table'):
    """The grid (H, W) a checkpoint's table of ``count`` entries was built for.

    That is ``target_hw`` when its size fits, else the square grid that does (checkpoints
    are square unless they were made for the target).

    Args:
        count (int): entries (rows or tokens) of the stored table.
        target_hw (tuple[int, int]): the model's grid.
        size_of (callable): ``(h, w) -> entries`` of a table of grid (h, w):
            :func:`grid_tokens` for a position embedding, ``(2h-1)(2w-1)`` offset rows for a
            relative position bias table.
        what (str): the table's name in the error.

    Raises:
        ValueError: no such grid.
    """
    if count == size_of(*target_hw):
        return tuple(target_hw)
    side = 1
    while size_of(side, side) < count:
        side += 1
    if size_of(side, side) != count:
        raise ValueError(f'cannot infer the grid of a {what} with {count} entries; it fits '
                         f'neither the model grid {target_hw[0]}x{target_hw[1]} nor a square '
                         'one')
    return side, side
