"""What a checkpoint is: the file layout (who wrote it), where its encoder is, the backbone
family and the source layout of the encoder's tensors (:mod:`.sources`)."""
import re
from dataclasses import dataclass

from ..families import FAMILIES
from .errors import CheckpointError
from .sources import Source, source_for

WRAPPER_KEYS = ('state_dict', 'model', 'module')
# where transfer checkpoints keep the backbone: detectron2 FPN (``bottom_up``) and ViTDet
# (``net``) models, then mmdet/mmseg/mmpretrain models
BACKBONE_PREFIXES = ('backbone.bottom_up.', 'backbone.net.', 'backbone.')
# what unprefixed official checkpoints keep next to the encoder: the pretraining decoders of
# MAE (models_mae.py: decoder_*, mask_token) and ConvMAE (models_convmae.py: also the
# stage1/2_output_decode fusion convolutions), classifier heads of the fine-tuned models and
# timm (head, head_dist, pre_logits)
NON_ENCODER = re.compile(r'^(decoder_|decoder\.|mask_token$|head\.|head_dist\.|pre_logits\.|'
                         r'stage[12]_output_decode\.)')


def describe_layout(checkpoint):
    """A short name of the file layout, for reports.

    Raises:
        CheckpointError: the file is not a dict of tensors or of known wrappers.
    """
    import torch
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f'the file holds a {type(checkpoint).__name__}, not a dict of '
                              'tensors or a checkpoint dict')
    keys = set(checkpoint)
    if checkpoint and all(isinstance(v, torch.Tensor) or _numeric_array(v)
                          for v in checkpoint.values()):
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


def wrapper_key(checkpoint):
    """The top-level key :func:`unwrap_state_dict` takes, or None."""
    for key in WRAPPER_KEYS:
        if isinstance(checkpoint, dict) and isinstance(checkpoint.get(key), dict):
            return key
    return None


def unwrap_state_dict(checkpoint):
    """The state dict inside ``{'state_dict': ...}``, ``{'model': ...}`` or a bare dict,
    with DDP's ``module.`` prefix stripped and numpy arrays (detectron2's model zoo stores
    its weights as arrays) turned into tensors."""
    import torch
    key = wrapper_key(checkpoint)
    state_dict = checkpoint if key is None else checkpoint[key]
    if not isinstance(state_dict, dict):
        raise CheckpointError(f'expected a state dict, got {type(state_dict).__name__}')
    return {k[len('module.'):] if k.startswith('module.') else k:
            torch.as_tensor(v) if _numeric_array(v) else v
            for k, v in state_dict.items()}


def _numeric_array(value):
    import numpy as np
    return isinstance(value, np.ndarray) and value.dtype.kind in 'biuf'


def strip_prefix(state_dict, prefix):
    """Keys under ``prefix`` (for example ``'backbone.'``) with the prefix removed."""
    return {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}


def encoder_family(state_dict):
    """The family name whose encoder ``state_dict`` (prefix removed) holds (its patch
    embedding under any accepted name), else None."""
    for name, family in FAMILIES.items():
        if any(m in state_dict for m in family.markers):
            return name
    return None


@dataclass
class Encoder:
    """A checkpoint's encoder, found.

    Attributes:
        tensors: the encoder's tensors, prefix removed, under the source's names.
        others: the file's other tensors, under their own names.
        prefix: the encoder's key prefix ('' for none).
        family: the backbone family the tensors are read as.
        source: their source layout.
    """
    tensors: dict
    others: dict
    prefix: str
    family: str
    source: Source

    def adapted(self, model=None):
        """The tensors under our names, fitted to ``model`` when given (the source's
        adaptation function)."""
        return self.source.adapt(self.tensors, model, self.others)


def find_encoder(state_dict, family=None, prefix=None, source='checkpoint'):
    """Find the encoder of an unwrapped state dict.

    Args:
        state_dict (dict): an unwrapped state dict.
        family (str | None): read the tensors as this family's (the backbone a load fills);
            None recognises the family from the tensors.
        prefix (str | None): the encoder's key prefix; None finds one of
            :data:`BACKBONE_PREFIXES` or, when no key has one, takes every key that is not a
            known decoder or head (:data:`NON_ENCODER`).
        source (str): the file, named in errors.

    Raises:
        CheckpointError: ``prefix`` was given and no key has it; or ``family`` is None and
            the tensors hold no encoder of a known family.
    """
    if prefix is None:
        prefix = next((p for p in BACKBONE_PREFIXES if any(k.startswith(p) for k in state_dict)),
                      '')
    if prefix:
        tensors = strip_prefix(state_dict, prefix)
        if not tensors:
            raise CheckpointError(f'no key of {source} starts with {prefix!r}; its first keys '
                                  f'are {list(state_dict)[:5]}')
        others = {k: v for k, v in state_dict.items() if not k.startswith(prefix)}
    else:
        tensors = {k: v for k, v in state_dict.items() if not NON_ENCODER.match(k)}
        others = {k: v for k, v in state_dict.items() if NON_ENCODER.match(k)}
    if family is None:
        family = encoder_family(tensors)
        if family is None:
            encoders = ' or '.join(f'{f.noun} ({", ".join(f.markers)})'
                                   for f in FAMILIES.values())
            raise CheckpointError(
                f'{source} holds no {encoders} encoder'
                f'{f" under {prefix!r}" if prefix else ""}; its first keys are '
                f'{list(tensors)[:5]}')
    return Encoder(tensors, others, prefix, family, source_for(family, tensors, prefix))
