"""Convert a checkpoint of any accepted layout into ``{'state_dict': ...}`` with our names, or
export its encoder as it is.

The layouts (docs/checkpoints.md): the official MAE/ConvMAE ``util/misc.py save_model``
files, MAE's released encoders, mmengine Runner checkpoints (ours, mmpretrain's), mmcv 1.x
ones (mmseg/mmdet 0.x), detectron2's ``model_final.pth``, bare (timm) state dicts, in the zip
or the legacy torch format. The file is read by :func:`~.safe_load.safe_load` (weights only);
the encoder is found and its source layout recognised (:func:`~.recognise.find_encoder`), its
family and sizes are read from the tensors (:attr:`~mixedconv.families.Family.
kwargs_from_tensors`), and a backbone of those sizes with default options is built so that
the source's adaptation function fits the tensors to it and every name and shape is checked.
Tensors outside the backbone (decoders, heads, necks, optimizer states) are dropped, or kept
apart under ``'extra'`` with ``keep_extra``.
"""
import io
import os.path as osp
from collections import Counter
from dataclasses import dataclass, field

import torch

from ..families import FAMILIES, parse_arch
from ..fileio import atomic_write
from .errors import CheckpointError
from .recognise import describe_layout, find_encoder, unwrap_state_dict, wrapper_key
from .report import compare_state_dict, group_of, show, status_table
from .safe_load import safe_load


def backbone_for(encoder, arch=None, source='checkpoint'):
    """The backbone type and constructor arguments whose tensors ``encoder`` has: arch sizes,
    image and patch size, class token, final/fc norm, the SEG /32 convolution and layer
    scale (:attr:`~mixedconv.families.Family.kwargs_from_tensors`, on the tensors under our
    names). Attention heads are not visible in the tensors (except through relative position
    tables) and are taken from the arch zoo when the sizes are a zoo arch.

    Args:
        encoder (Encoder): what :func:`~.recognise.find_encoder` found.
        arch (str | None): ``'ConvViT'``/``'PlainViT'`` (must agree with the tensors), with
            ``:NAME`` to state the zoo arch (it must have the tensors' sizes).

    Returns:
        tuple[str, dict]: family and keyword arguments.

    Raises:
        CheckpointError: the tensors are incomplete or contradict ``arch``.
    """
    family, name = parse_arch(arch) if arch else (None, None)
    found = FAMILIES[encoder.family]
    if family and family != found.name:
        raise CheckpointError(f'{source} holds a {found.name} encoder, not the {family} given '
                              f'by --arch; pass --arch {found.name} or leave it out')
    try:
        kwargs = found.kwargs_from_tensors(encoder.adapted())
    except KeyError as err:
        raise CheckpointError(f'{source}: a {found.name} encoder without {err}; the file is '
                              'incomplete') from None
    except ValueError as err:
        raise CheckpointError(f'{source}: {err}') from None
    if name and kwargs['arch'] != name:
        raise CheckpointError(f'{source}: --arch {found.name}:{name} has sizes '
                              f'{found.settings(name)}, but the tensors have {kwargs["arch"]}')
    return found.name, kwargs


def build_backbone(family, kwargs):
    """The backbone whose names and shapes the conversion is checked against (built on the
    CPU with its random init). ``family`` is the family's registry ``type``."""
    from ..models import backbones  # noqa: F401  (registers the families' types)
    from ..registry import MODELS
    return MODELS.get(family)(**kwargs)


def format_kwargs(family, kwargs):
    return f'{family}(' + ', '.join(f'{k}={v!r}' for k, v in kwargs.items()) + ')'


# ----------------------------------------------------------------------------------------
# conversion


@dataclass
class Conversion:
    """What :func:`convert_checkpoint` did; ``state_dict`` is what it writes.

    Names in ``matched``/``transfer``/``mismatched``/``missing`` are ours; ``renamed`` maps
    source names (prefix included) to ours; ``adapted`` are tensors the source's adaptation
    function changed (a class row dropped from ``pos_embed``); ``dropped`` are source names;
    ``source_layout`` is the producer whose names the encoder had.
    """
    source: str
    layout: str
    family: str
    source_layout: str
    backbone: dict
    prefix: str
    state_dict: dict
    extra: dict = field(default_factory=dict)
    matched: list = field(default_factory=list)
    renamed: dict = field(default_factory=dict)
    adapted: list = field(default_factory=list)
    transfer: list = field(default_factory=list)
    mismatched: list = field(default_factory=list)
    missing: list = field(default_factory=list)
    unexpected: list = field(default_factory=list)
    dropped: list = field(default_factory=list)
    derived: list = field(default_factory=list)
    other_entries: list = field(default_factory=list)

    def report(self, limit=6):
        """A readable loading report: totals, a table per group, then the names (at most
        ``limit`` of each kind; 0 lists all)."""
        def names(items):
            return show(items, limit)
        lines = [f'read {self.source}: {self.layout}',
                 f'encoder: {self.family} in the {self.source_layout} layout, keys '
                 + (f'under {self.prefix!r}' if self.prefix else 'without prefix')
                 + f'; checked against {format_kwargs(self.family, self.backbone)}']
        if self.other_entries:
            lines.append(f'other entries, not converted: {names(self.other_entries)}')
        renamed_ours = set(self.renamed.values())
        rows = []
        for status, keys in (('matched', self.matched), ('transfer', self.transfer),
                             ('mismatched', [m.split(' ')[0] for m in self.mismatched]),
                             ('missing', self.missing), ('unexpected', self.unexpected),
                             ('dropped', self.dropped),
                             ('dropped', [k[len(self.prefix):] for k in self.derived])):
            for key in keys:
                rows.append((group_of(key), status))
                if status != 'dropped' and key in renamed_ours:
                    rows.append((group_of(key), 'renamed'))
        lines.append(status_table(rows, ('matched', 'renamed', 'transfer', 'mismatched',
                                         'missing', 'unexpected', 'dropped')))
        if self.renamed:
            lines.append(f'renamed ({len(self.renamed)}): '
                         + names(f'{a} -> {b}' for a, b in self.renamed.items()))
        if self.adapted:
            lines.append(f'adapted by the backbone conversion ({len(self.adapted)}): '
                         + names(self.adapted))
        if self.transfer:
            lines.append(f'kept, transfer tensors ({len(self.transfer)}): '
                         f'{names(self.transfer)}; they load into a backbone built with the '
                         f"recipe's options ({_transfer_hint(self.transfer)})")
        if self.mismatched:
            lines.append(f'kept, other shape than the default backbone '
                         f'({len(self.mismatched)}): {names(self.mismatched)}')
        if self.missing:
            lines.append(f'missing, the backbone will keep its random init ({len(self.missing)}):'
                         f' {names(self.missing)}')
        if self.unexpected:
            lines.append(f'dropped, encoder-side names the backbone does not have '
                         f'({len(self.unexpected)}): {names(self.unexpected)}')
        if self.dropped:
            where = "kept under 'extra'" if self.extra else 'dropped'
            groups = Counter(group_of(k) for k in self.dropped)
            lines.append(f'{where}, not part of the backbone ({len(self.dropped)}): '
                         + names(f'{g} ({n})' for g, n in groups.items()))
        if self.derived:
            lines.append(f'dropped, index buffers the backbone recomputes ({len(self.derived)}): '
                         f'{names(self.derived)}')
        return '\n'.join(lines)


def _transfer_hint(names):
    hints = []
    if any('rel_pos_bias.' in n for n in names):
        hints.append("rel_pos_type='shared'")
    elif any(n.endswith('relative_position_bias_table') for n in names):
        hints.append("rel_pos_type='bias'")
    if any(n.endswith(('rel_pos_h', 'rel_pos_w')) for n in names):
        hints.append("rel_pos_type='decomposed'")
    hints.append('window_size, global_blocks')
    return ', '.join(hints)


def convert_state_dict(checkpoint, source='checkpoint', arch=None, prefix=None,
                       keep_extra=False):
    """Convert a loaded checkpoint (see the module docstring).

    Args:
        checkpoint: what :func:`~.safe_load.safe_load` returned.
        source (str): the file, for messages.
        arch (str | None): ``'ConvViT'``, ``'PlainViT'`` or ``'PlainViT:large'``: check the
            family (and arch) found in the tensors.
        prefix (str | None): the encoder's key prefix; None finds it.
        keep_extra (bool): keep the tensors outside the backbone under ``'extra'``.

    Returns:
        Conversion

    Raises:
        CheckpointError: an unknown layout, no encoder, or the tensors contradict ``arch``.
    """
    layout = describe_layout(checkpoint)
    full = unwrap_state_dict(checkpoint)
    tensors = {k: v for k, v in full.items() if isinstance(v, torch.Tensor)}
    found = find_encoder(tensors, prefix=prefix, source=source)
    family, kwargs = backbone_for(found, arch, source)
    model = build_backbone(family, kwargs)
    converted = found.adapted(model)
    report = compare_state_dict(model, converted, source)
    encoder, others, prefix = found.tensors, found.others, found.prefix

    result = Conversion(source=str(source), layout=layout, family=family,
                        source_layout=found.source.producer, backbone=kwargs, prefix=prefix,
                        state_dict={}, matched=report.matched, mismatched=report.mismatched,
                        missing=report.missing + report.fresh)
    by_identity = {}
    for key, value in encoder.items():
        by_identity.setdefault(id(value), key)
    taken = set()
    kept = set(report.matched) | {m.split(' ')[0] for m in report.mismatched}
    for key, value in converted.items():
        origin = by_identity.get(id(value))
        if origin is None:  # a new tensor: the conversion changed it (pos_embed class row)
            origin = key if key in encoder else None
            if origin is not None:
                result.adapted.append(f'{key} {tuple(encoder[key].shape)} -> '
                                      f'{tuple(value.shape)}')
        if origin is not None:
            taken.add(origin)
            if origin != key:
                result.renamed[prefix + origin] = key
        if key in kept:
            result.state_dict[key] = value
        elif FAMILIES[family].is_must_load(key):
            result.transfer.append(key)
            result.state_dict[key] = value
        else:
            result.unexpected.append(key)
    result.derived = [prefix + k for k in encoder if k not in taken]
    result.dropped = list(others) + [k for k, v in full.items()
                                     if not isinstance(v, torch.Tensor)]
    wrapper = wrapper_key(checkpoint)
    if wrapper is not None:
        result.other_entries = [str(k) for k in checkpoint if k != wrapper]
    if keep_extra:
        result.extra = dict(others)
        result.extra.update({prefix + k: converted[k] for k in result.unexpected})
    return result


def _check_not_the_source(src, dst):
    """Refuse an output path that is the source file (under any name)."""
    if osp.exists(dst) and osp.exists(src) and osp.samefile(src, dst):
        raise CheckpointError(f'the output {dst} is the input checkpoint {src}: writing there '
                              'would replace the original; give another output path')


def convert_checkpoint(src, dst, arch=None, prefix=None, keep_extra=False):
    """Read ``src`` safely, convert it (:func:`convert_state_dict`) and write
    ``{'state_dict': ...}`` (plus ``'extra'`` with ``keep_extra``) to ``dst`` atomically.

    Returns:
        Conversion

    Raises:
        FileNotFoundError: ``src`` does not exist.
        CheckpointError: ``src`` was refused, is corrupt, or has no encoder we know; ``dst``
            is ``src``.
    """
    _check_not_the_source(src, dst)
    conversion = convert_state_dict(safe_load(src), src, arch, prefix, keep_extra)
    out = {'state_dict': conversion.state_dict}
    if keep_extra:
        out['extra'] = conversion.extra
    buffer = io.BytesIO()
    torch.save(out, buffer)
    atomic_write(dst, buffer.getvalue())
    return conversion


def export_encoder(src, dst, prefix=None):
    """Write the encoder of a checkpoint as ``{'model': state_dict}``, under the names it has
    in ``src`` (prefix removed).

    Any layout :func:`~.load.load_pretrained` reads works: our pretraining checkpoints keep
    the downstream backbone's parameters under ``backbone.``; the official MAE/ConvMAE ones
    keep them unprefixed next to the decoder, which is left out
    (:data:`~.recognise.NON_ENCODER`); detectron2 keeps them under ``backbone.bottom_up.`` /
    ``backbone.net.``. The result loads into ConvViT / PlainViT (and, for official names, the
    official fine-tuning code) as it is.

    Args:
        prefix (str | None): the encoder's key prefix in ``src``; None finds it.

    Returns:
        dict: the exported state dict.

    Raises:
        CheckpointError: ``src`` holds no encoder of a known family, or no key has
            ``prefix``; ``dst`` is ``src``.
    """
    _check_not_the_source(src, dst)
    encoder = find_encoder(unwrap_state_dict(safe_load(src)), prefix=prefix, source=src)
    buffer = io.BytesIO()
    torch.save({'model': encoder.tensors}, buffer)
    atomic_write(dst, buffer.getvalue())
    return encoder.tensors
