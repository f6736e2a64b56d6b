"""Normalisation for NCHW maps."""
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer

from ...registry import MODELS


@MODELS.register_module()
class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW map, each pixel on its own (ViTDet's LN for
    convolutional layers). Config: ``dict(type='LayerNorm2d', eps=1e-6)``, usable as the
    ``norm_cfg`` of any mmcv/mmdet/mmseg module."""

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
