"""The simple feature pyramid of ViTDet (Li et al., "Exploring Plain Vision Transformer
Backbones for Object Detection", ECCV 2022, sec. 3): a multi-scale pyramid built from the
single stride-16 map of a plain ViT, for detectors that expect FPN-like inputs."""
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule

from ...registry import MODELS
from ..layers.norm import build_norm_2d


def _conv_norm(in_channels, out_channels, kernel_size, norm_cfg):
    """Conv (no bias when normalised) followed by the norm."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2,
                  bias=norm_cfg is None),
        build_norm_2d(norm_cfg, out_channels))


@MODELS.register_module()
class SimpleFeaturePyramid(BaseModule):
    """ViTDet simple feature pyramid.

    The last (stride-16) map of the backbone is resampled by every scale factor: 4 by two
    2x2 stride-2 deconvolutions (norm + GELU between them, channels halved each time), 2 by one
    deconvolution (channels halved), 1 unchanged, 0.5 by 2x2 max-pooling. Each level then
    goes through a 1x1 conv + norm and a 3x3 conv + norm to ``out_channels``. With
    ``num_outs`` one more than the scales, a stride-2 subsampling of the coarsest output is
    appended (the extra P6 level Mask R-CNN's RPN uses, as mmdet's FPN does).

    Args:
        in_channels (int): channels of the backbone map (768 for ViT-B).
        out_channels (int): channels of every output (256).
        scale_factors (tuple[float]): resampling of each level; each in {4, 2, 1, 0.5}.
        norm_cfg (dict | None): norm after the convs and inside the 4x branch;
            ``dict(type='LayerNorm2d', eps=1e-6)`` (ViTDet), an mmcv norm config, or None.
        num_outs (int | None): ``len(scale_factors)`` (None) or one more (extra
            max-pooled level).
        init_cfg (dict | None): mmengine init config.
    """

    def __init__(self, in_channels=768, out_channels=256, scale_factors=(4.0, 2.0, 1.0, 0.5),
                 norm_cfg=dict(type='LayerNorm2d', eps=1e-6), num_outs=None, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        num_outs = len(scale_factors) if num_outs is None else num_outs
        if num_outs not in (len(scale_factors), len(scale_factors) + 1):
            raise ValueError(f'num_outs must be len(scale_factors)={len(scale_factors)} or one '
                             f'more (extra pooled level), got {num_outs}')
        self.scale_factors = tuple(scale_factors)
        self.num_outs = num_outs
        self.resamplers = nn.ModuleList()
        self.lateral_convs = nn.ModuleList()
        self.output_convs = nn.ModuleList()
        for scale in self.scale_factors:
            resampler, channels = self._resampler(scale, in_channels, norm_cfg)
            self.resamplers.append(resampler)
            self.lateral_convs.append(_conv_norm(channels, out_channels, 1, norm_cfg))
            self.output_convs.append(_conv_norm(out_channels, out_channels, 3, norm_cfg))

    @staticmethod
    def _resampler(scale, channels, norm_cfg):
        """The module that resamples the input by ``scale``, and its output channels."""
        if scale == 4.0:
            return nn.Sequential(
                nn.ConvTranspose2d(channels, channels // 2, 2, stride=2),
                build_norm_2d(norm_cfg, channels // 2), nn.GELU(),
                nn.ConvTranspose2d(channels // 2, channels // 4, 2, stride=2)), channels // 4
        if scale == 2.0:
            return nn.ConvTranspose2d(channels, channels // 2, 2, stride=2), channels // 2
        if scale == 1.0:
            return nn.Identity(), channels
        if scale == 0.5:
            return nn.MaxPool2d(2, stride=2), channels
        raise ValueError(f'scale factor {scale} is not supported; use 4, 2, 1 or 0.5')

    def forward(self, inputs):
        """Build the pyramid.

        Args:
            inputs (tuple[Tensor] | Tensor): backbone maps; the last one, (B, C, H, W), is used.

        Returns:
            tuple[Tensor]: ``num_outs`` contiguous maps (B, out_channels, H*s, W*s), finest
            first.
        """
        x = inputs[-1] if isinstance(inputs, (tuple, list)) else inputs
        outs = [out_conv(lateral(resample(x))) for resample, lateral, out_conv in
                zip(self.resamplers, self.lateral_convs, self.output_convs)]
        if self.num_outs > len(outs):
            outs.append(F.max_pool2d(outs[-1], kernel_size=1, stride=2))
        # contiguous NCHW: LayerNorm2d returns channels-last views, and mmcv's RoIAlign kernel
        # reads its input as a contiguous buffer
        return tuple(o.contiguous() for o in outs)
