"""Whole released detectors and segmentors, loaded into our recipe models.

A :class:`WholeSource` is one producer's layout of a whole model (backbone, neck, heads): how it
is recognised, and the one function that gives every tensor our recipe model's name. The
backbone's tensors go through the backbone source layout's adaptation function
(:mod:`.sources`); the rest is renamed here, with the framework differences each function
names in its docstring. :func:`load_whole` accounts for every tensor: one the model has but the
file does not give, one the file has but the model cannot take, or one of another shape is an
error that names it, never a model left partly at its random initialisation.
"""
import re
from dataclasses import dataclass, field
from typing import Callable

from mmengine.logging import print_log

from .errors import CheckpointError
from .recognise import describe_layout, find_encoder, strip_prefix, unwrap_state_dict
from .report import show
from .safe_load import safe_load
from .sources import DERIVED_BUFFERS


@dataclass
class WholeConversion:
    """What a whole-model conversion did.

    Attributes:
        source: the file.
        layout: the whole-model layout it was read as.
        state_dict: the tensors under the model's names.
        renamed: file name -> model name, for the tensors whose name changed.
        checked: file tensors with no place in the model that were compared with what the
            model does instead (detectron2's ``pixel_mean``/``pixel_std`` against the data
            preprocessor), or that it recomputes (relative position index buffers).
        untaken: file tensors the conversion found no place for.
    """
    source: str
    layout: str
    state_dict: dict
    renamed: dict = field(default_factory=dict)
    checked: list = field(default_factory=list)
    untaken: list = field(default_factory=list)


@dataclass
class WholeLoadReport:
    """What :func:`load_whole` found, after conversion, against the model."""
    source: str
    layout: str
    loaded: int
    renamed: int
    checked: list
    missing: list
    unexpected: list
    mismatched: list

    def summary(self, limit=8):
        lines = [f'loaded {self.source} whole (read as {self.layout}): {self.loaded} tensors, '
                 f'{self.renamed} of them renamed; {len(self.checked)} file tensors checked '
                 'instead of loaded (normalisation constants, index buffers the backbone '
                 f'recomputes); {len(self.missing)} left at init, {len(self.unexpected)} '
                 f'unused, {len(self.mismatched)} of another shape']
        for name in ('checked', 'missing', 'unexpected', 'mismatched'):
            if getattr(self, name):
                lines.append(f'  {name}: {show(getattr(self, name), limit)}')
        return '\n'.join(lines)


def rename_all(tensors, renames):
    """(renamed tensors, untaken names): each key renamed by the first (regex, replacement)
    of ``renames`` that matches; keys no rule matches are untaken."""
    out, untaken = {}, []
    for key, value in tensors.items():
        for pattern, replacement in renames:
            new, count = re.subn(pattern, replacement, key)
            if count:
                out[new] = value
                break
        else:
            untaken.append(key)
    return out, untaken


def _norm_name(model_keys, module):
    """The name mmcv's ``ConvModule`` at ``module`` gives its norm layer (``bn``, ``ln``,
    ``gn``), read from the model's own keys."""
    for key in model_keys:
        if key.startswith(module + '.') and not key.startswith(module + '.conv.'):
            return key[len(module) + 1:].split('.')[0]
    return 'bn'


def _conv_norm_rules(theirs, ours, model_keys, numbers, offset):
    """Rules for detectron2 ``Conv2d`` modules with a ``norm`` child (``theirs``, numbered by
    ``{i}`` over ``numbers``) -> mmcv ``ConvModule``s (``ours``, numbered ``i - offset``):
    ``weight``/``bias`` -> ``.conv.``, ``norm.`` -> the ConvModule's norm layer."""
    rules = []
    for i in numbers:
        src, dst = theirs.format(i=i), ours.format(i=i - offset)
        norm = _norm_name(model_keys, dst)
        rules += [(rf'^{re.escape(src)}\.(weight|bias)$', rf'{dst}.conv.\1'),
                  (rf'^{re.escape(src)}\.norm\.', f'{dst}.{norm}.')]
    return rules


# ----------------------------------------------------------------------------------------
# detectron2 Mask R-CNN (Alpha-VL/ConvMAE DET, OpenGVLab/Official-ConvMAE-Det, ViTDet)


def _detectron2_heads(model_keys):
    """detectron2 RPN and RoI heads -> mmdet's ``RPNHead`` and ``StandardRoIHead`` with
    ``Shared4Conv1FCBBoxHead`` and ``FCNMaskHead``. No tensor is reordered:

    * anchors: per location, detectron2 orders them by size then aspect ratio (h/w), one size
      per level, ratios 0.5, 1, 2; mmdet's ``AnchorGenerator`` by ratio then scale: the same
      order; the RPN's objectness channel ``a`` and delta channels ``4a + (dx, dy, dw, dh)``
      are laid out alike (``modeling/proposal_generator/rpn.py``, mmdet ``rpn_head.py``);
    * ``cls_score`` has K + 1 outputs with the background last, as mmdet's ``fc_cls``;
      ``bbox_pred`` is class-specific with ``4k + (dx, dy, dw, dh)``, as ``fc_reg``; the box
      coder weights (10, 10, 5, 5) are the recipe's target stds (0.1, 0.1, 0.2, 0.2);
    * the mask predictor has K outputs without background, as ``conv_logits``.
    """
    return [
        (r'^proposal_generator\.rpn_head\.conv\.conv(\d+)\.', r'rpn_head.rpn_conv.\1.conv.'),
        (r'^proposal_generator\.rpn_head\.conv\.', 'rpn_head.rpn_conv.'),
        (r'^proposal_generator\.rpn_head\.objectness_logits\.', 'rpn_head.rpn_cls.'),
        (r'^proposal_generator\.rpn_head\.anchor_deltas\.', 'rpn_head.rpn_reg.'),
        *_conv_norm_rules('roi_heads.box_head.conv{i}', 'roi_head.bbox_head.shared_convs.{i}',
                          model_keys, range(1, 9), 1),
        (r'^roi_heads\.box_head\.fc(\d+)\.', lambda m: f'roi_head.bbox_head.shared_fcs.'
                                                     f'{int(m.group(1)) - 1}.'),
        (r'^roi_heads\.box_predictor\.cls_score\.', 'roi_head.bbox_head.fc_cls.'),
        (r'^roi_heads\.box_predictor\.bbox_pred\.', 'roi_head.bbox_head.fc_reg.'),
        *_conv_norm_rules('roi_heads.mask_head.mask_fcn{i}', 'roi_head.mask_head.convs.{i}',
                          model_keys, range(1, 9), 1),
        (r'^roi_heads\.mask_head\.deconv\.', 'roi_head.mask_head.upsample.'),
        (r'^roi_heads\.mask_head\.predictor\.', 'roi_head.mask_head.conv_logits.'),
    ]


def _detectron2_fpn(model_keys):
    """detectron2 ``FPN`` (``modeling/backbone/fpn.py``: ``fpn_lateral{2..5}``,
    ``fpn_output{2..5}``, named by log2 of the stride, norm in ``.norm``) -> mmdet's ``FPN``
    (``lateral_convs.{0..3}``, ``fpn_convs.{0..3}``). The top block (``LastLevelMaxPool``)
    and mmdet's extra level are the same 1x1 stride-2 max-pool, without parameters."""
    return (_conv_norm_rules('backbone.fpn_lateral{i}', 'neck.lateral_convs.{i}', model_keys,
                             range(2, 7), 2)
            + _conv_norm_rules('backbone.fpn_output{i}', 'neck.fpn_convs.{i}', model_keys,
                               range(2, 7), 2))


# detectron2 ViTDet ``SimpleFeaturePyramid`` (``modeling/backbone/vit.py``: ``simfp_{2..5}``
# by log2 of the stride; each a Sequential of resampling layers, a 1x1 and a 3x3 conv with
# their norm in ``.norm``) -> our SimpleFeaturePyramid (``resamplers.i``,
# ``lateral_convs.i.{0,1}``, ``output_convs.i.{0,1}``); (their module, its resampling
# layers with parameters, their 1x1 conv index) per level
_SIMFP = (('simfp_2', (0, 1, 3), 4), ('simfp_3', (0,), 1), ('simfp_4', (), 0),
          ('simfp_5', (), 1))


def _detectron2_simfp():
    rules = []
    for level, (theirs, resamplers, conv1) in enumerate(_SIMFP):
        src = rf'^backbone\.{theirs}\.'
        for index in resamplers:
            ours = f'neck.resamplers.{level}.{index}.' if len(resamplers) > 1 else \
                f'neck.resamplers.{level}.'
            rules.append((rf'{src}{index}\.', ours))
        for index, ours in ((conv1, 'lateral_convs'), (conv1 + 1, 'output_convs')):
            rules += [(rf'{src}{index}\.weight$', f'neck.{ours}.{level}.0.weight'),
                      (rf'{src}{index}\.bias$', f'neck.{ours}.{level}.0.bias'),
                      (rf'{src}{index}\.norm\.', f'neck.{ours}.{level}.1.')]
    return rules


def _check_normalisation(state_dict, model, checked):
    """detectron2 keeps the input normalisation as ``pixel_mean``/``pixel_std`` buffers;
    mmdet keeps it in the data preprocessor's config. They must agree."""
    import torch
    preprocessor = getattr(model, 'data_preprocessor', None)
    for name, ours in (('pixel_mean', 'mean'), ('pixel_std', 'std')):
        if name not in state_dict:
            continue
        theirs = state_dict[name].flatten().float()
        own = getattr(preprocessor, ours, None)
        if own is None or own.numel() != theirs.numel() or \
                not torch.allclose(own.flatten().float().cpu(), theirs, atol=1e-3):
            raise CheckpointError(
                f'the released model normalises its input with {name} {theirs.tolist()}, the '
                f'recipe with {None if own is None else own.flatten().tolist()}: set '
                f'model.data_preprocessor.{ours} (and bgr_to_rgb) to what the model was '
                'trained with')
        checked.append(name)


def convert_detectron2_mask_rcnn(state_dict, model, source='checkpoint'):
    """A detectron2 Mask R-CNN (``GeneralizedRCNN``) -> our Mask R-CNN recipe model.

    The backbone is under ``backbone.bottom_up.`` (Alpha-VL/ConvMAE DET: ConvViT + FPN) or
    ``backbone.net.`` (ViTDet and OpenGVLab/Official-ConvMAE-Det: a plain or ConvMAE
    backbone + simple feature pyramid); the neck is the FPN or the pyramid
    (:func:`_detectron2_fpn`, :func:`_detectron2_simfp`), the heads
    :func:`_detectron2_heads`.
    """
    model_keys = list(model.state_dict())
    conversion = WholeConversion(str(source), '', {})
    backbone, consumed = _backbone(state_dict, model, conversion, source)
    rest = {k: v for k, v in state_dict.items() if k not in consumed}
    _check_normalisation(rest, model, conversion.checked)
    rest = {k: v for k, v in rest.items() if k not in conversion.checked}
    neck = _detectron2_fpn(model_keys) if any(k.startswith('backbone.fpn_') for k in rest) \
        else _detectron2_simfp()
    converted, conversion.untaken = rename_all(rest, neck + _detectron2_heads(model_keys))
    conversion.renamed.update(_renames(rest, converted))
    conversion.state_dict = {**backbone, **converted}
    return conversion


# ----------------------------------------------------------------------------------------
# mmseg UperNet (Alpha-VL/ConvMAE SEG and mmseg's MAE, 0.x) and mmengine models (ours)


def convert_mm_model(state_dict, model, source='checkpoint'):
    """An OpenMMLab model whose neck and heads have our recipe's names: mmseg 0.x UperNet
    (``decode_head``, ``auxiliary_head``: mmcv 1.x and 2.x ``ConvModule`` name their layers
    alike, and mmseg 0.x and 1.x UPerHead / FCNHead build the same modules) and mmdet /
    mmseg 1.x models. Our backbones go through their source layout (the ConvMAE SEG names,
    mmseg's MAE names and its ``Feature2Pyramid`` neck, or ours); any other model takes the
    file's names as they are."""
    conversion = WholeConversion(str(source), 'names as they are', {})
    backbone, consumed = {}, set()
    if hasattr(getattr(model, 'backbone', None), 'family'):  # ours: through its source layout
        backbone, consumed = _backbone(state_dict, model, conversion, source)
    rest = {k: v for k, v in state_dict.items() if k not in consumed}
    own = set(model.state_dict())
    conversion.state_dict = {**backbone, **{k: v for k, v in rest.items() if k in own}}
    conversion.untaken = [k for k in rest if k not in own]
    return conversion


def _backbone(state_dict, model, conversion, source):
    """The backbone's tensors under ``backbone.``, through its source layout, and the names
    of the file's tensors that went into them (the encoder's, and those of a neck the
    backbone builds itself); the encoder's derived index buffers, which the backbone
    recomputes, are added to ``conversion.checked``."""
    encoder = find_encoder(state_dict, model.backbone.family, source=source)
    conversion.layout = encoder.source.producer
    adapted = encoder.adapted(model.backbone)
    origin = {id(v): k for k, v in encoder.others.items()}
    origin.update({id(v): encoder.prefix + k for k, v in encoder.tensors.items()})
    consumed = {encoder.prefix + k for k in encoder.tensors}
    for key, value in adapted.items():
        name = origin.get(id(value))
        if name is not None:
            consumed.add(name)
            if name != 'backbone.' + key:
                conversion.renamed[name] = 'backbone.' + key
    conversion.checked += [encoder.prefix + k for k in encoder.tensors
                           if k.endswith(DERIVED_BUFFERS)]
    return {'backbone.' + k: v for k, v in adapted.items()}, consumed


def _renames(before, after):
    by_identity = {id(v): k for k, v in before.items()}
    return {by_identity[id(v)]: k for k, v in after.items()
            if id(v) in by_identity and by_identity[id(v)] != k}


# ----------------------------------------------------------------------------------------
# the table and the load


@dataclass(frozen=True)
class WholeSource:
    """One producer's layout of a whole model.

    Attributes:
        name: short name.
        producer: who writes it, for reports.
        matches: ``state_dict -> bool`` on the unwrapped state dict.
        convert: ``(state_dict, model, source) -> WholeConversion``.
    """
    name: str
    producer: str
    matches: Callable
    convert: Callable


WHOLE_SOURCES = (
    WholeSource('detectron2_mask_rcnn',
                'detectron2 Mask R-CNN (Alpha-VL/ConvMAE DET, Official-ConvMAE-Det, ViTDet)',
                lambda sd: any(k.startswith('proposal_generator.rpn_head.') for k in sd),
                convert_detectron2_mask_rcnn),
    WholeSource('mm_model', 'OpenMMLab model (mmseg 0.x UperNet, mmdet / mmseg 1.x, ours)',
                lambda sd: True, convert_mm_model),
)


def convert_whole(checkpoint, model, source='checkpoint'):
    """Convert a loaded whole-model checkpoint to ``model``'s names (see the module
    docstring); CheckpointError when its layout is none of :data:`WHOLE_SOURCES`."""
    layout = describe_layout(checkpoint)
    state_dict = unwrap_state_dict(checkpoint)
    for whole in WHOLE_SOURCES:
        if whole.matches(state_dict):
            conversion = whole.convert(state_dict, model, source)
            conversion.layout = f'{whole.producer}, backbone as {conversion.layout}; {layout}'
            return conversion
    raise AssertionError('the last whole source matches every state dict')


def load_whole(model, filename, logger='current'):
    """Read ``filename`` (:func:`~.safe_load.safe_load`) and load it whole into ``model``
    (:func:`load_whole_checkpoint`)."""
    return load_whole_checkpoint(model, safe_load(filename), filename, logger)


def load_whole_checkpoint(model, checkpoint, source='checkpoint', logger='current'):
    """Load a whole released (or our own) model checkpoint, already read, into ``model``,
    every tensor accounted for.

    Raises:
        CheckpointError: a tensor of the model would stay at its initialisation, a tensor of
            the file has no place in the model, or one has another shape; the message names
            them.

    Returns:
        WholeLoadReport
    """
    conversion = convert_whole(checkpoint, model, source)
    own = model.state_dict()
    converted = conversion.state_dict
    report = WholeLoadReport(
        source=str(source), layout=conversion.layout, loaded=0,
        renamed=len(conversion.renamed), checked=conversion.checked,
        missing=[k for k in own if k not in converted],
        unexpected=conversion.untaken + [k for k in converted if k not in own],
        mismatched=[f'{k} {tuple(v.shape)} vs {tuple(own[k].shape)}'
                    for k, v in converted.items() if k in own and v.shape != own[k].shape])
    if report.missing or report.unexpected or report.mismatched:
        raise CheckpointError(
            f'{source} does not load whole into {type(model).__name__}: '
            + '; '.join(f'{len(names)} {what} ({show(names, 6)})' for what, names in (
                ('tensors of the model the file does not give', report.missing),
                ('tensors of the file the model has no place for', report.unexpected),
                ('tensors of another shape', report.mismatched)) if names)
            + '. Build the model from the recipe the file was trained with (sizes, classes, '
            'heads, norms); to start from part of a model, load that part with '
            'init_cfg=dict(type="Pretrained", checkpoint=..., prefix=...) instead of '
            f'load_from.\n{report.summary()}')
    model.load_state_dict(converted, strict=True)
    report.loaded = len(converted)
    print_log(report.summary(), logger=logger)
    return report


def convert_whole_checkpoint(src, dst, model):
    """Load ``src`` whole into ``model`` (:func:`load_whole`) and write the model's state
    dict as mmengine writes a checkpoint (``{'meta': ..., 'state_dict': ...}``) to ``dst``,
    atomically; ``python -m mixedconv.test`` and ``load_from`` then read it under its own
    names.

    Returns:
        WholeLoadReport
    """
    import io

    import torch

    from ..fileio import atomic_write
    from .convert import _check_not_the_source
    _check_not_the_source(src, dst)
    report = load_whole(model, src, logger='silent')
    buffer = io.BytesIO()
    torch.save({'meta': dict(converted_from=str(src), layout=report.layout),
                'state_dict': model.state_dict()}, buffer)
    atomic_write(dst, buffer.getvalue())
    return report


__all__ = ['WholeSource', 'WHOLE_SOURCES', 'WholeConversion', 'WholeLoadReport',
           'convert_whole', 'convert_whole_checkpoint', 'load_whole',
           'load_whole_checkpoint']
