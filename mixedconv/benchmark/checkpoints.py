"""Tell what a pretrained checkpoint is: backbone family and arch, method, pretraining epochs.

The pretraining config that mmengine stores in a checkpoint's ``meta['cfg']`` is the most
reliable source (it names the method and the exact arch, heads included); released
checkpoints without it are recognised from their tensor names and shapes.
"""
import os.path as osp
import re
from dataclasses import dataclass
from typing import Optional, Union

from mmengine.config import Config

from ..checkpoint import CheckpointError, safe_load, strip_prefix, unwrap_state_dict
from ..leaderboard.collect import infer_method
from ..models.backbones.convvit import ConvViT
from ..models.backbones.plain_vit import PlainViT
from .recipes import FAMILIES
from .tiny import ARCHS as TINY_ARCHS

METHODS = {'ConvMAE': 'ConvMAE', 'MixedAE': 'MixedAE', 'MAE': 'MAE'}  # model.type -> label
FAMILY_LABEL = {'ConvViT': 'ConvViT', 'PlainViT': 'ViT'}


@dataclass
class CheckpointInfo:
    """What :func:`describe_checkpoint` found."""
    path: str
    family: str                      # 'ConvViT' or 'PlainViT'
    arch: Union[str, dict]           # an arch_zoo name or an arch dict
    method: str                      # 'ConvMAE', 'MixedAE', 'MAE' or as given
    pretrain_epochs: Optional[int] = None

    @property
    def backbone_label(self):
        """'ConvViT-B', 'ViT-L', 'ViT-tiny' (the embedded preset) or 'ViT-custom'."""
        if isinstance(self.arch, str):
            size = self.arch[0].upper()
        elif self.arch == TINY_ARCHS[self.family]:
            size = 'tiny'
        else:
            size = 'custom'
        return f'{FAMILY_LABEL[self.family]}-{size}'


def parse_arch(text):
    """``'PlainViT'`` or ``'PlainViT:large'`` -> (family, arch name or None), validated."""
    family, _, name = text.partition(':')
    if family not in FAMILIES:
        raise ValueError(f'unknown backbone {family!r}; valid: {", ".join(FAMILIES)} '
                         '(optionally :ARCH, e.g. PlainViT:large)')
    zoo = FAMILIES[family].arch_zoo
    if name and name not in zoo:
        raise ValueError(f'unknown {family} arch {name!r}; valid: {", ".join(zoo)}')
    return family, name or None


def describe_checkpoint(path, method=None, arch=None):
    """Inspect ``path``. ``method`` overrides the method found (or not found) in it; ``arch``
    (``'ConvViT'``, ``'PlainViT:large'``, see :func:`parse_arch`) states the backbone instead
    of reading it from the checkpoint.

    Raises:
        CheckpointError: the tensors fit neither ConvViT nor a plain ViT, or not the stated
            backbone.
        ValueError: the method cannot be told and was not given; an unknown ``arch``.
    """
    family, arch_name = parse_arch(arch) if arch else (None, None)
    checkpoint = safe_load(path)
    meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
    cfg_text = meta.get('cfg') if isinstance(meta, dict) else None
    info = _from_config(path, cfg_text) if cfg_text else None
    if arch_name:
        info = CheckpointInfo(path, family, arch_name, info and info.method,
                              info and info.pretrain_epochs)
    if info is None:
        info = _from_tensors(path, unwrap_state_dict(checkpoint))
    if family and info.family != family:
        raise CheckpointError(f'{path} holds a {info.family} encoder, not the {family} given '
                              'by --arch')
    info.method = method or info.method or infer_method(osp.basename(path))
    if not info.method:
        raise ValueError(f'cannot tell the pretraining method of {path}; pass --method '
                         f'(for example {", ".join(METHODS)})')
    return info


def _from_config(path, cfg_text):
    cfg = Config.fromstring(cfg_text, file_format='.py')
    model = cfg.get('model', {})
    backbone = model.get('backbone', {})
    epochs = cfg.get('train_cfg', {}).get('max_epochs')
    method = METHODS.get(model.get('type'))
    if backbone.get('type') in ('ConvViT', 'PlainViT'):
        return CheckpointInfo(path, backbone['type'], backbone.get('arch'), method, epochs)
    if backbone.get('type') == 'MAEViT':  # mmpretrain's MAE encoder, loaded by PlainViT
        return CheckpointInfo(path, 'PlainViT', _plain_arch_of_mmpretrain(backbone['arch']),
                              method, epochs)
    return None


def _plain_arch_of_mmpretrain(arch):
    if isinstance(arch, str):
        names = {'b': 'base', 'l': 'large', 'h': 'huge', 's': 'small', 't': 'tiny'}
        return names.get(arch, arch)
    return dict(embed_dim=arch['embed_dims'], depth=arch['num_layers'],
                num_heads=arch['num_heads'],
                mlp_ratio=arch['feedforward_channels'] / arch['embed_dims'])


def _count(state_dict, pattern):
    return len({m.group(1) for k in state_dict for m in [re.match(pattern, k)] if m})


def _from_tensors(path, state_dict):
    if any(k.startswith('backbone.') for k in state_dict):
        state_dict = strip_prefix(state_dict, 'backbone.')
    if 'patch_embed1.proj.weight' in state_dict:
        dims = tuple(state_dict[f'patch_embed{i}.proj.weight'].shape[0] for i in (1, 2, 3))
        depths = tuple(_count(state_dict, rf'blocks{i}\.(\d+)\.') for i in (1, 2, 3))
        return CheckpointInfo(path, 'ConvViT', _match(ConvViT.arch_zoo, dict(
            embed_dims=dims, depths=depths), path), None)
    for proj, blocks in (('patch_embed.proj.weight', r'blocks\.(\d+)\.'),
                         ('patch_embed.projection.weight', r'layers\.(\d+)\.')):
        if proj in state_dict:
            shape = dict(embed_dim=state_dict[proj].shape[0], depth=_count(state_dict, blocks))
            return CheckpointInfo(path, 'PlainViT', _match(PlainViT.arch_zoo, shape, path), None)
    raise CheckpointError(
        f'{path} is neither a ConvViT (patch_embed1..3, blocks1..3) nor a plain ViT '
        f'(patch_embed.proj, blocks.N) checkpoint; first keys: {list(state_dict)[:5]}')


def _match(arch_zoo, shape, path):
    """The arch_zoo name whose sizes equal ``shape`` (heads are not visible in tensors)."""
    for name, arch in arch_zoo.items():
        if all(tuple(arch[k]) == tuple(v) if isinstance(v, tuple) else arch[k] == v
               for k, v in shape.items()):
            return name
    raise CheckpointError(f'{path}: sizes {shape} match no known arch ({", ".join(arch_zoo)}) '
                          'and the checkpoint stores no config; its attention heads cannot be '
                          'told from the tensors')
