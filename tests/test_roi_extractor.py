"""RoI pooling sees contiguous NCHW maps.

mmcv 2.1's RoIAlign kernel indexes its input as a contiguous (B, C, H, W) array without
checking the strides, so a channels-last map (what LayerNorm2d, the transposed token
grids and every convolution applied to them produce) pools garbage. These tests pool from
channels-last maps, and spy on the mmcv kernels during a test-time forward of every Mask
R-CNN recipe.
"""
import glob
import os.path as osp

import mmcv._ext
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.runner import Runner

from mixedconv.benchmark.tiny import shrink_transfer
from mixedconv.data import make_coco
from mixedconv.registry import MODELS

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
MASK_RCNN = sorted(
    osp.relpath(path, ROOT) for path in
    glob.glob(osp.join(ROOT, 'configs', '[!_]*', 'mask-rcnn_*.py')))


def _roi_extractor(kind):
    init_default_scope('mmdet')
    import mixedconv.models.roi_extractor  # noqa: F401  (registers the float32 extractor)
    return MODELS.build(dict(
        type=kind, out_channels=8, featmap_strides=[4, 8, 16, 32],
        roi_layer=dict(type='RoIAlign', output_size=7, sampling_ratio=0)))


def _maps_and_rois(seed=0):
    gen = torch.Generator().manual_seed(seed)
    feats = tuple(torch.randn(2, 8, 64 // s, 64 // s, generator=gen) for s in (1, 2, 4, 8))
    boxes = torch.rand(24, 2, generator=gen) * 40
    sizes = torch.rand(24, 2, generator=gen) * 24 + 2
    rois = torch.cat([torch.arange(24).remainder(2).float()[:, None], boxes, boxes + sizes], 1)
    return feats, rois


def test_float32_extractor_pools_channels_last_maps_as_contiguous_ones():
    extractor = _roi_extractor('Float32SingleRoIExtractor')
    feats, rois = _maps_and_rois()
    channels_last = tuple(f.contiguous(memory_format=torch.channels_last) for f in feats)
    assert not channels_last[0].is_contiguous()
    expected = extractor(feats, rois)
    torch.testing.assert_close(extractor(channels_last, rois), expected, rtol=0, atol=1e-6)


def test_mmcv_roi_align_needs_contiguous_input():
    """Why the extractor makes its maps contiguous: mmcv's kernel reads the raw buffer (if
    mmcv ever checks strides itself, this test fails and the copy can go)."""
    extractor = _roi_extractor('SingleRoIExtractor')
    feats, rois = _maps_and_rois()
    channels_last = tuple(f.contiguous(memory_format=torch.channels_last) for f in feats)
    assert (extractor(channels_last, rois) - extractor(feats, rois)).abs().max() > 0.1


class _KernelSpy:
    """Wraps mmcv's compiled kernels (``mmcv._ext``) and records, per kernel, whether every
    tensor argument it got was contiguous."""

    KERNELS = ('roi_align_forward', 'nms')

    def __init__(self, monkeypatch):
        self.calls = {name: [] for name in self.KERNELS}
        for name in self.KERNELS:
            monkeypatch.setattr(mmcv._ext, name, self._wrap(name, getattr(mmcv._ext, name)))

    def _wrap(self, name, kernel):
        def spy(*args, **kwargs):
            tensors = [a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)]
            self.calls[name].append(all(t.is_contiguous() for t in tensors))
            return kernel(*args, **kwargs)
        return spy


@pytest.fixture(scope='module')
def coco(tmp_path_factory):
    root = tmp_path_factory.mktemp('coco')
    make_coco(str(root), num_train=2, num_val=2)
    return str(root)


@pytest.mark.parametrize('config', MASK_RCNN)
def test_recipe_hands_mmcv_kernels_contiguous_tensors(config, coco, tmp_path, monkeypatch):
    """A whole test-time pass of each Mask R-CNN recipe (tiny): RoIAlign (box and mask
    branches) and NMS (RPN and RoI head) get contiguous tensors only."""
    cfg = shrink_transfer(Config.fromfile(osp.join(ROOT, config)), coco)
    cfg.model.backbone.init_cfg = None
    cfg.work_dir = str(tmp_path)
    runner = Runner.from_cfg(cfg)
    spy = _KernelSpy(monkeypatch)
    runner.test()
    for name, calls in spy.calls.items():
        assert calls, f'{name} was never called'
        assert all(calls), f'{name} got a non-contiguous tensor in {calls.count(False)} calls'


@pytest.mark.parametrize('config', MASK_RCNN)
def test_recipe_backbone_and_neck_return_contiguous_maps(config, coco):
    """What a stock mmdet RoI extractor (without our float32 copy) would get: every map the
    backbone and the neck of each recipe return is contiguous NCHW."""
    cfg = shrink_transfer(Config.fromfile(osp.join(ROOT, config)), coco)
    cfg.model.backbone.init_cfg = None
    init_default_scope('mmdet')
    model = MODELS.build(cfg.model).eval()
    with torch.no_grad():
        maps = model.backbone(torch.randn(1, 3, 64, 64))
        assert all(m.is_contiguous() for m in maps), [m.stride() for m in maps]
        pyramid = model.neck(maps)
    assert all(p.is_contiguous() for p in pyramid), [p.stride() for p in pyramid]
