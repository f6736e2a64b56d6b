"""mmcv's kernels on CUDA against its CPU kernels, as the recipes call them: ``RoIAlign`` in
the RoI extractors and in mmdet's mask targets (``BitmapMasks.crop_and_resize``), ``nms`` and
``batched_nms`` in the RPN and the box head; and ``RoIAlign`` on the channels-last maps that
our pyramids hand it."""
import pytest
import torch
from mmcv.ops import RoIAlign, batched_nms, nms
from mmengine.config import Config
from mmengine.registry import init_default_scope

from mixedconv.benchmark.recipes import TASK_CONFIGS
from mixedconv.config_files import config_path

cuda = pytest.mark.cuda
MASK_RCNN = TASK_CONFIGS['coco-maskrcnn']['ConvViT']


def random_rois(gen, num, num_images, size):
    """``num`` RoIs ``(batch index, x1, y1, x2, y2)`` inside a ``size`` x ``size`` image."""
    xy = torch.rand(num, 2, generator=gen) * size * 0.8
    wh = torch.rand(num, 2, generator=gen) * size * 0.5 + 1
    index = torch.randint(num_images, (num, 1), generator=gen).float()
    return torch.cat([index, xy, (xy + wh).clamp(max=size - 1)], dim=1)


def random_boxes(gen, num, size=100.):
    """``num`` boxes ``(x1, y1, x2, y2)`` with random float scores (no ties)."""
    xy = torch.rand(num, 2, generator=gen) * size
    wh = torch.rand(num, 2, generator=gen) * size * 0.3 + 1
    return torch.cat([xy, xy + wh], dim=1), torch.rand(num, generator=gen)


def pooled_and_grad(layer, feats, rois, grad_out):
    """Output of ``layer`` on ``feats`` (on its device, in its memory layout) and the
    gradient of ``(output * grad_out).sum()`` w.r.t. ``feats``, both on the CPU."""
    x = feats.detach().requires_grad_()
    out = layer(x, rois.to(x.device))
    out.backward(grad_out.to(x.device))
    return out.detach().cpu(), x.grad.cpu()


def roi_align_case(seed=0):
    """A (2, 16, 40, 40) map at stride 2, 128 RoIs in the 80 px image, 7x7 output grads."""
    gen = torch.Generator().manual_seed(seed)
    feats = torch.randn(2, 16, 40, 40, generator=gen)
    rois = random_rois(gen, 128, num_images=2, size=80)
    return feats, rois, torch.randn(128, 16, 7, 7, generator=gen)


@cuda
@pytest.mark.parametrize('sampling_ratio', [0, 2])
@pytest.mark.parametrize('aligned', [True, False])
def test_roi_align_cuda_matches_cpu(aligned, sampling_ratio, record_property):
    feats, rois, grad_out = roi_align_case()
    layer = RoIAlign((7, 7), spatial_scale=0.5, sampling_ratio=sampling_ratio, aligned=aligned)
    ref, ref_grad = pooled_and_grad(layer, feats, rois, grad_out)
    got, got_grad = pooled_and_grad(layer, feats.cuda(), rois, grad_out)
    # the CUDA backward accumulates with atomicAdd: only the order of the sums differs
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(got_grad, ref_grad, rtol=1e-4, atol=1e-5)
    record_property('result', f'RoIAlign(aligned={aligned}, sampling {sampling_ratio}) '
                    f'|cuda-cpu| {(got - ref).abs().max():.0e}, grad '
                    f'{(got_grad - ref_grad).abs().max():.0e}')


def recipe_roi_extractor(channels=16):
    """The Mask R-CNN recipe's box RoI extractor (as its config builds it), ``channels``
    wide."""
    cfg = Config.fromfile(config_path(MASK_RCNN)).model.roi_head.bbox_roi_extractor
    cfg.out_channels = channels
    init_default_scope('mmdet')
    from mmdet.registry import MODELS
    return MODELS.build(cfg)


def pyramid_case(extractor, size=256, seed=0):
    """(2, C, size / s, size / s) maps at the extractor's strides ``s`` (values exact in
    bfloat16) and 256 RoIs in the ``size`` x ``size`` image."""
    gen = torch.Generator().manual_seed(seed)
    feats = [torch.randn(2, extractor.out_channels, size // s, size // s, generator=gen)
             .bfloat16().float() for s in extractor.featmap_strides]
    return feats, random_rois(gen, 256, num_images=2, size=size)


def extract_with_grad(extractor, feats, rois):
    """Pooled features and the gradient of their sum of squares w.r.t. each map, on the
    CPU."""
    feats = [f.detach().requires_grad_() for f in feats]
    out = extractor(feats, rois.to(feats[0].device))
    out.float().square().sum().backward()
    return out.detach().float().cpu(), [f.grad.float().cpu() for f in feats]


@cuda
def test_recipe_roi_extractor_on_cuda_pools_channels_last_maps_as_contiguous_ones():
    """mmcv's CUDA RoIAlign kernel, like its CPU one, reads its input as contiguous NCHW
    memory, and LayerNorm2d and the convolutions after it produce channels-last maps: the
    recipe's extractor must pool the values of the map, not of its memory (on CPU:
    tests/test_roi_extractor.py)."""
    extractor = recipe_roi_extractor().cuda()
    feats, rois = pyramid_case(extractor)
    feats = [f.cuda() for f in feats]
    ref, ref_grads = extract_with_grad(extractor, feats, rois)
    channels_last = [f.contiguous(memory_format=torch.channels_last) for f in feats]
    assert not any(f.is_contiguous() for f in channels_last)
    got, got_grads = extract_with_grad(extractor, channels_last, rois)
    torch.testing.assert_close(got, ref, rtol=0, atol=0, msg=lambda m: (
        f'{type(extractor).__name__} pooled other values from the channels-last maps: {m}'))
    for got_grad, ref_grad in zip(got_grads, ref_grads):  # atomicAdd: the order of sums
        torch.testing.assert_close(got_grad, ref_grad, rtol=1e-5, atol=1e-6)


@cuda
def test_recipe_roi_extractor_under_bf16_autocast_on_cuda_matches_float32_cpu():
    """The extractor under the recipe's bf16 autocast, on CUDA, fed bf16 channels-last maps
    as the neck gives them, pools what mmcv's float32 CPU kernel pools from the same maps,
    to the rounding of its bf16 output."""
    extractor = recipe_roi_extractor()
    feats, rois = pyramid_case(extractor)
    ref = extractor(feats, rois)
    with torch.autocast('cuda', dtype=torch.bfloat16):
        got = extractor.cuda()(
            [f.cuda().bfloat16().contiguous(memory_format=torch.channels_last) for f in feats],
            rois.cuda())
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float().cpu(), ref, rtol=1e-2, atol=1e-2)


@cuda
def test_nms_cuda_keeps_the_boxes_cpu_keeps(record_property):
    gen = torch.Generator().manual_seed(0)
    boxes, scores = random_boxes(gen, 1000)
    _, keep_cpu = nms(boxes, scores, iou_threshold=0.5)
    dets, keep_cuda = nms(boxes.cuda(), scores.cuda(), iou_threshold=0.5)
    assert dets.is_cuda
    assert 0 < len(keep_cpu) < len(boxes)
    assert keep_cuda.cpu().tolist() == keep_cpu.tolist()
    record_property('result', f'nms keeps the same {len(keep_cpu)} of {len(boxes)} boxes')


@cuda
def test_batched_nms_cuda_keeps_the_boxes_cpu_keeps():
    """Per-class NMS as mmdet's RPN and ``multiclass_nms`` call it."""
    gen = torch.Generator().manual_seed(1)
    boxes, scores = random_boxes(gen, 2000)
    labels = torch.randint(3, (len(boxes), ), generator=gen)
    nms_cfg = dict(type='nms', iou_threshold=0.7)
    dets_cpu, keep_cpu = batched_nms(boxes, scores, labels, nms_cfg)
    dets_cuda, keep_cuda = batched_nms(boxes.cuda(), scores.cuda(), labels.cuda(), nms_cfg)
    assert keep_cuda.cpu().tolist() == keep_cpu.tolist()
    torch.testing.assert_close(dets_cuda.cpu(), dets_cpu)
