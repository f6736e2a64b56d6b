"""ConvMAE pretraining (Gao et al., "ConvMAE: Masked Convolution Meets Masked Autoencoders",
NeurIPS 2022) as an mmpretrain self-supervised algorithm."""
import torch.nn as nn
from mmpretrain.models.selfsup import BaseSelfSupervisor

from ...registry import MODELS
from ..heads import reconstruction_loss
from ..layers import strided_conv_blocks
from .masking import random_masking

PATCH = 16


@MODELS.register_module()
class ConvMAE(BaseSelfSupervisor):
    """Masked autoencoding with a ConvViT encoder.

    Per image, a random share ``mask_ratio`` of the 16x16 cells of the stage-3 grid is removed
    (block-wise masking, the same cells at every scale). Stages 1-2 use masked convolution and
    stage 3 sees the visible tokens only (:meth:`ConvViT.forward_masked`). The stage-1 and
    stage-2 features of the visible cells are projected to the stage-3 width by
    ``stage1_output_decode`` (conv k4 s4) and ``stage2_output_decode`` (conv k2 s2) and added to
    the stage-3 output before the final norm (multi-scale fusion, sec. 3.2). The MAE decoder
    (``neck``) predicts all patches; the loss is the per-patch normalised pixel MSE over the
    removed patches.

    Only the encoder lives under ``backbone.`` (the toolkit's export rule); the fusion convs and
    the decoder exist only in pretraining.

    Args:
        backbone (dict): ``dict(type='ConvViT', ...)`` without window attention or relative
            position bias; its position embedding stays fixed unless the dict sets
            ``learnable_pos_embed``.
        neck (dict): the decoder, ``dict(type='ReconstructionDecoder', embed_dim=512, depth=8,
            num_heads=16)``; ``in_dim`` defaults to the backbone's stage-3 width.
        mask_ratio (float): share of removed cells (0.75).
        norm_pix (bool): normalise each target patch by its mean and std.
        skip_masked (bool): compute stages 1-2 at visible positions only (same result as the
            dense masked convolution, fewer operations).
        data_preprocessor (dict | None): ``SelfSupDataPreprocessor`` settings.
        init_cfg (dict | None): mmengine init config.
    """

    def __init__(self, backbone, neck=dict(type='ReconstructionDecoder', embed_dim=512, depth=8,
                                           num_heads=16),
                 mask_ratio=0.75, norm_pix=True, skip_masked=True, data_preprocessor=None,
                 init_cfg=None):
        if isinstance(backbone, dict):  # pretraining keeps the sin-cos table fixed
            backbone = dict(dict(learnable_pos_embed=False), **backbone)
        super().__init__(backbone=backbone, data_preprocessor=data_preprocessor,
                         init_cfg=init_cfg)
        dims = self.backbone.embed_dims
        self.neck = MODELS.build(dict(dict(in_dim=dims[2]), **neck))
        self.stage1_output_decode = nn.Conv2d(dims[0], dims[2], 4, stride=4)
        self.stage2_output_decode = nn.Conv2d(dims[1], dims[2], 2, stride=2)
        self.mask_ratio = mask_ratio
        self.norm_pix = norm_pix
        self.skip_masked = skip_masked

    def encode(self, imgs, ids_keep):
        """Encoder output of the visible tokens.

        Args:
            imgs (Tensor): (B, 3, H, W), H and W multiples of 16.
            ids_keep (Tensor): (B, L) long, visible cells of the (H/16, W/16) grid.

        Returns:
            Tensor: (B, L, C3) fused and normalised visible tokens.
        """
        x3, x1, x2 = self.backbone.forward_masked(imgs, ids_keep, self.skip_masked)
        x = (x3 + strided_conv_blocks(self.stage1_output_decode, x1).flatten(1, 3)
             + strided_conv_blocks(self.stage2_output_decode, x2).flatten(1, 3))
        return self.backbone.norm(x)

    def loss(self, inputs, data_samples=None, **kwargs):
        """Masked reconstruction loss of a batch.

        Args:
            inputs (Tensor | list[Tensor]): (B, 3, H, W) normalised images (or a one-view list).
            data_samples: unused.

        Returns:
            dict[str, Tensor]: ``loss`` and the achieved ``mask_ratio`` (logged only).
        """
        imgs = inputs[0] if isinstance(inputs, (list, tuple)) else inputs
        grid = self.backbone.grid_of(imgs.shape[-2:])
        ids_keep, ids_restore, mask = random_masking(
            imgs.shape[0], grid[0] * grid[1], self.mask_ratio, imgs.device)
        pred = self.neck(self.encode(imgs, ids_keep), ids_restore, grid)
        loss = reconstruction_loss(pred, imgs, mask, PATCH, norm_pix=self.norm_pix)
        return dict(loss=loss, mask_ratio=mask.mean())
