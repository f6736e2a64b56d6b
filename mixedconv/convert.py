"""Convert a checkpoint of any accepted layout into ``{'state_dict': ...}`` with our names.

The layouts (docs/checkpoints.md): the official MAE/ConvMAE ``util/misc.py save_model``
files, MAE's released encoders, mmengine Runner checkpoints (ours, mmpretrain's), mmcv 1.x
ones (mmseg/mmdet 0.x), detectron2's ``model_final.pth``, bare (timm) state dicts, in the zip
or the legacy torch format. The file is read by :func:`~mixedconv.checkpoint.safe_load`
(weights only); the encoder is found (:func:`~mixedconv.checkpoint.select_encoder`), its family
(ConvViT or PlainViT) and sizes are read from the tensors, and a backbone of those sizes with
default options is built to run its own conversion (``convert_state_dict``: prefixes gone,
official and mmpretrain names renamed) and to check every name and shape. Tensors outside the
backbone (decoders, heads, necks, optimizer states) are dropped, or kept apart under
``'extra'`` with ``keep_extra``.
"""
import io
import re
from collections import Counter
from dataclasses import dataclass, field

import torch

from .checkpoint import (TRANSFER_TENSORS, WRAPPER_KEYS, CheckpointError,
                         compare_state_dict, encoder_family, safe_load, select_encoder,
                         unwrap_state_dict)
from .families import FAMILIES, parse_arch
from .fileio import atomic_write


def describe_layout(checkpoint):
    """A short name of the file layout, for the report.

    Raises:
        CheckpointError: the file is not a dict of tensors or of known wrappers.
    """
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f'the file holds a {type(checkpoint).__name__}, not a dict of '
                              'tensors or a checkpoint dict')
    keys = set(checkpoint)
    if checkpoint and all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        return 'bare state dict (timm, torch.save(model.state_dict()))'
    if {'model', 'args'} <= keys:
        return ("official MAE/ConvMAE util/misc.py save_model ('model', 'optimizer', 'epoch', "
                "'scaler', 'args')")
    meta = checkpoint.get('meta') if isinstance(checkpoint.get('meta'), dict) else {}
    if 'state_dict' in keys and 'message_hub' in keys:
        return 'mmengine Runner checkpoint (mmengine-based mixedconv, mmpretrain, mmdet, mmseg)'
    if 'state_dict' in keys and 'mmcv_version' in meta:
        return 'mmcv 1.x Runner checkpoint (mmseg/mmdet 0.x)'
    if 'model' in keys and keys & {'trainer', 'iteration'}:
        return 'detectron2 checkpoint (model_final.pth)'
    if 'model' in keys:
        return "{'model': state_dict} (MAE release, export_encoder output)"
    if 'state_dict' in keys:
        return "{'state_dict': state_dict}"
    raise CheckpointError(f'unknown checkpoint layout: top-level keys {sorted(keys)[:8]} have '
                          "no 'state_dict' or 'model' and are not all tensors")


# ----------------------------------------------------------------------------------------
# the backbone the tensors describe


def _count(state_dict, pattern):
    return len({m.group(1) for k in state_dict for m in [re.match(pattern, k)] if m})


def _square_side(n):
    side = int(round(n ** 0.5))
    return side if side * side == n else None


def _heads(state_dict, dim, block_prefix):
    """Attention heads, where a relative position table shows them (BEiT tables: one column
    per head; decomposed tables: one column per head channel); else a 64-channel head as in
    every released ViT/ConvViT size. No tensor of the default backbone depends on it."""
    for key, value in state_dict.items():
        if key.startswith(block_prefix) and value.ndim == 2:
            if key.endswith('relative_position_bias_table'):
                return value.shape[1]
            if key.endswith(('rel_pos_h', 'rel_pos_w')) and dim % value.shape[1] == 0:
                return dim // value.shape[1]
    return dim // 64 if dim % 64 == 0 and dim >= 64 else 1


def _zoo_name(family, arch):
    """The arch_zoo name with exactly ``arch``'s sizes (heads aside: the tensors show them
    only through relative position tables), or None."""
    return FAMILIES[family].zoo_name(arch, [k for k in arch if k != 'num_heads'])


def _convvit_kwargs(sd):
    dims = tuple(sd[f'patch_embed{i}.proj.weight'].shape[0] for i in (1, 2, 3))
    depths = tuple(_count(sd, rf'blocks{i}\.(\d+)\.') for i in (1, 2, 3))
    if 0 in depths:
        raise CheckpointError(f'ConvViT stage depths {depths}: a stage has no blocks')
    mlp = tuple(sd[f'blocks{i + 1}.0.mlp.fc1.weight'].shape[0] / dims[i] for i in range(3))
    mlp = tuple(int(r) if float(r).is_integer() else r for r in mlp)
    arch = dict(embed_dims=dims, depths=depths, num_heads=_heads(sd, dims[2], 'blocks3.'),
                mlp_ratios=mlp)
    kwargs = dict(arch=_zoo_name('ConvViT', arch) or arch)
    if 'pos_embed' in sd:
        side = _square_side(sd['pos_embed'].shape[1])
        if side is None:
            raise CheckpointError(f"ConvViT pos_embed {tuple(sd['pos_embed'].shape)} is not a "
                                  'square grid; its image size cannot be told')
        kwargs['img_size'] = side * 16
    kwargs['in_channels'] = sd['patch_embed1.proj.weight'].shape[1]
    if 'fc_norm.weight' in sd:
        kwargs['out_type'] = 'avg_featmap'  # the fine-tuned model: fc_norm, no norm
    elif 'norm.weight' not in sd:
        kwargs['final_norm'] = False  # the detection/segmentation backbones
    level4 = 'fpn.0.weight' if 'fpn.0.weight' in sd else (
        'level4_conv.conv.weight' if 'level4_conv.conv.weight' in sd else None)
    if level4:  # the SEG backbone's /32 convolution (ConvMAE SEG/backbone/convmae.py)
        bias = level4.replace('weight', 'bias') in sd
        norm = 'fpn.1.weight' in sd or 'level4_conv.bn.weight' in sd
        kwargs.update(out_indices=(0, 1, 2, 3), out_level4='conv', level4_cfg=dict(
            bias=bias, norm_cfg=dict(type='BN') if norm else None))
    if any(re.search(r'\.(gamma_1|ls1\.gamma)$', k) for k in sd):
        kwargs['layer_scale_init'] = 1.0
    return kwargs


def _plainvit_kwargs(sd):
    proj = sd['patch_embed.proj.weight']
    dim, depth = proj.shape[0], _count(sd, r'blocks\.(\d+)\.')
    if not depth:
        raise CheckpointError('plain ViT checkpoint without blocks.N tensors')
    hidden = sd['blocks.0.mlp.fc1.weight'].shape[0]
    ratio = hidden / dim
    arch = dict(embed_dim=dim, depth=depth, num_heads=_heads(sd, dim, 'blocks.'),
                mlp_ratio=int(ratio) if ratio.is_integer() else ratio)
    name = _zoo_name('PlainViT', arch)
    kwargs = dict(arch=name or arch, patch_size=proj.shape[-1], in_channels=proj.shape[1])
    with_cls = 'cls_token' in sd
    kwargs['with_cls_token'] = with_cls
    if 'pos_embed' in sd:
        tokens = sd['pos_embed'].shape[1]
        side = _square_side(tokens - int(with_cls)) or _square_side(tokens - 1 + int(with_cls))
        if side is None:
            raise CheckpointError(f"plain ViT pos_embed {tuple(sd['pos_embed'].shape)} is not a "
                                  'square grid (with or without a class row); its image size '
                                  'cannot be told')
        kwargs['img_size'] = side * proj.shape[-1]
    if 'blocks.0.attn.qkv.weight' in sd and 'blocks.0.attn.qkv.bias' not in sd:
        kwargs['qkv_bias'] = False
    if 'fc_norm.weight' in sd:
        kwargs['out_type'] = 'avg_featmap'  # MAE models_vit.py global_pool: fc_norm
    if 'norm.weight' not in sd:
        kwargs['final_norm'] = False
    if 'fpn1.0.weight' in sd:
        kwargs.update(rescale_to_pyramid=True, out_type='featmap',
                      out_indices=tuple(depth * q // 4 - 1 for q in (1, 2, 3, 4)))
    if any(k.endswith('.ls1.gamma') for k in sd):
        kwargs['layer_scale_init'] = 1.0
    return kwargs


def _classes():
    from .models.backbones import ConvViT, PlainViT
    return {'ConvViT': ConvViT, 'PlainViT': PlainViT}


def backbone_for(state_dict, arch=None, source='checkpoint'):
    """The backbone type and constructor arguments whose tensors the encoder ``state_dict``
    (prefix removed, any accepted names) has: arch sizes, image and patch size, class token,
    final/fc norm, the SEG /32 convolution and layer scale. Attention heads are not visible in
    the tensors (except through relative position tables) and are taken from the arch zoo
    when the sizes are a zoo arch.

    Args:
        arch (str | None): ``'ConvViT'``/``'PlainViT'`` (must agree with the tensors), with
            ``:NAME`` to state the zoo arch (it must have the tensors' sizes).

    Returns:
        tuple[str, dict]: family and keyword arguments.

    Raises:
        CheckpointError: the tensors are neither encoder, or contradict ``arch``.
    """
    family, name = parse_arch(arch) if arch else (None, None)
    probe = state_dict
    found = encoder_family(state_dict)
    if found is None:
        raise CheckpointError(
            f'{source} holds neither a ConvViT (patch_embed1..3, blocks1..3) nor a plain ViT '
            f'(patch_embed.proj, blocks.N) encoder; its first keys are {list(state_dict)[:5]}')
    if family and family != found:
        raise CheckpointError(f'{source} holds a {found} encoder, not the {family} given by '
                              f'--arch; pass --arch {found} or leave it out')
    if found == 'PlainViT' and 'patch_embed.proj.weight' not in state_dict:
        rename = _classes()['PlainViT']._rename_mmpretrain  # mmpretrain names, read as timm's
        probe = {rename(k): v for k, v in state_dict.items()}
    try:
        kwargs = (_convvit_kwargs if found == 'ConvViT' else _plainvit_kwargs)(probe)
    except KeyError as err:
        raise CheckpointError(f'{source}: a {found} encoder without {err}; the file is '
                              'incomplete') from None
    if name:
        zoo = FAMILIES[found].settings(name)
        inferred = kwargs['arch']
        if inferred != name:
            raise CheckpointError(f'{source}: --arch {found}:{name} has sizes {zoo}, but the '
                                  f'tensors have {inferred}')
    return found, kwargs


def build_backbone(family, kwargs):
    """The backbone whose names and shapes the conversion is checked against (built on the
    CPU with its random init)."""
    return _classes()[family](**kwargs)


def format_kwargs(family, kwargs):
    return f'{family}(' + ', '.join(f'{k}={v!r}' for k, v in kwargs.items()) + ')'


# ----------------------------------------------------------------------------------------
# conversion


@dataclass
class Conversion:
    """What :func:`convert_checkpoint` did; ``state_dict`` is what it writes.

    Names in ``matched``/``transfer``/``mismatched``/``missing`` are ours; ``renamed`` maps
    source names (prefix included) to ours; ``adapted`` are tensors the backbone's conversion
    changed (a class row dropped from ``pos_embed``); ``dropped`` are source names.
    """
    source: str
    layout: str
    family: str
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
        def show(names):
            names = list(names)
            if not limit or len(names) <= limit:
                return ', '.join(names)
            return ', '.join(names[:limit]) + f', ... (+{len(names) - limit})'
        lines = [f'read {self.source}: {self.layout}',
                 f'encoder: {self.family}, keys '
                 + (f'under {self.prefix!r}' if self.prefix else 'without prefix')
                 + f'; checked against {format_kwargs(self.family, self.backbone)}']
        if self.other_entries:
            lines.append(f'other entries, not converted: {show(self.other_entries)}')
        renamed_ours = set(self.renamed.values())
        rows = Counter()
        groups = []
        for status, names in (('matched', self.matched), ('transfer', self.transfer),
                              ('mismatched', [m.split(' ')[0] for m in self.mismatched]),
                              ('missing', self.missing), ('unexpected', self.unexpected),
                              ('dropped', self.dropped),
                              ('dropped', [k[len(self.prefix):] for k in self.derived])):
            for name in names:
                group = _group(name)
                if group not in groups:
                    groups.append(group)
                rows[group, status] += 1
                if status != 'dropped' and name in renamed_ours:
                    rows[group, 'renamed'] += 1
        columns = ('matched', 'renamed', 'transfer', 'mismatched', 'missing', 'unexpected',
                   'dropped')
        width = max([len(g) for g in groups] + [5])
        lines.append('  ' + 'group'.ljust(width) + ''.join(f'{c:>11}' for c in columns))
        for group in groups:
            lines.append('  ' + group.ljust(width)
                         + ''.join(f'{rows[group, c]:>11}' for c in columns))
        lines.append('  ' + 'total'.ljust(width) + ''.join(
            f'{sum(rows[g, c] for g in groups):>11}' for c in columns))
        if self.renamed:
            lines.append(f'renamed ({len(self.renamed)}): '
                         + show(f'{a} -> {b}' for a, b in self.renamed.items()))
        if self.adapted:
            lines.append(f'adapted by the backbone conversion ({len(self.adapted)}): '
                         + show(self.adapted))
        if self.transfer:
            lines.append(f'kept, transfer tensors ({len(self.transfer)}): {show(self.transfer)}; '
                         'they load into a backbone built with the recipe\'s options '
                         f'({_transfer_hint(self.transfer)})')
        if self.mismatched:
            lines.append(f'kept, other shape than the default backbone '
                         f'({len(self.mismatched)}): {show(self.mismatched)}')
        if self.missing:
            lines.append(f'missing, the backbone will keep its random init ({len(self.missing)}):'
                         f' {show(self.missing)}')
        if self.unexpected:
            lines.append(f'dropped, encoder-side names the backbone does not have '
                         f'({len(self.unexpected)}): {show(self.unexpected)}')
        if self.dropped:
            where = "kept under 'extra'" if self.extra else 'dropped'
            lines.append(f'{where}, not part of the backbone ({len(self.dropped)}): '
                         + show(f'{g} ({n})' for g, n in Counter(
                             _group(k) for k in self.dropped).items()))
        if self.derived:
            lines.append(f'dropped, index buffers the backbone recomputes ({len(self.derived)}): '
                         f'{show(self.derived)}')
        return '\n'.join(lines)


def _group(name):
    """The first name component with the block index: ``blocks3.0.attn.qkv.weight`` ->
    ``blocks3``; ``backbone.fpn_lateral2.weight`` -> ``backbone.fpn_lateral2``."""
    parts = name.split('.')
    if parts[0] == 'backbone' and len(parts) > 2:
        return '.'.join(parts[:2])
    return parts[0]


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
        checkpoint: what :func:`~mixedconv.checkpoint.safe_load` returned.
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
    encoder, others, prefix = select_encoder(tensors, prefix, source)
    family, kwargs = backbone_for(encoder, arch, source)
    model = build_backbone(family, kwargs)
    converted = model.convert_state_dict(encoder)
    report = compare_state_dict(model, converted, source)

    result = Conversion(source=str(source), layout=layout, family=family, backbone=kwargs,
                        prefix=prefix, state_dict={}, matched=report.matched,
                        mismatched=report.mismatched, missing=report.missing + report.fresh)
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
        elif TRANSFER_TENSORS.search(key):
            result.transfer.append(key)
            result.state_dict[key] = value
        else:
            result.unexpected.append(key)
    result.derived = [prefix + k for k in encoder if k not in taken]
    result.dropped = list(others) + [k for k, v in full.items()
                                     if not isinstance(v, torch.Tensor)]
    wrapper = _wrapper_key(checkpoint)
    if wrapper is not None:
        result.other_entries = [str(k) for k in checkpoint if k != wrapper]
    if keep_extra:
        result.extra = dict(others)
        result.extra.update({prefix + k: converted[k] for k in result.unexpected})
    return result


def _wrapper_key(checkpoint):
    """The top-level key :func:`~mixedconv.checkpoint.unwrap_state_dict` takes, or None."""
    for key in WRAPPER_KEYS:
        if isinstance(checkpoint.get(key), dict):
            return key
    return None


def convert_checkpoint(src, dst, arch=None, prefix=None, keep_extra=False):
    """Read ``src`` safely, convert it (:func:`convert_state_dict`) and write
    ``{'state_dict': ...}`` (plus ``'extra'`` with ``keep_extra``) to ``dst`` atomically.

    Returns:
        Conversion

    Raises:
        FileNotFoundError: ``src`` does not exist.
        CheckpointError: ``src`` was refused, is corrupt, or has no encoder we know.
    """
    conversion = convert_state_dict(safe_load(src), src, arch, prefix, keep_extra)
    out = {'state_dict': conversion.state_dict}
    if keep_extra:
        out['extra'] = conversion.extra
    buffer = io.BytesIO()
    torch.save(out, buffer)
    atomic_write(dst, buffer.getvalue())
    return conversion
