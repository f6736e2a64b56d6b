"""Normalisation for NCHW maps."""
import torch.nn as nn
from mmcv.cnn import build_norm_layer
from mmpretrain.models.utils import LayerNorm2d as MMPretrainLayerNorm2d

from ...registry import MODELS


@MODELS.register_module()
class LayerNorm2d(MMPretrainLayerNorm2d):
    """LayerNorm over the channels of a (B, C, H, W) map, each pixel on its own: mmpretrain's
    ``LN2d``, registered for mmdet and mmseg configs as ``dict(type='LayerNorm2d',
    eps=1e-6)`` (usable as the ``norm_cfg`` of any mmcv/mmdet/mmseg module). It is ViTDet's
    LN of the simple feature pyramid (detectron2 ``layers/batch_norm.py`` ``LayerNorm``), and
    its own type so that the detectron2 weight-decay rule can tell it from ``nn.LayerNorm``
    (see :mod:`mixedconv.engine.layer_decay`)."""


def build_norm_2d(norm_cfg, channels):
    """The norm layer of an mmcv ``norm_cfg`` (``LayerNorm2d``, ``BN``, ``SyncBN``, ``GN``...)
    for ``channels``, or an identity when ``norm_cfg`` is None."""
    if norm_cfg is None:
        return nn.Identity()
    return build_norm_layer(norm_cfg, channels)[1]
