"""Box decoding of the Mask R-CNN recipes as detectron2's ``Box2BoxTransform``.

Imported by the recipes (``custom_imports``) rather than by ``import mixedconv``, so that the
backbones can be used without importing mmdet.
"""
import math

from mmdet.models.task_modules.coders import DeltaXYWHBBoxCoder

from ..registry import TASK_UTILS


@TASK_UTILS.register_module()
class UpperClampedDeltaXYWHBBoxCoder(DeltaXYWHBBoxCoder):
    """mmdet's ``DeltaXYWHBBoxCoder`` whose predicted log-scales are clamped from above only.

    detectron2's ``Box2BoxTransform.apply_deltas`` (facebookresearch/detectron2
    ``detectron2/modeling/box_regression.py``, ``scale_clamp = log(1000 / 16)``) clamps the
    width and height deltas ``dw, dh`` to at most ``log(1000 / 16)`` and leaves them unbounded
    below. mmdet clamps them to ``[-log(1000 / 16), log(1000 / 16)]``: a box the network
    shrinks by more than 62.5x keeps 16/1000 of the reference width in mmdet and its predicted
    width in detectron2 (RPN proposals and box-head outputs alike). Encoding is mmdet's.

    Args:
        clamp_below (bool): also clamp ``dw, dh`` from below at ``-log(1000 / 16)``, as
            mmdet does. Default False (detectron2).
        **kwargs: the arguments of ``DeltaXYWHBBoxCoder`` (``target_means``, ``target_stds``,
            ``clip_border``, ...), except its YOLOF centre clamp.
    """

    def __init__(self, clamp_below=False, **kwargs):
        if 'add_ctr_clamp' in kwargs or 'ctr_clamp' in kwargs:
            raise ValueError('UpperClampedDeltaXYWHBBoxCoder has no centre clamp '
                             '(add_ctr_clamp / ctr_clamp): use DeltaXYWHBBoxCoder for YOLOF')
        # mmdet's YOLOF branch clamps dw, dh from above only; an infinite centre clamp
        # leaves the centre shift as it is
        super().__init__(**kwargs, **({} if clamp_below else
                                      dict(add_ctr_clamp=True, ctr_clamp=math.inf)))
        self.clamp_below = clamp_below
