"""What ConvViT and PlainViT share as drop-in backbones of mm configs.

* the token grid of an input, and for dense outputs the padding of inputs whose sides are not
  multiples of the patch (mmseg's ViT pads its patch embedding the same way, ``patch_pad``),
  with every output cropped back to the grid of the unpadded input;
* stage freezing in the mm numbering (-1 nothing, 0 the stem, k the stem and the first k
  stages, all stages also the final norms, as mmpretrain's ViT) and ``norm_eval``;
* layer ids for layer-wise lr decay;
* the options users leave in place from ResNet-era configs: ``pretrained`` (mapped to
  ``init_cfg`` with mmseg's deprecation warning), ``norm_eval``; the rest is refused naming the
  option;
* the check that every output with parameters of its own is read (:mod:`.unread_outputs`).
"""
import difflib
import inspect
import math
import warnings

import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules.batchnorm import _BatchNorm

from .base import PretrainedBackbone
from .unread_outputs import UnreadOutputCheck

PATCH_PADS = ('corner', None)
# options of mm's ResNet-style backbones that a backbone dict merged into such a base config
# (without _delete_=True) carries
RESNET_OPTIONS = frozenset({
    'depth', 'num_stages', 'strides', 'dilations', 'style', 'deep_stem', 'avg_down',
    'conv_cfg', 'norm_cfg', 'act_cfg', 'dcn', 'stage_with_dcn', 'plugins', 'zero_init_residual',
    'contract_dilation', 'stem_channels', 'base_channels', 'groups', 'base_width',
    'stage_with_sac', 'sac', 'rfp_inplanes', 'output_img', 'multi_grid'})
# model-zoo schemes of mmengine's CheckpointLoader; they hold CNN weights, never ours
CNN_ZOO_SCHEMES = ('open-mmlab://', 'torchvision://', 'openmmlab://')


def init_cfg_of(name, pretrained, init_cfg):
    """``init_cfg``, or the one ``pretrained`` stands for (mmseg's ViT/MAE convention: a path
    is ``dict(type='Pretrained', checkpoint=path)``, with a deprecation warning).

    Raises:
        ValueError: both are set (mmseg's EncoderDecoder passes ``model.pretrained`` to the
            backbone), or ``pretrained`` names a CNN of the model zoo (the base config's).
        TypeError: ``pretrained`` is not a string.
    """
    if pretrained is None:
        return init_cfg
    if not isinstance(pretrained, str):
        raise TypeError(f'{name}: pretrained must be a str or None, got {type(pretrained)}')
    fix = ('set model.pretrained=None (the segmentor passes it to the backbone) and load '
           f"{name} weights with backbone init_cfg=dict(type='Pretrained', checkpoint=...)")
    if pretrained.startswith(CNN_ZOO_SCHEMES):
        raise ValueError(f'{name} got pretrained={pretrained!r}, CNN weights of the base '
                         f'config that cannot initialise it: {fix}')
    if init_cfg is not None:
        raise ValueError(f'{name} got both pretrained={pretrained!r} and init_cfg={init_cfg}: '
                         f'{fix}')
    warnings.warn('DeprecationWarning: pretrained is deprecated, please use "init_cfg" instead')
    return dict(type='Pretrained', checkpoint=pretrained)


def reject_options(name, options, valid):
    """TypeError naming the first of ``options`` (unknown keyword arguments) and the fix."""
    for key, value in options.items():
        if key in RESNET_OPTIONS:
            raise TypeError(
                f'{name} got {key}={value!r}, an option of ResNet-style backbones that it does '
                'not have: the backbone dict was merged into the base config\'s ResNet one. '
                f"Start it with _delete_=True (or remove {key})")
        close = difflib.get_close_matches(key, valid, n=1)
        hint = f'; did you mean {close[0]!r}?' if close else ''
        raise TypeError(f'{name} has no option {key!r}{hint} (its options: '
                        f'{", ".join(sorted(valid))})')


class TransferBackbone(PretrainedBackbone):
    """Base of ConvViT and PlainViT.

    Subclasses set :attr:`patch_stride` (input pixels per token of the ViT stage),
    :attr:`out_strides` (input pixels per pixel of each output map), :attr:`out_channels`,
    and define :meth:`stage_parts` and :meth:`last_stage_parts` for freezing;
    :attr:`BLOCKS` names their transformer blocks and :attr:`LAYER0` the parameter-name
    prefixes that share the first layer id.

    Args:
        init_cfg (dict | None): see :class:`PretrainedBackbone`.
        pretrained (str | None): a checkpoint path, the older spelling of ``init_cfg``
            (:func:`init_cfg_of`).
        frozen_stages (int): see :meth:`stage_parts`.
        norm_eval (bool): keep the BatchNorm layers (PlainViT's pyramid, ConvViT's
            ``level4_cfg`` norm) in eval mode while training, so their running statistics stay
            as loaded (mm backbones' ``norm_eval``; LayerNorms have none).
        patch_pad (str | None): ``'corner'`` pads dense inputs whose sides are not multiples of
            :attr:`patch_stride` at the bottom and right with zeros, and crops every output to
            ``ceil(H / stride) x ceil(W / stride)`` (mmseg ViT's ``patch_pad='corner'``, which
            keeps the padded grid); None raises for such inputs.
        options (dict): the remaining keyword arguments; any is refused (:func:`reject_options`).
    """

    BLOCKS = 'blocks'
    LAYER0 = ()
    patch_stride = 16
    out_strides = ()
    out_channels = ()

    def __init__(self, init_cfg=None, pretrained=None, frozen_stages=-1, norm_eval=False,
                 patch_pad='corner', dense=True, options=None):
        name = type(self).__name__
        reject_options(name, options or {}, self._option_names())
        super().__init__(init_cfg=init_cfg_of(name, pretrained, init_cfg))
        if patch_pad not in PATCH_PADS:
            raise ValueError(f'patch_pad must be one of {PATCH_PADS}, got {patch_pad!r}')
        self.patch_pad = patch_pad if dense else None
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self._unread_check = None

    @classmethod
    def _option_names(cls):
        return [name for name, param in inspect.signature(cls.__init__).parameters.items()
                if name != 'self' and param.kind != param.VAR_KEYWORD]

    # ------------------------------------------------------------------------- input grid
    def grid_of(self, size_hw):
        """Token grid (H/p, W/p) of an (H, W) input, p = :attr:`patch_stride`; raises when a
        side is not a multiple of p."""
        h, w = (int(s) for s in size_hw)
        p = self.patch_stride
        if h % p or w % p:
            hint = ('' if self.patch_pad else
                    ", or keep patch_pad='corner' to pad dense inputs")
            raise ValueError(
                f'{type(self).__name__} needs input sides that are multiples of {p}, got {h}x{w}, '
                f'not a multiple of the patch size {p}: resize or pad the input (e.g. to '
                f'{-(-h // p) * p}x{-(-w // p) * p}){hint}')
        return h // p, w // p

    def pad_input(self, x):
        """(B, C, H, W) -> (B, C, H', W') padded at the bottom/right to multiples of
        :attr:`patch_stride` with ``patch_pad='corner'``; unchanged otherwise."""
        p = self.patch_stride
        pad_h, pad_w = -x.shape[-2] % p, -x.shape[-1] % p
        if self.patch_pad is None or not (pad_h or pad_w):
            return x
        return F.pad(x, (0, pad_w, 0, pad_h))

    def crop_outputs(self, outs, size_hw):
        """Each map of ``outs`` cropped to ``ceil(H / s) x ceil(W / s)`` of the unpadded input
        ``size_hw``, s its entry in :attr:`out_strides`."""
        h, w = size_hw
        cropped = []
        for out, stride in zip(outs, self.out_strides):
            gh, gw = math.ceil(h / stride), math.ceil(w / stride)
            cropped.append(out[..., :gh, :gw] if out.shape[-2:] != (gh, gw) else out)
        return tuple(cropped)

    # ------------------------------------------------------------------------ read outputs
    def check_outputs_read(self, outs, describe, fix):
        """Make the first backward raise when an output with parameters of its own is not
        read (see :mod:`.unread_outputs`); ``describe`` names an output position."""
        if self._unread_check is None:
            self._unread_check = UnreadOutputCheck(self, describe, fix)
        self._unread_check.arm(self, outs)

    # ---------------------------------------------------------------------------- freezing
    def stage_parts(self):
        """Modules and parameters of the stem (entry 0) and of each stage (entries 1..n).

        ``frozen_stages=k`` freezes entries 0..k (no gradient, eval mode); -1 freezes nothing;
        k = n also freezes :meth:`last_stage_parts`."""
        raise NotImplementedError

    def last_stage_parts(self):
        """What freezes with the last stage: final norms and tables every block shares."""
        return []

    def _frozen_parts(self):
        stages = self.stage_parts()
        last = len(stages) - 1
        if not -1 <= self.frozen_stages <= last:
            raise ValueError(f'{type(self).__name__} frozen_stages must be in -1..{last} '
                             f'(-1 nothing, 0 the stem, {last} everything), got '
                             f'{self.frozen_stages}')
        parts = [p for stage in stages[:self.frozen_stages + 1] for p in stage]
        if self.frozen_stages == last:
            parts += self.last_stage_parts()
        return [p for p in parts if p is not None]

    def freeze_stages(self):
        """Apply ``frozen_stages`` (call at the end of ``__init__``)."""
        for part in self._frozen_parts():
            params = [part] if isinstance(part, nn.Parameter) else part.parameters()
            for param in params:
                param.requires_grad = False
        self.train(self.training)

    def train(self, mode=True):
        """Set the mode; frozen stages stay in eval mode, and with ``norm_eval`` the
        BatchNorm layers too."""
        super().train(mode)
        for part in self._frozen_parts():
            if isinstance(part, nn.Module):
                part.eval()
        if mode and self.norm_eval:
            for module in self.modules():
                if isinstance(module, _BatchNorm):
                    module.eval()
        return self

    # --------------------------------------------------------------------------- lr decay
    def get_layer_depth(self, param_name, prefix=''):
        """Layer id for layer-wise lr decay.

        Parameters under :attr:`LAYER0` (what runs before the transformer blocks, and the
        relative position tables all blocks share) are layer 0, transformer block i is
        layer i + 1, everything else of the backbone (final norms, pyramid, /32 level) shares
        the last id with the head (full lr).

        Args:
            param_name (str): parameter name, with ``prefix``.
            prefix (str): prefix of the backbone's names (``'backbone.'`` from a full model);
                names without it are not backbone parameters and get the last id.

        Returns:
            tuple[int, int]: (layer_id, num_layers), num_layers = transformer blocks + 2.
        """
        num_layers = len(getattr(self, self.BLOCKS)) + 2
        if not param_name.startswith(prefix):
            return num_layers - 1, num_layers
        name = param_name[len(prefix):]
        blocks = f'{self.BLOCKS}.'
        if name.startswith(blocks):
            return int(name[len(blocks):].split('.', 1)[0]) + 1, num_layers
        if name.startswith(self.LAYER0):
            return 0, num_layers
        return num_layers - 1, num_layers
