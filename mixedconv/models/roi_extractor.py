"""RoI pooling in float32 under mixed precision, for the Mask R-CNN recipes.

Imported by the recipes (``custom_imports``) rather than by ``import mixedconv``, so that the
backbones can be used without importing mmdet.
"""
import torch
from mmdet.models.roi_heads.roi_extractors import SingleRoIExtractor

from ..registry import MODELS


@MODELS.register_module()
class Float32SingleRoIExtractor(SingleRoIExtractor):
    """mmdet's ``SingleRoIExtractor`` computed in float32 with autocast off.

    Under bf16 autocast mmdet 3.3 hands RoIAlign bfloat16 features and casts the RoIs to the
    features' dtype: mmcv 2.1's RoIAlign has no bfloat16 kernel (CPU or CUDA), and RoI
    coordinates in bfloat16 (8 significant bits) are off by up to 2 px near 1024. detectron2's
    ROIPooler, used by the official runs, keeps the boxes in float32 and pools in float32
    (torchvision's roi_align under autocast), as mmdet 2.x did (``force_fp32`` on this
    forward). Same arguments as ``SingleRoIExtractor``.

    The maps are also made contiguous: mmcv 2.1's RoIAlign kernel (CPU and CUDA) reads its
    input as a contiguous NCHW buffer without looking at the strides, and pools wrong values
    from a channels-last map, which LayerNorm2d and the convolutions after it produce.

    Args (forward):
        feats (tuple[Tensor]): ``(B, C, H_l, W_l)`` maps of any floating dtype.
        rois (Tensor): ``(K, 5)`` as ``[batch index, x1, y1, x2, y2]``.

    Returns:
        Tensor: ``(K, C, *output_size)`` in the dtype of ``feats``.
    """

    def forward(self, feats, rois, roi_scale_factor=None):
        dtype = feats[0].dtype
        with torch.autocast(device_type=feats[0].device.type, enabled=False):
            pooled = super().forward(tuple(f.float().contiguous() for f in feats), rois.float(),
                                     roi_scale_factor)
        return pooled.to(dtype)
