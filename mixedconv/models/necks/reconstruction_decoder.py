"""The MAE-style pixel decoder shared by ConvMAE and MixedAE, the algorithms' ``neck`` (as
mmpretrain's ``MAEPretrainDecoder``)."""
from functools import lru_cache

import torch
import torch.nn as nn
from mmengine.model import BaseModule

from ...registry import MODELS
from ..layers import Block, LayerNorm6, init_transformer_, sincos_pos_embed_2d


@lru_cache(maxsize=16)
def _fixed_pos_embed(dim, grid_hw):
    return sincos_pos_embed_2d(dim, grid_hw)


@MODELS.register_module()
class ReconstructionDecoder(BaseModule):
    """MAE decoder (He et al. 2022, sec. 3): embed the visible tokens, put a shared mask token at
    every removed position, add a fixed 2-D sin-cos position embedding for the input's grid,
    run ``depth`` transformer blocks and predict the ``p*p*C`` pixels of every patch.

    Works for any token grid (no CLS token, no fixed input size).

    Args:
        in_dim (int): encoder width.
        embed_dim (int): decoder width (512 in MAE/ConvMAE/MixedAE).
        depth (int): decoder blocks (8).
        num_heads (int): decoder heads (16).
        mlp_ratio (float): MLP ratio (4).
        patch_size (int): pixels per token side p (16).
        in_chans (int): image channels C.
    """

    def __init__(self, in_dim, embed_dim=512, depth=8, num_heads=16, mlp_ratio=4.,
                 patch_size=16, in_chans=3, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.embed_dim = embed_dim
        self.decoder_embed = nn.Linear(in_dim, embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.decoder_blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio) for _ in range(depth))
        self.decoder_norm = LayerNorm6(embed_dim)
        self.decoder_pred = nn.Linear(embed_dim, patch_size ** 2 * in_chans)
        nn.init.normal_(self.mask_token, std=.02)
        init_transformer_(self)

    def forward(self, x_vis, ids_restore, grid_hw):
        """Predict all patches from the visible ones.

        Args:
            x_vis (Tensor): (B, L, C_enc) encoder outputs of the visible tokens, in the order
                ``ids_restore`` assumes (the first L entries of the shuffled sequence).
            ids_restore (Tensor): (B, N) long; position ``n`` of the image takes entry
                ``ids_restore[:, n]`` of ``cat(visible, mask tokens)``.
            grid_hw (tuple[int, int]): token grid (H, W), H*W = N.

        Returns:
            Tensor: (B, N, p*p*C) predicted pixels in patch order (p, q, c).
        """
        x = self.decoder_embed(x_vis)
        b, n_vis, c = x.shape
        n = ids_restore.shape[1]
        x = torch.cat([x, self.mask_token.expand(b, n - n_vis, c)], dim=1)
        x = torch.gather(x, 1, ids_restore.unsqueeze(-1).expand(-1, -1, c))
        x = x + _fixed_pos_embed(self.embed_dim, tuple(grid_hw)).to(x)
        for blk in self.decoder_blocks:
            x = blk(x)
        return self.decoder_pred(self.decoder_norm(x))
