"""The Mask R-CNN recipes resize images and post-process test-time boxes as detectron2 does.

Restated from the official code:

* resizing (detectron2 ``detectron2/data/transforms/transform.py`` ``ResizeTransform``): a
  uint8 image goes through ``PIL.Image.resize(..., Image.BILINEAR)``, which antialiases when
  downscaling; the test size is ``ResizeShortestEdge.get_output_shape``
  (``augmentation_impl.py``);
* box decoding (``detectron2/modeling/box_regression.py`` ``Box2BoxTransform.apply_deltas``):
  widths ``x1 - x0``, centres ``x0 + w / 2``, deltas divided by the weights, ``dw, dh`` clamped
  from above only at ``log(1000 / 16)``;
* test-time boxes (``detectron2/modeling/postprocessing.py`` ``detector_postprocess``; the
  ConvMAE FPN recipe's ``lsj_postprocess``: Alpha-VL/ConvMAE
  ``DET/models/modeling/postprocessing.py``): scaled from the input image size to the original
  one (per axis; ConvMAE FPN: the larger ratio on both axes), clipped to the original image,
  empty ones dropped, masks pasted into the clipped boxes.
"""
import copy
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
from mmdet.structures.bbox import HorizontalBoxes
from mmdet.structures.mask import BitmapMasks
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.registry import init_default_scope
from mmengine.structures import InstanceData
from PIL import Image

from mixedconv import register_all_modules
from mixedconv.benchmark.tiny import shrink_transfer
from mixedconv.data import make_coco

register_all_modules()
import mixedconv.models.box_coder  # noqa: E402,F401  (imported by the Mask R-CNN recipes)
import mixedconv.models.mask_head  # noqa: E402,F401

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
# config -> the official test-time box scale: 'max' for lsj_postprocess, else per axis
RECIPES = {
    'convmae/mask-rcnn_convvit-base-p16_fpn_8xb4-amp-lsj-1024-25e_coco.py': 'max',
    'convmae/mask-rcnn_convvit-base-p16_sfp_8xb2-amp-lsj-1024-25e_coco.py': 'per_axis',
    'mixedae/mask-rcnn_vit-base-p16_sfp_16xb4-amp-lsj-1024-100e_coco.py': 'per_axis',
    'mae/mask-rcnn_vit-base-p16_sfp_16xb4-amp-lsj-1024-100e_coco.py': 'per_axis',
}


def d2_test_size(oldh, oldw, short_edge_length, max_size):
    """detectron2 ResizeShortestEdge.get_output_shape -> (new_h, new_w)."""
    size = short_edge_length * 1.0
    scale = size / min(oldh, oldw)
    newh, neww = (size, scale * oldw) if oldh < oldw else (scale * oldh, size)
    if max(newh, neww) > max_size:
        scale = max_size * 1.0 / max(newh, neww)
        newh, neww = newh * scale, neww * scale
    return int(newh + 0.5), int(neww + 0.5)


def d2_postprocess(boxes, img_shape, ori_shape, use_max):
    """detector_postprocess (use_max: ConvMAE's lsj variant) -> (boxes, kept)."""
    (img_h, img_w), (ori_h, ori_w) = img_shape, ori_shape
    scale_x, scale_y = ori_w / img_w, ori_h / img_h
    if use_max:
        scale_x = scale_y = max(scale_x, scale_y)
    boxes = boxes * torch.tensor([scale_x, scale_y, scale_x, scale_y])
    boxes[:, 0::2] = boxes[:, 0::2].clamp(min=0, max=ori_w)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(min=0, max=ori_h)
    kept = (boxes[:, 2] - boxes[:, 0] > 0) & (boxes[:, 3] - boxes[:, 1] > 0)
    return boxes[kept], kept


def d2_apply_deltas(deltas, boxes, weights):
    """Box2BoxTransform(weights).apply_deltas for (n, 4) deltas and boxes."""
    widths, heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    ctr_x, ctr_y = boxes[:, 0] + 0.5 * widths, boxes[:, 1] + 0.5 * heights
    wx, wy, ww, wh = weights
    dx, dy = deltas[:, 0] / wx, deltas[:, 1] / wy
    dw = (deltas[:, 2] / ww).clamp(max=np.log(1000. / 16))
    dh = (deltas[:, 3] / wh).clamp(max=np.log(1000. / 16))
    x, y = dx * widths + ctr_x, dy * heights + ctr_y
    w, h = dw.exp() * widths, dh.exp() * heights
    return torch.stack([x - 0.5 * w, y - 0.5 * h, x + 0.5 * w, y + 0.5 * h], 1)


def pipeline_step(cfg, pipeline, kind):
    from mmdet.registry import TRANSFORMS
    init_default_scope('mmdet')
    step, = [s for s in pipeline if s['type'] == kind]
    return TRANSFORMS.build(copy.deepcopy(step))


@pytest.mark.parametrize('name', sorted(RECIPES))
def test_test_resize_is_pil_bilinear_at_detectron2s_size(name):
    cfg = Config.fromfile(osp.join(ROOT, 'configs', name))
    resize = pipeline_step(cfg, cfg.test_dataloader.dataset.pipeline, 'Resize')
    img = np.random.default_rng(0).integers(0, 256, (3000, 4096, 3), dtype=np.uint8)
    out = resize(dict(img=img.copy(), img_shape=img.shape[:2], ori_shape=img.shape[:2]))
    new_h, new_w = d2_test_size(*img.shape[:2], 1024, 1024)  # a 4x downscale
    assert out['img'].shape[:2] == (new_h, new_w) == (750, 1024)
    pil = np.asarray(Image.fromarray(img).resize((new_w, new_h), Image.BILINEAR))
    np.testing.assert_array_equal(out['img'], pil)
    # OpenCV's bilinear (mmcv's default backend) does not antialias: far from PIL's
    opencv = cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    assert np.abs(opencv.astype(float) - pil).mean() > 10


def test_test_sizes_are_detectron2s():
    """mmcv's keep-ratio size of the recipes' Resize(scale=(1024, 1024)) equals detectron2's
    ResizeShortestEdge(1024, max_size=1024) size for every image side up to 1500 px."""
    from mmcv.image.geometric import rescale_size
    cfg = Config.fromfile(osp.join(ROOT, 'configs', sorted(RECIPES)[0]))
    scale = pipeline_step(cfg, cfg.test_dataloader.dataset.pipeline, 'Resize').scale
    sides = range(1, 1501, 7)
    wrong = [(h, w) for h in sides for w in sides
             if rescale_size((w, h), scale)[::-1] != d2_test_size(h, w, 1024, 1024)]
    assert not wrong


@pytest.mark.parametrize('name', sorted(RECIPES))
def test_train_resize_is_pil_bilinear_with_masks_and_boxes_along(name):
    cfg = Config.fromfile(osp.join(ROOT, 'configs', name))
    resize = pipeline_step(cfg, cfg.train_dataloader.dataset.dataset.pipeline, 'RandomResize')
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (1600, 2400, 3), dtype=np.uint8)
    masks = np.zeros((1, 1600, 2400), dtype=np.uint8)
    masks[0, 400:800, 600:1800] = 1
    boxes = np.array([[600., 400., 1800., 800.]], dtype=np.float32)
    np.random.seed(3)  # RandomResize draws its ratio from numpy
    out = resize(dict(img=img.copy(), img_shape=img.shape[:2], ori_shape=img.shape[:2],
                      gt_bboxes=HorizontalBoxes(boxes.copy()),
                      gt_masks=BitmapMasks(masks, 1600, 2400)))
    new_h, new_w = out['img'].shape[:2]
    assert new_w < 2400 / 2  # a downscale by more than 2 (seeded ratio)
    pil = np.asarray(Image.fromarray(img).resize((new_w, new_h), Image.BILINEAR))
    np.testing.assert_array_equal(out['img'], pil)
    # masks and boxes follow the image's per-axis scale, as detectron2's apply_coords
    assert (out['gt_masks'].height, out['gt_masks'].width) == (new_h, new_w)
    expected = boxes * np.array([new_w / 2400, new_h / 1600] * 2, dtype=np.float32)
    np.testing.assert_allclose(out['gt_bboxes'].numpy(), expected, rtol=1e-6)
    ys, xs = np.nonzero(out['gt_masks'].masks[0])
    np.testing.assert_allclose([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], expected[0],
                               atol=1)


@pytest.fixture(scope='module')
def coco(tmp_path_factory):
    """Images of 96 x 160 px: the tiny recipes resize them into a 64-px input."""
    root = tmp_path_factory.mktemp('coco')
    make_coco(str(root), num_train=2, num_val=2, size=(96, 160))
    return root


@pytest.mark.parametrize('name', sorted(RECIPES)[:3])
def test_predicted_boxes_are_postprocessed_as_detectron2s(name, coco):
    """A tiny detector of the recipe predicts on a generated image; its boxes are the ones
    mmdet's box head predicts in input pixels, post-processed as the official code does."""
    cfg = shrink_transfer(Config.fromfile(osp.join(ROOT, 'configs', name)), str(coco))
    cfg.model.backbone.init_cfg = None
    init_default_scope('mmdet')
    from mmdet.registry import DATASETS, MODELS
    torch.manual_seed(0)
    model = MODELS.build(cfg.model).eval()
    data = model.data_preprocessor(
        pseudo_collate([DATASETS.build(cfg.test_dataloader.dataset)[0]]), False)
    samples = data['data_samples']
    with torch.no_grad():
        feats = model.extract_feat(data['inputs'])
        proposals = model.rpn_head.predict(feats, copy.deepcopy(samples), rescale=False)
        raw = model.roi_head.predict_bbox(
            feats, [s.metainfo for s in samples], proposals,
            rcnn_test_cfg=model.roi_head.test_cfg, rescale=False)[0]
        pred = model.predict(data['inputs'], copy.deepcopy(samples), rescale=True)[0]
    meta = pred.metainfo
    ori_h, ori_w = meta['ori_shape']
    use_max = RECIPES[name] == 'max'
    if use_max:  # the raw-128 pad: the input image is the whole padded canvas
        assert meta['img_shape'] == tuple(data['inputs'].shape[-2:])
    boxes, kept = d2_postprocess(raw.bboxes, meta['img_shape'], meta['ori_shape'], use_max)
    got = pred.pred_instances
    torch.testing.assert_close(got.bboxes, boxes)
    torch.testing.assert_close(got.scores, raw.scores[kept])
    assert ((got.bboxes[:, 2:] > got.bboxes[:, :2]).all() and (got.bboxes >= 0).all()
            and (got.bboxes[:, 2] <= ori_w).all() and (got.bboxes[:, 3] <= ori_h).all())
    assert got.masks.shape == (len(boxes), ori_h, ori_w)
    ys, xs = torch.meshgrid(torch.arange(ori_h) + .5, torch.arange(ori_w) + .5, indexing='ij')
    for mask, (x0, y0, x1, y1) in zip(got.masks, got.bboxes):
        assert not mask[(xs < x0) | (xs > x1) | (ys < y0) | (ys > y1)].any()
    if use_max:
        # the canvas extends below the image: mmdet's own rescale would leave boxes there
        unclipped = raw.bboxes * max(ori_w / meta['img_shape'][1], ori_h / meta['img_shape'][0])
        assert (unclipped[:, 3] > ori_h).any() and not kept.all()


def test_empty_boxes_are_dropped_with_their_predictions():
    """Boxes of a 64 x 64 input of a 96 x 128 original (scales 2 on x, 1.5 on y): one
    inside, one that clipping emptied, one crossing the image border."""
    from mmdet.registry import MODELS
    init_default_scope('mmdet')
    head = MODELS.build(dict(type='ClippedFCNMaskHead', num_convs=0, in_channels=4,
                             conv_out_channels=4, num_classes=2, box_rescale='per_axis'))
    results = InstanceData(bboxes=torch.tensor([[4., 4., 20., 30.], [10., 48., 30., 48.],
                                                [40., 20., 70., 70.]]),
                           labels=torch.tensor([0, 1, 0]), scores=torch.tensor([.9, .8, .7]))
    meta = dict(img_shape=(64, 64), ori_shape=(96, 128), scale_factor=(.5, 2 / 3))
    # foreground: the top-left quarter of each box
    mask_preds = torch.full((3, 2, 8, 8), -10.)
    mask_preds[:, :, :4, :4] = 10.
    out, = head.predict_by_feat((mask_preds, ), [results], [meta],
                                Config(dict(mask_thr_binary=0.5)), rescale=True)
    torch.testing.assert_close(out.bboxes, torch.tensor([[8., 6., 40., 45.],
                                                         [80., 30., 128., 96.]]))
    torch.testing.assert_close(out.scores, torch.tensor([.9, .7]))
    assert out.masks.shape == (2, 96, 128)
    # pasted into the clipped box x 80..128, y 30..96, so the quarter ends near x 104, y 63
    # (the unclipped box x 80..140, y 30..105 would put it at x 110, y 67)
    assert out.masks[1, 32:61, 82:102].all()
    assert not out.masks[1, :, 106:].any() and not out.masks[1, 66:].any()


# box deltas: ordinary ones, and log-scales beyond +-log(1000 / 16) = 4.135 (times the weight)
DELTAS = torch.tensor([[0.3, -0.2, 0.5, -0.4], [0.1, 0.1, -6.0, -9.0], [-0.1, 0.2, 7.0, -30.0]])
BOXES = torch.tensor([[10., 20., 110., 70.], [200., 100., 600., 500.], [5., 5., 45., 905.]])


@pytest.mark.parametrize('name', sorted(RECIPES))
@pytest.mark.parametrize('head', ['rpn', 'rcnn'])
def test_box_deltas_are_decoded_as_detectron2s(name, head):
    """The recipe's RPN and box-head coders decode as detectron2's Box2BoxTransform with the
    official weights (RPN 1, 1, 1, 1; box head 10, 10, 5, 5): a box shrunk by more than
    62.5x keeps its predicted size (mmdet's DeltaXYWHBBoxCoder widens it to 16/1000)."""
    from mmdet.registry import TASK_UTILS
    init_default_scope('mmdet')
    cfg = Config.fromfile(osp.join(ROOT, 'configs', name)).model
    coder_cfg = cfg.rpn_head.bbox_coder if head == 'rpn' else cfg.roi_head.bbox_head.bbox_coder
    coder = TASK_UTILS.build(coder_cfg)
    weights = (1., 1., 1., 1.) if head == 'rpn' else (10., 10., 5., 5.)
    deltas = DELTAS * torch.tensor(weights)
    expected = d2_apply_deltas(deltas, BOXES, weights)
    got = coder.decode(BOXES, deltas, max_shape=None)
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-4)
    assert (got[1, 2] - got[1, 0]) < 400 * 16 / 1000  # narrower than mmdet's floor


def test_box_coder_clamps_below_on_request():
    """clamp_below=True is mmdet's coder; the centre clamp of YOLOF is refused."""
    from mmdet.registry import TASK_UTILS
    init_default_scope('mmdet')
    ours = TASK_UTILS.build(dict(type='UpperClampedDeltaXYWHBBoxCoder', clamp_below=True))
    mmdet = TASK_UTILS.build(dict(type='DeltaXYWHBBoxCoder'))
    torch.testing.assert_close(ours.decode(BOXES, DELTAS), mmdet.decode(BOXES, DELTAS))
    with pytest.raises(ValueError, match='centre clamp'):
        TASK_UTILS.build(dict(type='UpperClampedDeltaXYWHBBoxCoder', add_ctr_clamp=True))
