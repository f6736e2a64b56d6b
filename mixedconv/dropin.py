"""Checks of a config that drops ConvViT or PlainViT into a library's model, run by the train
and test tools before the model is built, so that a mismatch is one clear line instead of a
bare assertion deep in a neck or head:

* what reads the backbone (the neck, or mmseg's decode and auxiliary heads, or the classifier
  head) expects the maps the backbone gives: their number (``in_index`` in range) and channels
  (the backbone's ``out_channels``);
* the optimizer constructor is not one of the libraries' layer-decay constructors, which
  cannot assign layers of our backbones
  (:func:`~mixedconv.engine.layer_decay.refuse_library_constructor`).
"""
import torch

from .engine.layer_decay import refuse_library_constructor
from .families import FAMILIES
from .registry import MODELS

# necks that pass their inputs on map by map, reading ``len(rescales)`` maps of ``embed_dim``
# channels (mmseg's MAE/BEiT neck)
RESCALING_NECKS = ('Feature2Pyramid', )


def backbone_out_channels(backbone_cfg):
    """``out_channels`` of a ConvViT / PlainViT config, built on the meta device (no memory,
    no weights loaded); its own option errors are raised here."""
    from .models import backbones  # noqa: F401  (registers them)
    with torch.device('meta'):
        return list(MODELS.build(dict(backbone_cfg)).out_channels)


def _type_name(cfg):
    return str(cfg.get('type', '')).rpartition('.')[-1]


def _mismatch(where, expects, name, channels):
    return ValueError(
        f'{where} expects {expects}, but the {name} backbone gives {len(channels)} maps with '
        f'channels {channels} (its out_channels): set {where}.in_channels from those, or '
        'change the backbone out_indices')


def _check_reader(where, reader, name, channels):
    """A neck or head config against the maps ``channels`` (readers without ``in_channels``
    pass)."""
    if _type_name(reader) in RESCALING_NECKS:
        rescales, dim = reader.get('rescales', [4, 2, 1, 0.5]), reader.get('embed_dim')
        if len(rescales) != len(channels) or any(c != dim for c in channels):
            raise _mismatch(where, f'{len(rescales)} maps of {dim} channels', name, channels)
        return
    expected = reader.get('in_channels')
    if expected is None:
        return
    if 'in_index' in reader or where.endswith('head'):
        index = reader.get('in_index', -1)
        indices = list(index) if isinstance(index, (list, tuple)) else [index]
        bad = [i for i in indices if not -len(channels) <= i < len(channels)]
        if bad:
            raise _mismatch(where, f'in_index={index}', name, channels)
        selected = [channels[i] for i in indices]
        read = selected if isinstance(index, (list, tuple)) else selected[0]
    else:
        read = channels if isinstance(expected, (list, tuple)) else channels[-1]
    if (list(expected) if isinstance(expected, (list, tuple)) else expected) != read:
        raise _mismatch(where, f'in_channels={expected}', name, channels)


def backbone_readers(model):
    """The configs that read the backbone's maps directly, as (dotted path, config): the
    neck, or without one (or after a rescaling neck, which passes maps on with their
    channels) the decode and auxiliary heads, or the classifier head."""
    readers = []
    neck = model.get('neck')
    if isinstance(neck, (list, tuple)):
        neck = neck[0] if neck else None
    if neck:
        readers.append(('model.neck', neck))
        if _type_name(neck) not in RESCALING_NECKS:
            return readers
    for key in ('decode_head', 'auxiliary_head'):
        heads = model.get(key)
        listed = isinstance(heads, (list, tuple))
        for i, head in enumerate(heads if listed else [heads]):
            if head:
                readers.append((f'model.{key}' + (f'[{i}]' if listed else ''), head))
    head = model.get('head')
    if head and not neck and 'in_channels' in head:
        readers.append(('model.head', head))
    return readers


def check_config(cfg):
    """Raise when ``cfg`` (an mmengine Config) drops our backbone into a model whose neck,
    heads or optimizer constructor do not fit it; configs of other backbones pass."""
    model = cfg.get('model') or {}
    backbone = model.get('backbone') or {}
    name = _type_name(backbone)
    if name not in FAMILIES:
        return
    constructor = (cfg.get('optim_wrapper') or {}).get('constructor')
    if constructor:
        refuse_library_constructor(constructor, name)
    channels = backbone_out_channels(backbone)
    for where, reader in backbone_readers(model):
        _check_reader(where, reader, name, channels)
