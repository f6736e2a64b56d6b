"""The two backbone families, ConvViT (ConvMAE) and PlainViT (MAE / MixedAE), as data.

A :class:`Family` holds what the rest of the toolkit needs to know about a backbone without
building it: its arch table (short and long names, as mmpretrain), the sizes a checkpoint's
tensors reveal, the output channels of each level, the label runs and leaderboard rows carry,
and the tiny preset of the tests and the embedded benchmark. The backbones take their arch
tables from here; the task runner, the tiny presets, the speed tool and the leaderboard ask
this module. It imports nothing heavier than the standard library, so the leaderboard renders
without torch.

Arch sizes: ConvMAE paper Table 1 and Alpha-VL/ConvMAE ``models_convmae.py``
(``convmae_convvit_{small,base,large,huge}_patch16``); ViT sizes as timm / mmpretrain
``VisionTransformer.arch_zoo`` with ViTDet's output blocks (detectron2
``projects/ViTDet/configs``).
"""
from dataclasses import dataclass
from typing import Dict, Mapping, Optional, Tuple, Union

Arch = Union[str, Mapping]

SIZE_LETTERS = {'t': 'T', 'tiny': 'T', 's': 'S', 'small': 'S', 'b': 'B', 'base': 'B',
                'l': 'L', 'large': 'L', 'h': 'H', 'huge': 'H'}


@dataclass(frozen=True)
class Family:
    """One backbone family.

    Attributes:
        name: registry ``type`` of the backbone.
        label: prefix of run and leaderboard labels (``'ConvViT-B'``, ``'ViT-L'``).
        arch_zoo: arch name -> settings, the backbone's constructor sizes.
        arch_aliases: other accepted names -> arch_zoo key.
        default_arch: the backbone's default ``arch``.
        required: keys a custom arch dict must have.
        optional: defaults of the keys a custom arch dict may leave out.
        per_stage: keys with one value per stage (ConvViT's three stages).
        tensor_sizes: keys whose values a checkpoint's tensors reveal (widths, depths;
            attention heads they do not).
        tiny: the arch of the tests and the embedded benchmark (a dict, not in the zoo).
    """
    name: str
    label: str
    arch_zoo: Mapping[str, Mapping]
    arch_aliases: Mapping[str, str]
    default_arch: str
    required: Tuple[str, ...]
    optional: Mapping[str, object]
    per_stage: Tuple[str, ...]
    tensor_sizes: Tuple[str, ...]
    tiny: Mapping

    def canonical(self, name):
        """The arch_zoo key of ``name`` (either spelling); ValueError naming the valid ones."""
        key = self.arch_aliases.get(name, name)
        if key not in self.arch_zoo:
            names = ', '.join(sorted(set(self.arch_zoo) | set(self.arch_aliases)))
            raise ValueError(f'unknown {self.name} arch {name!r}; use one of '
                             f'{sorted(self.arch_zoo)} (valid: {names}) or a dict with '
                             f'{", ".join(self.required)}')
        return key

    def settings(self, arch):
        """The settings dict of ``arch`` (a name or a custom dict, checked), a fresh copy."""
        if isinstance(arch, str):
            return dict(self.arch_zoo[self.canonical(arch)])
        missing = [k for k in self.required if k not in arch]
        extra = set() if self.per_stage else {'out_indices'}  # PlainViT's ViTDet blocks
        unknown = sorted(set(arch) - set(self.required) - set(self.optional) - extra)
        if missing or unknown:
            may = f' and may have {[*self.optional, *extra]}' if self.optional else ''
            raise ValueError(f'a custom {self.name} arch needs exactly the keys '
                             f'{list(self.required)}{may}; missing {missing}, unknown {unknown}')
        for key in self.per_stage:
            if len(arch[key]) != 3:
                raise ValueError(f'arch[{key!r}] needs one value per stage (3), got {arch[key]}')
        return {**self.optional, **arch}

    def depth(self, arch):
        """Blocks of the transformer stage the recipes index (ConvViT stage 3, PlainViT all)."""
        depth = self.settings(arch)[self.required[1]]
        return depth[-1] if isinstance(depth, (tuple, list)) else depth

    def out_channels(self, arch, out_indices):
        """Channels of each output map, in output order.

        ConvViT indexes its levels /4, /8, /16, /32 (the /32 level keeps stage 3's width);
        PlainViT returns its width once per output block.
        """
        settings = self.settings(arch)
        if self.per_stage:
            dims = settings['embed_dims']
            per_level = (dims[0], dims[1], dims[2], dims[2])
            return [per_level[i] for i in out_indices]
        return [settings['embed_dim']] * len(out_indices)

    def _core(self, settings):
        """The size keys of ``settings`` (no ``out_indices``), optional ones defaulted,
        sequences as tuples and whole-number floats as ints, so equal sizes compare equal."""
        def norm(v):
            if isinstance(v, (tuple, list)):
                return tuple(norm(x) for x in v)
            return int(v) if isinstance(v, float) and v.is_integer() else v
        return {k: norm(v) for k, v in {**self.optional, **settings}.items()
                if k in self.required or k in self.optional}

    def size_name(self, arch):
        """``'B'``-style letter of a zoo arch (or a dict equal to one), ``'tiny'`` for the
        tiny preset, else ``'custom'``."""
        if isinstance(arch, str):
            return SIZE_LETTERS.get(self.canonical(arch), self.canonical(arch).upper())
        settings = self.settings(arch)
        if self._core(settings) == self._core(self.tiny):
            return 'tiny'
        name = self.zoo_name(settings)
        return SIZE_LETTERS[name] if name else 'custom'

    def backbone_label(self, arch):
        """``'ConvViT-B'``, ``'ViT-L'``, ``'ViT-tiny'`` (the preset) or ``'ViT-custom'``."""
        return f'{self.label}-{self.size_name(arch)}'

    def zoo_name(self, settings, keys=None) -> Optional[str]:
        """The arch_zoo key whose values equal ``settings`` on ``keys`` (default: every
        size key ``settings`` has), or None. Missing optional keys take their defaults."""
        settings = self._core(settings)
        keys = [k for k in (keys or settings) if k in settings]
        for name, spec in self.arch_zoo.items():
            spec = self._core(spec)
            if all(spec.get(k) == settings[k] for k in keys):
                return name
        return None

    def sizes_of(self, arch):
        """The :attr:`tensor_sizes` of ``arch`` (what a checkpoint's tensors must show)."""
        settings = self._core(self.settings(arch))
        return {k: settings[k] for k in self.tensor_sizes}


_VIT_OUT = (3, 5, 7, 11)
CONVVIT = Family(
    name='ConvViT', label='ConvViT', default_arch='b',
    arch_zoo={
        's': dict(embed_dims=(128, 256, 384), depths=(2, 2, 11), num_heads=6,
                  mlp_ratios=(4, 4, 4)),
        'b': dict(embed_dims=(256, 384, 768), depths=(2, 2, 11), num_heads=12,
                  mlp_ratios=(4, 4, 4)),
        'l': dict(embed_dims=(384, 768, 1024), depths=(2, 2, 23), num_heads=16,
                  mlp_ratios=(8, 8, 4)),
        'h': dict(embed_dims=(768, 1024, 1280), depths=(2, 2, 31), num_heads=16,
                  mlp_ratios=(8, 8, 4)),
    },
    arch_aliases={'small': 's', 'base': 'b', 'large': 'l', 'huge': 'h'},
    required=('embed_dims', 'depths', 'num_heads', 'mlp_ratios'), optional={},
    per_stage=('embed_dims', 'depths', 'mlp_ratios'), tensor_sizes=('embed_dims', 'depths'),
    tiny=dict(embed_dims=(16, 32, 64), depths=(1, 1, 2), num_heads=2, mlp_ratios=(2, 2, 2)))

PLAINVIT = Family(
    name='PlainViT', label='ViT', default_arch='base',
    arch_zoo={
        'tiny': dict(embed_dim=192, depth=12, num_heads=3, out_indices=_VIT_OUT),
        'small': dict(embed_dim=384, depth=12, num_heads=6, out_indices=_VIT_OUT),
        'base': dict(embed_dim=768, depth=12, num_heads=12, out_indices=_VIT_OUT),
        'large': dict(embed_dim=1024, depth=24, num_heads=16, out_indices=(7, 11, 15, 23)),
        'huge': dict(embed_dim=1280, depth=32, num_heads=16, out_indices=(7, 15, 23, 31)),
    },
    arch_aliases={'t': 'tiny', 's': 'small', 'b': 'base', 'l': 'large', 'h': 'huge'},
    required=('embed_dim', 'depth', 'num_heads'), optional={'mlp_ratio': 4.},
    per_stage=(), tensor_sizes=('embed_dim', 'depth'),
    tiny=dict(embed_dim=64, depth=4, num_heads=2, mlp_ratio=2.))

FAMILIES: Dict[str, Family] = {f.name: f for f in (CONVVIT, PLAINVIT)}

# mmpretrain's ViT classes (VisionTransformer, MAEViT, ...) spell the arch differently
_MMPRETRAIN_VIT_KEYS = {'embed_dims': 'embed_dim', 'num_layers': 'depth', 'num_heads': 'num_heads'}


def parse_arch(text):
    """``'PlainViT'`` or ``'PlainViT:large'`` (a ``--arch`` value) -> (family name, arch_zoo
    key or None), validated; ValueError naming the valid values."""
    name, _, arch = text.partition(':')
    if name not in FAMILIES:
        raise ValueError(f'unknown --arch {text!r}: unknown backbone {name!r}; valid: '
                         f'{", ".join(FAMILIES)} (optionally :ARCH, e.g. PlainViT:large)')
    return name, FAMILIES[name].canonical(arch) if arch else None


def family_of_type(type_name):
    """The family a backbone ``type`` belongs to: ours by name, any other ViT (mmpretrain's
    ``VisionTransformer``, ``MAEViT``, ...) as PlainViT; None for other backbones."""
    lowered = str(type_name).lower()
    if 'convvit' in lowered:
        return CONVVIT
    if 'vit' in lowered or 'visiontransformer' in lowered or lowered == 'mae':
        return PLAINVIT
    return None


def plain_arch_of_mmpretrain(arch):
    """An mmpretrain ViT ``arch`` (``'b'``, ``'deit-base'``, or a dict with ``embed_dims``,
    ``num_layers``, ``num_heads``, ``feedforward_channels``) as a PlainViT arch."""
    if isinstance(arch, str):
        return PLAINVIT.canonical(arch.lower().rpartition('-')[-1])
    plain = {ours: arch[theirs] for theirs, ours in _MMPRETRAIN_VIT_KEYS.items() if theirs in arch}
    if 'feedforward_channels' in arch:
        plain['mlp_ratio'] = arch['feedforward_channels'] / arch['embed_dims']
    return plain


def label_of_backbone_cfg(backbone):
    """Run label of a ``model.backbone`` config (ours or mmpretrain's ViTs), or None when the
    type is not a ViT family or its arch cannot be read."""
    fam = family_of_type(backbone.get('type', ''))
    if fam is None:
        return None
    arch = backbone.get('arch', fam.default_arch if backbone.get('type') == fam.name else None)
    if arch is None:
        return fam.label
    try:
        if fam is PLAINVIT and backbone.get('type') != fam.name:
            arch = plain_arch_of_mmpretrain(arch)
        return fam.backbone_label(arch)
    except (ValueError, KeyError, TypeError):
        return fam.label
