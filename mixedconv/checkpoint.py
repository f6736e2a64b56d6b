"""Checkpoint loading that never runs code from the file, and pretrained loads that say
exactly what matched.

* :func:`safe_load` reads a checkpoint with ``torch.load(weights_only=True)`` and an allow-list
  of the few non-tensor globals mmengine itself writes into checkpoints (its ``HistoryBuffer``
  and numpy arrays/scalars in the message hub). It is registered as mmengine's loader for local
  files, so every runner (``resume``, ``load_from``, ``init_cfg=Pretrained``) uses it.
  ``weights_only`` is never switched off: a checkpoint is a pickle, and an unrestricted unpickler
  runs whatever code the file asks it to.
* :func:`load_pretrained` loads a backbone from any wrapper layout and raises when the
  backbone's own weights mostly did not match, instead of training from random weights.
"""
import io
import os.path as osp
import pickle
import re
import zipfile
from dataclasses import dataclass, field

import numpy as np
import torch
from mmengine.logging import HistoryBuffer, print_log
from mmengine.runner.checkpoint import CheckpointLoader

from .fileio import atomic_write


class CheckpointError(RuntimeError):
    """A checkpoint could not be used; the message names the file and the fix."""


def _numpy_globals():
    """Numpy classes and reconstructors that plain numpy arrays and scalars pickle to."""
    core = getattr(np, '_core', None) or np.core
    dtype_classes = {type(np.dtype(t)) for t in np.sctypeDict.values()}
    return [core.multiarray._reconstruct, core.multiarray.scalar, np.ndarray, np.dtype,
            *sorted(dtype_classes, key=lambda c: c.__name__)]


HISTORY_BUFFER_STATISTICS = ('min', 'max', 'current', 'mean')


def _history_buffer_statistic(owner, name):
    """Stands in for ``builtins.getattr`` while unpickling.

    A ``HistoryBuffer`` pickles its statistics methods as ``getattr(HistoryBuffer, 'min')``
    etc.; only those resolve, any other ``getattr`` in a pickle is refused.
    """
    if owner is HistoryBuffer and name in HISTORY_BUFFER_STATISTICS:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f'Unsupported global: GLOBAL builtins.getattr (on {owner!r}, {name!r})')


def safe_globals():
    """The allow-list: exactly what mmengine 0.10 puts besides tensors in its checkpoints."""
    return [HistoryBuffer, (_history_buffer_statistic, 'builtins.getattr'), *_numpy_globals()]


_UNSUPPORTED_GLOBAL = re.compile(r'Unsupported global: GLOBAL ([\w.]+)')


def safe_load(filename, map_location='cpu'):
    """``torch.load(filename, weights_only=True)`` with the mmengine allow-list.

    Raises:
        FileNotFoundError: the file does not exist.
        CheckpointError: the file is truncated or not a checkpoint, or its pickle needs a
            global outside the allow-list (for example code that would run on load).
    """
    filename = osp.expanduser(str(filename))
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint file not found: {filename}')
    try:
        with torch.serialization.safe_globals(safe_globals()):
            return torch.load(filename, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        refused = _UNSUPPORTED_GLOBAL.search(str(err))
        if refused:
            raise CheckpointError(
                f'refused to load checkpoint {filename}: its pickle references '
                f'{refused.group(1)}, which is not on the allow-list of objects mmengine '
                'checkpoints contain. Loading it would let the file run code. If you made '
                'this file yourself, re-save only its tensors (torch.save(state_dict)).'
            ) from None
        raise CheckpointError(f'checkpoint {filename} is corrupt or not a torch checkpoint: '
                              f'{err}') from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as err:
        raise CheckpointError(f'checkpoint {filename} is truncated or corrupt ({err}); '
                              'use an intact copy') from None


# mmengine's loader for paths without a URL scheme; every runner and init_cfg goes through it.
CheckpointLoader.register_scheme(prefixes='', force=True)(safe_load)

WRAPPER_KEYS = ('state_dict', 'model', 'module')
# where transfer checkpoints keep the backbone: detectron2 FPN (``bottom_up``) and ViTDet
# (``net``) models, then mmdet/mmseg/mmpretrain models
BACKBONE_PREFIXES = ('backbone.bottom_up.', 'backbone.net.', 'backbone.')
# tensors a transfer adds (relative position, layer scale, the /32 level): when a checkpoint
# has one, leaving it unloaded would silently train from a partial load
TRANSFER_TENSORS = re.compile(r'(relative_position_bias_table|rel_pos_[hw]|\.ls[12]\.gamma|'
                              r'^level4_conv\.)')


def unwrap_state_dict(checkpoint):
    """The state dict inside ``{'state_dict': ...}``, ``{'model': ...}`` or a bare dict,
    with DDP's ``module.`` prefix stripped."""
    state_dict = checkpoint
    for key in WRAPPER_KEYS:
        if isinstance(state_dict, dict) and isinstance(state_dict.get(key), dict):
            state_dict = state_dict[key]
            break
    if not isinstance(state_dict, dict):
        raise CheckpointError(f'expected a state dict, got {type(state_dict).__name__}')
    return {k[len('module.'):] if k.startswith('module.') else k: v
            for k, v in state_dict.items()}


def strip_prefix(state_dict, prefix):
    """Keys under ``prefix`` (for example ``'backbone.'``) with the prefix removed."""
    return {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}


@dataclass
class LoadReport:
    """What a pretrained load did. ``fresh`` are parameters the model adds at transfer
    (relative position tables, layer scale, ...) and that no pretraining checkpoint has."""
    source: str
    matched: list = field(default_factory=list)
    missing: list = field(default_factory=list)
    fresh: list = field(default_factory=list)
    unexpected: list = field(default_factory=list)
    mismatched: list = field(default_factory=list)
    skipped: int = 0

    def summary(self, limit=8):
        def show(names):
            return ', '.join(names[:limit]) + (f', ... (+{len(names) - limit})'
                                               if len(names) > limit else '')
        lines = [f'loaded {self.source}: {len(self.matched)} matched, {len(self.missing)} '
                 f'missing, {len(self.unexpected)} unexpected, {len(self.mismatched)} shape '
                 f'mismatches, {len(self.fresh)} new at transfer, {self.skipped} outside the '
                 'backbone or derived (heads, necks, index buffers) skipped']
        for name in ('missing', 'unexpected', 'mismatched', 'fresh'):
            if getattr(self, name):
                lines.append(f'  {name}: {show(getattr(self, name))}')
        return '\n'.join(lines)


def load_pretrained(module, filename, prefix=None, min_matched=0.5, logger='current'):
    """Load ``filename`` into ``module`` and report what matched.

    The checkpoint may be wrapped (see :func:`unwrap_state_dict`); ``prefix`` selects a
    sub-dict (``'backbone.'``), and when it is None the ``backbone.`` prefix is stripped
    automatically if the keys carry it. ``module.convert_state_dict(sd)``, when defined,
    renames foreign keys and resizes position tables to the module's shapes;
    ``module.is_fresh_param(name)`` marks parameters that only exist at transfer.

    Raises:
        CheckpointError: fewer than ``min_matched`` of the module's pretrainable tensors
            were found with the right shape (a checkpoint of another architecture).
    """
    checkpoint = CheckpointLoader.load_checkpoint(filename, map_location='cpu')
    state_dict = unwrap_state_dict(checkpoint)
    total = len(state_dict)
    if prefix is None:
        prefix = next((p for p in BACKBONE_PREFIXES if any(k.startswith(p) for k in state_dict)),
                      None)
    if prefix:
        state_dict = strip_prefix(state_dict, prefix)
        if not state_dict:
            raise CheckpointError(f'no key of {filename} starts with {prefix!r}')
    convert = getattr(module, 'convert_state_dict', None)
    if convert is not None:
        state_dict = convert(state_dict)
    is_fresh = getattr(module, 'is_fresh_param', lambda name: False)

    report = LoadReport(source=str(filename))
    own = module.state_dict()
    for name, tensor in own.items():
        if name in state_dict and state_dict[name].shape == tensor.shape:
            report.matched.append(name)
        elif name in state_dict:
            report.mismatched.append(f'{name} {tuple(state_dict[name].shape)} vs '
                                     f'{tuple(tensor.shape)}')
        elif is_fresh(name):
            report.fresh.append(name)
        else:
            report.missing.append(name)
    report.unexpected = [k for k in state_dict if k not in own]

    report.skipped = total - len(state_dict)
    untaken = [k for k in report.unexpected if TRANSFER_TENSORS.search(k)] + \
        [m for m in report.mismatched if TRANSFER_TENSORS.search(m.split(' ')[0])]
    if untaken:
        raise CheckpointError(
            f'{filename}: the backbone has a place for these tensors of the checkpoint but could '
            f'not take them (name or shape): {untaken[:8]}. Check the backbone options '
            '(rel_pos_type, layer_scale_init, out_level4/level4_cfg, window_size, img_size) '
            f'against the recipe the checkpoint was trained with.\n{report.summary()}')
    expected = len(own) - len(report.fresh)
    if len(report.matched) < min_matched * expected:
        raise CheckpointError(
            f'{filename} does not fit {type(module).__name__}: only {len(report.matched)} of '
            f'{expected} tensors matched. Is it a checkpoint of another architecture (or arch '
            f'size)? Check the backbone type/arch.\n{report.summary()}')
    module.load_state_dict({k: state_dict[k] for k in report.matched}, strict=False)
    print_log(report.summary(), logger=logger)
    return report


def export_encoder(src, dst, prefix='backbone.'):
    """Write the encoder of a pretraining checkpoint as ``{'model': state_dict}``.

    Pretraining algorithms keep exactly the downstream backbone's parameters under ``prefix``,
    so the result loads into ConvViT / PlainViT (and the official ConvMAE fine-tuning code)
    without conversion.

    Returns:
        dict: the exported state dict.
    """
    state_dict = strip_prefix(unwrap_state_dict(safe_load(src)), prefix)
    if not state_dict:
        raise CheckpointError(f'{src} has no {prefix!r} keys: is it a pretraining checkpoint '
                              'written by mixedconv (ConvMAE, MixedAE) or mmpretrain?')
    buffer = io.BytesIO()
    torch.save({'model': state_dict}, buffer)
    atomic_write(dst, buffer.getvalue())
    return state_dict
