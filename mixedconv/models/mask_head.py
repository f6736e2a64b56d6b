"""Test-time boxes and masks of the Mask R-CNN recipes as detectron2 post-processes them.

Imported by the recipes (``custom_imports``) rather than by ``import mixedconv``, so that the
backbones can be used without importing mmdet.
"""
from mmdet.models.roi_heads.mask_heads import FCNMaskHead

from ..registry import MODELS

BOX_RESCALES = ('per_axis', 'max')


@MODELS.register_module()
class ClippedFCNMaskHead(FCNMaskHead):
    """mmdet's ``FCNMaskHead`` whose test-time output is post-processed as detectron2's.

    detectron2 returns a detector's instances through ``detector_postprocess``
    (facebookresearch/detectron2 ``detectron2/modeling/postprocessing.py``): the boxes, which
    the RPN and the box head clipped to the network input's image size, are scaled to the
    original image, clipped to it, the empty ones (zero width or height) are dropped, and the
    masks are pasted into the clipped boxes. mmdet only rescales (``bboxes /= scale_factor``)
    and pastes into the unclipped boxes. With ``rescale=True`` (what mmdet's test loop asks)
    this head does detectron2's steps instead; without it, it is ``FCNMaskHead``.

    ``box_rescale`` chooses the scale, from ``img_shape`` (the input image size the boxes were
    clipped to) and ``ori_shape``:

    * ``'per_axis'``: ``ori_w / img_w`` on x and ``ori_h / img_h`` on y (detectron2's
      ``detector_postprocess``: the ViTDet recipes, where ``img_shape`` is the resized image
      before the batch padding);
    * ``'max'``: the larger of the two on both axes (Alpha-VL/ConvMAE
      ``DET/models/modeling/postprocessing.py``, selected by ``lsj_postprocess=True`` in
      ``DET/configs/convmae/convmae_base_mask_rcnn_FPN_100ep.py``). That recipe pads every test
      image to 1024x1024 in the pipeline, so ``img_shape`` is the padded canvas and the larger
      ratio is the resize ratio of the long side.

    Args:
        box_rescale (str): ``'per_axis'`` or ``'max'``.
        **kwargs: the arguments of ``FCNMaskHead``.
    """

    def __init__(self, box_rescale='per_axis', **kwargs):
        if box_rescale not in BOX_RESCALES:
            raise ValueError(f'box_rescale must be one of {BOX_RESCALES}, got {box_rescale!r}')
        super().__init__(**kwargs)
        self.box_rescale = box_rescale

    def predict_by_feat(self, mask_preds, results_list, batch_img_metas, rcnn_test_cfg,
                        rescale=False, activate_map=False):
        """As ``FCNMaskHead.predict_by_feat``; with ``rescale`` the boxes of each image
        (``(n, 4)`` x1y1x2y2 in input pixels) are scaled to the original image, clipped to
        it, the empty ones dropped with their predictions, and the masks ``(n, H, W)`` pasted
        at the original size into the clipped boxes."""
        if not rescale:
            return super().predict_by_feat(mask_preds, results_list, batch_img_metas,
                                           rcnn_test_cfg, rescale=False,
                                           activate_map=activate_map)
        mask_preds, results_list, metas = list(mask_preds), list(results_list), []
        for i, (results, meta) in enumerate(zip(results_list, batch_img_metas)):
            boxes = self.postprocess_boxes(results.bboxes, meta['img_shape'], meta['ori_shape'])
            keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
            results = results[keep]
            results.bboxes = boxes[keep]
            results_list[i], mask_preds[i] = results, mask_preds[i][keep]
            # the boxes are in original pixels now: FCNMaskHead's own rescale is an identity
            metas.append(dict(meta, scale_factor=(1., 1.)))
        return super().predict_by_feat(mask_preds, results_list, metas, rcnn_test_cfg,
                                       rescale=True, activate_map=activate_map)

    def postprocess_boxes(self, boxes, img_shape, ori_shape):
        """``(n, 4)`` boxes in input pixels -> scaled to ``ori_shape`` and clipped to it."""
        (img_h, img_w), (ori_h, ori_w) = img_shape[:2], ori_shape[:2]
        scale_x, scale_y = ori_w / img_w, ori_h / img_h
        if self.box_rescale == 'max':
            scale_x = scale_y = max(scale_x, scale_y)
        boxes = boxes * boxes.new_tensor([scale_x, scale_y, scale_x, scale_y])
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, ori_w)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, ori_h)
        return boxes
