"""Tell what a pretrained checkpoint is: backbone family and arch, method, pretraining epochs.

The pretraining config that mmengine stores in a checkpoint's ``meta['cfg']`` is the most
reliable source (it names the method and the exact arch, heads included); it is read as data,
never executed. Released checkpoints without it are recognised from the ``args`` their
official ``save_model`` stored, and from their tensor names and shapes, which must agree
with whatever the file or the user claims.

This module is the benchmark's one door to the checkpoint code (reading, finding the
encoder, recognising its family); the rest of the benchmark imports those names from here.
"""
import os.path as osp
import warnings
from dataclasses import dataclass
from typing import Optional, Union

from ..checkpoint import (CheckpointError, backbone_for, find_encoder, safe_load,
                          unwrap_state_dict)
from ..config_data import ConfigTextError, parse_config_text
from ..families import (FAMILIES, METHODS, arch_in_name, backbone_of_cfg,
                        method_of_model_type, parse_arch)
from ..results import infer_method

__all__ = ['CheckpointError', 'CheckpointInfo', 'describe_checkpoint', 'parse_arch']


@dataclass
class CheckpointInfo:
    """What :func:`describe_checkpoint` found."""
    path: str
    family: str                      # 'ConvViT' or 'PlainViT'
    arch: Union[str, dict]           # an arch_zoo name or an arch dict
    method: str                      # a families.METHODS name, or as given
    pretrain_epochs: Optional[int] = None
    pretrain_iters: Optional[int] = None  # iteration-based pretraining (the embedded one)

    @property
    def backbone_label(self):
        """'ConvViT-B', 'ViT-L', 'ViT-tiny' (the embedded preset) or 'ViT-custom'."""
        return FAMILIES[self.family].backbone_label(self.arch)


def describe_checkpoint(path, method=None, arch=None):
    """Inspect ``path``. ``method`` overrides the method found (or not found) in it; ``arch``
    (``'ConvViT'``, ``'PlainViT:large'``, see :func:`parse_arch`) names the arch when the
    tensors cannot tell it (attention heads), and must agree with the tensors.

    What the checkpoint says about itself is read as data only: mmengine's stored config
    (``meta['cfg']``, parsed by :func:`~mixedconv.config_data.parse_config_text`, never
    executed) and the ``args`` namespace that the official ConvMAE and MAE ``save_model``
    store (``args.model``, ``args.epochs``).

    Raises:
        CheckpointError: the tensors fit neither ConvViT nor a plain ViT, or contradict
            ``arch`` or the stored config.
        ValueError: the method cannot be told and was not given; an unknown ``arch``.
    """
    family, arch_name = parse_arch(arch) if arch else (None, None)
    checkpoint = safe_load(path)
    found_family, sizes = _sizes_from_tensors(path, unwrap_state_dict(checkpoint))
    if family and family != found_family:
        raise CheckpointError(f'{path} holds a {found_family} encoder, not the {family} given '
                              f'by --arch; pass --arch {found_family}[:ARCH] or leave it out')
    stored = _from_stored_config(path, checkpoint) or _from_args(path, checkpoint)
    if stored is not None and stored.family != found_family:
        raise CheckpointError(f'{path}: its stored config describes a {stored.family} but its '
                              f'tensors are a {found_family}; the file is inconsistent')
    if arch_name:
        _check_sizes(path, found_family, arch_name, sizes, 'the --arch')
        info = CheckpointInfo(path, found_family, arch_name, stored and stored.method,
                              stored and stored.pretrain_epochs,
                              stored and stored.pretrain_iters)
    elif stored is not None and stored.arch is not None:
        _check_sizes(path, found_family, stored.arch, sizes,
                     'its stored config (or save_model args) names')
        info = stored
    else:
        info = CheckpointInfo(path, found_family,
                              _match(found_family, sizes, path),
                              stored and stored.method, stored and stored.pretrain_epochs,
                              stored and stored.pretrain_iters)
    info.method = method or info.method or infer_method(osp.basename(path))
    if not info.method:
        raise ValueError(f'cannot tell the pretraining method of {path}; pass --method '
                         f'(for example {", ".join(METHODS)})')
    return info


def _from_stored_config(path, checkpoint):
    """What mmengine's ``meta['cfg']`` says, read as data; None when there is none.

    Text that is not literal data (a crafted checkpoint: mmengine dumps only literals) is
    not used, with a warning, and the tensors decide."""
    meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
    cfg_text = meta.get('cfg') if isinstance(meta, dict) else None
    if not isinstance(cfg_text, str):
        return None
    try:
        cfg = parse_config_text(cfg_text, source=f"meta['cfg'] of {path}")
    except ConfigTextError as err:
        warnings.warn(f'{err}; the stored config is ignored and the tensors decide')
        return None
    model = _dict(cfg.get('model'))
    train_cfg = _dict(cfg.get('train_cfg'))
    epochs = _int(train_cfg.get('max_epochs'))
    iters = None
    if epochs is None and _int(train_cfg.get('max_iters')) is not None:
        iters = _int(meta.get('iter'))
        iters = _int(train_cfg.get('max_iters')) if iters is None else iters
    method = method_of_model_type(model.get('type', ''))
    try:
        found = backbone_of_cfg(_dict(model.get('backbone')))
    except ValueError as err:
        warnings.warn(f"meta['cfg'] of {path}: {err}; the tensors decide")
        return None
    if found is None:
        return None
    family, arch = found  # arch None: the tensors tell it
    return CheckpointInfo(path, family.name, arch, method and method.name, epochs, iters)


def _from_args(path, checkpoint):
    """What the ``args`` of the official ConvMAE / MAE ``util/misc.py save_model`` say: the
    model name (``convmae_convvit_base_patch16``, ``mae_vit_large_patch16``) and epochs."""
    args = checkpoint.get('args') if isinstance(checkpoint, dict) else None
    model = getattr(args, 'model', None)
    found = arch_in_name(model) if isinstance(model, str) else None
    if found is None:
        return None
    family, arch = found
    return CheckpointInfo(path, family.name, arch, infer_method(model),
                          _int(getattr(args, 'epochs', None)))


def _dict(value):
    return value if isinstance(value, dict) else {}


def _int(value):
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _sizes_from_tensors(path, state_dict):
    """(family, sizes) of the encoder in ``state_dict``: widths and depths, which the tensors
    show (attention heads they do not), read by the converter's recogniser
    (:func:`~mixedconv.checkpoint.backbone_for`)."""
    family, kwargs = backbone_for(find_encoder(state_dict, source=path), source=path)
    return family, FAMILIES[family].sizes_of(kwargs['arch'])


def _check_sizes(path, family, arch, sizes, said_by):
    """Raise when ``arch`` (an arch_zoo name or dict) has other widths/depths than the
    tensors."""
    claimed = FAMILIES[family].sizes_of(arch)
    if claimed != sizes:
        name = f'{family}:{arch}' if isinstance(arch, str) else f'{family} {arch}'
        raise CheckpointError(f'{path}: {said_by} arch {name}, with sizes {claimed}, but the '
                              f'checkpoint\'s tensors have {sizes}; give the arch the '
                              'checkpoint was trained with')


def _match(family, sizes, path):
    """The arch_zoo name whose sizes equal ``sizes`` (heads are not visible in tensors)."""
    name = FAMILIES[family].zoo_name(sizes, FAMILIES[family].tensor_sizes)
    if name is None:
        raise CheckpointError(f'{path}: sizes {sizes} match no known {family} arch '
                              f'({", ".join(FAMILIES[family].arch_zoo)}) and the checkpoint '
                              'stores no config; its attention heads cannot be told from the '
                              'tensors')
    return name
