"""Normalisation for NCHW maps."""
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer

from ...registry import MODELS


@MODELS.register_module()
class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of a (B, C, H, W) map, each pixel on its own. Config:
    ``dict(type='LayerNorm2d', eps=1e-6)``, usable as the ``norm_cfg`` of any
    mmcv/mmdet/mmseg module.

    It is ViTDet's LN of the simple feature pyramid and RoI heads (detectron2
    ``layers/batch_norm.py`` ``LayerNorm``), and its own type so that the detectron2
    weight-decay rule can tell it from ``nn.LayerNorm`` (see :mod:`mixedconv.engine.layer_decay`).
    It returns the permuted view, without the contiguous copy of mmpretrain's ``LN2d``, which
    slows the pyramid's training step (docs/stack.md).
    """

    def forward(self, x):
        """x: (B, C, H, W) -> (B, C, H, W)."""
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


def build_norm_2d(norm_cfg, channels):
    """The norm layer of an mmcv ``norm_cfg`` (``LayerNorm2d``, ``BN``, ``SyncBN``, ``GN``...)
    for ``channels``, or an identity when ``norm_cfg`` is None."""
    if norm_cfg is None:
        return nn.Identity()
    return build_norm_layer(norm_cfg, channels)[1]
