import pytest
import torch

from mixedconv.models.backbones import PlainViT
from mixedconv.models.layers import LayerNorm2d
from mixedconv.models.necks import SimpleFeaturePyramid


def test_pyramid_shapes_non_square():
    neck = SimpleFeaturePyramid(in_channels=32, out_channels=16)
    outs = neck((torch.randn(2, 32, 3, 5), torch.randn(2, 32, 4, 6)))  # the last map is used
    assert [tuple(o.shape) for o in outs] == [(2, 16, 16, 24), (2, 16, 8, 12), (2, 16, 4, 6),
                                              (2, 16, 2, 3)]


def test_pyramid_extra_level_and_other_norms():
    outs = SimpleFeaturePyramid(32, 8, norm_cfg=None, num_outs=5)(torch.randn(1, 32, 4, 4))
    assert [o.shape[-1] for o in outs] == [16, 8, 4, 2, 1]
    bn = SimpleFeaturePyramid(32, 8, scale_factors=(2.0, 1.0), norm_cfg=dict(type='BN'))
    assert isinstance(bn.lateral_convs[0][1], torch.nn.BatchNorm2d)
    assert [o.shape[-1] for o in bn(torch.randn(2, 32, 4, 4))] == [8, 4]


def test_pyramid_bad_arguments():
    with pytest.raises(ValueError, match='scale factor 3'):
        SimpleFeaturePyramid(32, 8, scale_factors=(3.0,))
    with pytest.raises(ValueError, match='num_outs'):
        SimpleFeaturePyramid(32, 8, num_outs=7)


def test_layer_norm_2d_normalises_channels():
    x = torch.randn(2, 8, 3, 5) * 4 + 3
    y = LayerNorm2d(8)(x)
    assert torch.allclose(y.mean(1), torch.zeros(2, 3, 5), atol=1e-5)
    assert torch.allclose(y.var(1, unbiased=False), torch.ones(2, 3, 5), atol=1e-3)


def test_layer_norm_2d_returns_a_channels_last_view_not_a_copy():
    """The pyramid's convolutions get the normalised map as it comes out of the channel
    LayerNorm (channels-last strides); a contiguous copy made the pyramid's step slower."""
    x = torch.randn(2, 8, 5, 7)
    out = LayerNorm2d(8)(x)
    assert out.is_contiguous(memory_format=torch.channels_last) and not out.is_contiguous()


def test_vitdet_backbone_and_neck_from_mmdet_registry():
    """ViTDet wiring: windowed PlainViT (last block) -> pyramid, built through mmdet's registry
    (mixedconv registers in the root registry), gradients reach the backbone."""
    from mmdet.registry import MODELS
    backbone = PlainViT(arch=dict(embed_dim=32, depth=2, num_heads=2), img_size=64,
                        window_size=2, global_blocks=(1,), use_rel_pos=True)
    neck = MODELS.build(dict(type='SimpleFeaturePyramid', in_channels=32, out_channels=16))
    outs = neck(backbone(torch.randn(1, 3, 48, 80)))
    assert [tuple(o.shape[-2:]) for o in outs] == [(12, 20), (6, 10), (3, 5), (1, 2)]
    sum(o.sum() for o in outs).backward()
    assert backbone.blocks[0].attn.qkv.weight.grad.abs().sum() > 0
