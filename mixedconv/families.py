"""The two backbone families, ConvViT (ConvMAE) and PlainViT (MAE / MixedAE), as data.

A :class:`Family` holds what the rest of the toolkit needs to know about a backbone without
building it: its arch table (short and long names, as mmpretrain), the sizes a checkpoint's
tensors reveal, the output channels of each level, the label runs and leaderboard rows carry,
and the tiny preset of the tests and the embedded benchmark. A :class:`Method` (ConvMAE,
MixedAE, MAE) names its family and its pretraining and transfer configs. The backbones take
their arch tables from here; the task runner, the tiny presets, the speed tool and the
leaderboard ask this module. It imports nothing heavier than the standard library, so the
leaderboard renders without torch.

Arch sizes: ConvMAE paper Table 1 and Alpha-VL/ConvMAE ``models_convmae.py``
(``convmae_convvit_{small,base,large,huge}_patch16``); ViT sizes as timm / mmpretrain
``VisionTransformer.arch_zoo`` with ViTDet's output blocks (detectron2
``projects/ViTDet/configs``).
"""
import re
from dataclasses import dataclass, field
from typing import Callable, Dict, Mapping, Optional, Tuple, Union

Arch = Union[str, Mapping]

SIZE_LETTERS = {'t': 'T', 'tiny': 'T', 's': 'S', 'small': 'S', 'b': 'B', 'base': 'B',
                'l': 'L', 'large': 'L', 'h': 'H', 'huge': 'H'}
TINY = 'tiny'  # the size name of the tiny preset in labels ('ViT-tiny')


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
        noun: what messages call an encoder of the family.
        markers: the first parameter of the encoder, under every name a loader accepts; a
            state dict holding one holds this family's encoder.
        transfer_only: pattern of the backbone's parameter names that exist only at transfer
            and that no pretraining checkpoint holds (relative position tables, layer scale,
            the /32 level, the pyramid, the fine-tuning ``fc_norm``).
        must_load: pattern of the tensors that change what the backbone computes: when a
            checkpoint holds one, the backbone must take it, else the checkpoint was trained
            with other backbone options.
        kwargs_from_tensors: ``state_dict -> dict`` of the backbone's constructor arguments
            that encoder tensors (prefix removed, our names) show; ValueError when they are
            incomplete.
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
    noun: str
    markers: Tuple[str, ...]
    transfer_only: str
    must_load: str
    kwargs_from_tensors: Callable[[Mapping], dict]

    def is_transfer_only(self, name):
        """Whether parameter ``name`` exists only at transfer (:attr:`transfer_only`)."""
        return re.search(self.transfer_only, name) is not None

    def is_must_load(self, name):
        """Whether a checkpoint tensor ``name`` must be taken (:attr:`must_load`)."""
        return re.search(self.must_load, name) is not None

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
            return TINY
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

    def default_out_indices(self, arch, out_type='featmap'):
        """The outputs the backbone returns when its config names no ``out_indices``:
        ConvViT stage 3 (level 2); PlainViT the arch's ViTDet blocks for feature maps
        (the last block where the arch has none) and the last block for other outputs."""
        if self.per_stage:
            return (2, )
        settings = self.settings(arch)
        last = (settings['depth'] - 1, )
        return tuple(settings.get('out_indices', last)) if out_type == 'featmap' else last


# ----------------------------------------------------------------------------------------
# constructor arguments from a checkpoint's tensors (shapes only: no torch needed)

_REL_POS = r'(relative_position_bias_table|rel_pos_[hw])$'
_LAYER_SCALE = r'\.ls[12]\.gamma$'


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
        if key.startswith(block_prefix) and len(value.shape) == 2:
            if key.endswith('relative_position_bias_table'):
                return value.shape[1]
            if key.endswith(('rel_pos_h', 'rel_pos_w')) and dim % value.shape[1] == 0:
                return dim // value.shape[1]
    return dim // 64 if dim % 64 == 0 and dim >= 64 else 1


def _ratio(hidden, dim):
    ratio = hidden / dim
    return int(ratio) if float(ratio).is_integer() else ratio


def _convvit_kwargs(sd):
    """ConvViT arguments of official ConvMAE-named tensors: sizes, image size, final or
    fine-tuning norm, the SEG /32 convolution, layer scale."""
    dims = tuple(sd[f'patch_embed{i}.proj.weight'].shape[0] for i in (1, 2, 3))
    depths = tuple(_count(sd, rf'blocks{i}\.(\d+)\.') for i in (1, 2, 3))
    if 0 in depths:
        raise ValueError(f'ConvViT stage depths {depths}: a stage has no blocks')
    mlp = tuple(_ratio(sd[f'blocks{i + 1}.0.mlp.fc1.weight'].shape[0], dims[i])
                for i in range(3))
    arch = dict(embed_dims=dims, depths=depths, num_heads=_heads(sd, dims[2], 'blocks3.'),
                mlp_ratios=mlp)
    kwargs = dict(arch=CONVVIT.zoo_name(arch, CONVVIT.tensor_sizes + ('mlp_ratios',)) or arch)
    if 'pos_embed' in sd:
        side = _square_side(sd['pos_embed'].shape[1])
        if side is None:
            raise ValueError(f"ConvViT pos_embed {tuple(sd['pos_embed'].shape)} is not a "
                             'square grid; its image size cannot be told')
        kwargs['img_size'] = side * 16
    kwargs['in_channels'] = sd['patch_embed1.proj.weight'].shape[1]
    if 'fc_norm.weight' in sd:
        kwargs['out_type'] = 'avg_featmap'  # the fine-tuned model: fc_norm, no norm
    elif 'norm.weight' not in sd:
        kwargs['final_norm'] = False  # the detection/segmentation backbones
    if 'level4_conv.conv.weight' in sd:  # the SEG /32 convolution (SEG/backbone/convmae.py)
        norm = any(k.startswith('level4_conv.') and not k.startswith('level4_conv.conv.')
                   for k in sd)
        kwargs.update(out_indices=(0, 1, 2, 3), out_level4='conv', level4_cfg=dict(
            bias='level4_conv.conv.bias' in sd, norm_cfg=dict(type='BN') if norm else None))
    if any(re.search(_LAYER_SCALE, k) for k in sd):
        kwargs['layer_scale_init'] = 1.0
    return kwargs


def _plainvit_kwargs(sd):
    """PlainViT arguments of timm-named tensors: sizes, patch and image size, class token,
    final or fine-tuning norm, the folded pyramid, layer scale."""
    proj = sd['patch_embed.proj.weight']
    dim, depth = proj.shape[0], _count(sd, r'blocks\.(\d+)\.')
    if not depth:
        raise ValueError('plain ViT checkpoint without blocks.N tensors')
    arch = dict(embed_dim=dim, depth=depth, num_heads=_heads(sd, dim, 'blocks.'),
                mlp_ratio=_ratio(sd['blocks.0.mlp.fc1.weight'].shape[0], dim))
    name = PLAINVIT.zoo_name(arch, PLAINVIT.tensor_sizes + ('mlp_ratio',))
    kwargs = dict(arch=name or arch, patch_size=proj.shape[-1], in_channels=proj.shape[1])
    with_cls = 'cls_token' in sd
    kwargs['with_cls_token'] = with_cls
    if 'pos_embed' in sd:
        tokens = sd['pos_embed'].shape[1]
        side = _square_side(tokens - int(with_cls)) or _square_side(tokens - 1 + int(with_cls))
        if side is None:
            raise ValueError(f"plain ViT pos_embed {tuple(sd['pos_embed'].shape)} is not a "
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
    if any(re.search(_LAYER_SCALE, k) for k in sd):
        kwargs['layer_scale_init'] = 1.0
    return kwargs


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
    tiny=dict(embed_dims=(16, 32, 64), depths=(1, 1, 2), num_heads=2, mlp_ratios=(2, 2, 2)),
    noun='ConvViT', markers=('patch_embed1.proj.weight',),
    transfer_only=rf'{_REL_POS}|\.ls[12]\.|^level4_conv\.|^fc_norm\.',
    must_load=rf'{_REL_POS}|{_LAYER_SCALE}|^level4_conv\.',
    kwargs_from_tensors=_convvit_kwargs)

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
    tiny=dict(embed_dim=64, depth=4, num_heads=2, mlp_ratio=2.),
    noun='plain ViT', markers=('patch_embed.proj.weight', 'patch_embed.projection.weight'),
    transfer_only=rf'{_REL_POS}|\.ls[12]\.|^fpn|^fc_norm\.',
    must_load=rf'{_REL_POS}|{_LAYER_SCALE}',
    kwargs_from_tensors=_plainvit_kwargs)

FAMILIES: Dict[str, Family] = {f.name: f for f in (CONVVIT, PLAINVIT)}

# the decoders and heads of the pretraining methods at the tiny preset's scale (our
# ReconstructionDecoder's names; mmpretrain's MAE neck takes them as decoder_*)
TINY_DECODER = dict(embed_dim=32, depth=1, num_heads=2)


@dataclass(frozen=True)
class Method:
    """One pretraining method.

    Attributes:
        name: label of runs and leaderboard rows, and the registry ``type`` of its
            pretraining model (``ConvMAE``, ``MixedAE``; mmpretrain's ``MAE``).
        family: the backbone family of its encoder.
        pretrain_configs: its pretraining configs, the benchmark's first.
        transfer_configs: benchmark task -> its transfer config.
        family_recipes: its transfer configs are the benchmark recipes of :attr:`family`,
            which checkpoints of any method of that family run (MAE's configs are
            MixedAE's with another default checkpoint).
    """
    name: str
    family: Family
    pretrain_configs: Tuple[str, ...] = ()
    transfer_configs: Mapping[str, str] = field(default_factory=dict)
    family_recipes: bool = False

    @property
    def key(self):
        """The lower-case name of ``--pretrain`` and of file and folder names."""
        return self.name.lower()


CONVMAE = Method(
    'ConvMAE', CONVVIT,
    pretrain_configs=('configs/convmae/convmae_convvit-base-p16_8xb384-amp-coslr-1600e_in1k.py', ),
    transfer_configs={
        'coco-maskrcnn':
            'configs/convmae/mask-rcnn_convvit-base-p16_sfp_8xb2-amp-lsj-1024-25e_coco.py',
        'coco-maskrcnn-fpn':
            'configs/convmae/mask-rcnn_convvit-base-p16_fpn_8xb4-amp-lsj-1024-25e_coco.py',
        'ade20k-upernet':
            'configs/convmae/upernet_convvit-base-p16_8xb2-amp-160k_ade20k-512x512.py',
        'in1k-finetune': 'configs/convmae/convmae_convvit-base-p16_8xb128-coslr-100e_in1k.py',
        'in1k-linear': 'configs/convmae/convmae_convvit-base-p16_8xb512-linear-coslr-90e_in1k.py',
    },
    family_recipes=True)
MIXEDAE = Method(
    'MixedAE', PLAINVIT,
    pretrain_configs=('configs/mixedae/mixedae_vit-base-p16_8xb256-amp-coslr-1600e_in1k.py',
                      'configs/mixedae/mixedae_vit-base-p16_8xb256-amp-coslr-800e_in1k.py'),
    transfer_configs={
        'coco-maskrcnn':
            'configs/mixedae/mask-rcnn_vit-base-p16_sfp_16xb4-amp-lsj-1024-100e_coco.py',
        'ade20k-upernet': 'configs/mixedae/upernet_vit-base-p16_8xb2-amp-160k_ade20k-512x512.py',
        'in1k-finetune': 'configs/mixedae/mixedae_vit-base-p16_8xb128-coslr-100e_in1k.py',
    },
    family_recipes=True)
MAE = Method(
    'MAE', PLAINVIT,
    pretrain_configs=('configs/mae/mae_vit-base-p16_8xb512-amp-coslr-1600e_in1k.py', ),
    transfer_configs={
        'coco-maskrcnn': 'configs/mae/mask-rcnn_vit-base-p16_sfp_16xb4-amp-lsj-1024-100e_coco.py',
        'ade20k-upernet': 'configs/mae/upernet_vit-base-p16_8xb2-amp-160k_ade20k-512x512.py',
        'in1k-finetune': 'configs/mae/mae_vit-base-p16_8xb128-coslr-100e_in1k.py',
    })
IBOT = Method('iBOT', PLAINVIT)  # published reference rows only: no configs here

METHODS: Dict[str, Method] = {m.name: m for m in (CONVMAE, MIXEDAE, MAE, IBOT)}
PRETRAINABLE = {m.key: m for m in METHODS.values() if m.pretrain_configs}


def method_of_model_type(type_name):
    """The :class:`Method` whose pretraining model has registry ``type`` ``type_name``
    (``'mmpretrain.MAE'`` too), or None."""
    name = str(type_name).rpartition('.')[-1]
    return METHODS.get(name)


def method_in_name(text):
    """The method a file or folder name names (``convmae_base_1600ep.pth`` -> ConvMAE), or
    None. Longer names are tried first, so ``convmae`` and ``mixedae`` are not read as
    ``mae``."""
    lowered = str(text).lower()
    for method in sorted(METHODS.values(), key=lambda m: -len(m.key)):
        if method.key in lowered:
            return method
    return None


def family_recipes(family):
    """Benchmark task -> config of the recipes that transfer a ``family`` (a name or a
    :class:`Family`) checkpoint, whichever method pretrained it."""
    family = FAMILIES[family] if isinstance(family, str) else family
    recipes = {}
    for method in METHODS.values():
        if method.family is family and method.family_recipes:
            recipes.update(method.transfer_configs)
    return recipes

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


def mmpretrain_arch_of_plain(arch):
    """A PlainViT arch as the arch dict of mmpretrain's ViTs (``MAEViT``, ...): the
    inverse of :func:`plain_arch_of_mmpretrain`."""
    settings = {**PLAINVIT.optional, **PLAINVIT.settings(arch)}
    mm = {theirs: settings[ours] for theirs, ours in _MMPRETRAIN_VIT_KEYS.items()}
    mm['feedforward_channels'] = int(settings['embed_dim'] * settings['mlp_ratio'])
    return mm


def backbone_of_cfg(backbone):
    """(family, arch) of a ``model.backbone`` config: ours by type, mmpretrain's ViTs
    (``VisionTransformer``, ``MAEViT``) as PlainViT with their arch translated; arch None
    when the config's arch cannot be read. None for backbones of no family.

    Raises:
        ValueError: the arch is not one of the family's (an unknown name, a bad dict).
    """
    fam = family_of_type(backbone.get('type', ''))
    if fam is None:
        return None
    ours = str(backbone.get('type')).rpartition('.')[-1] == fam.name
    arch = backbone.get('arch', fam.default_arch if ours else None)
    if arch is None:
        return fam, None
    try:
        if not ours:
            arch = plain_arch_of_mmpretrain(arch)
        if isinstance(arch, str):
            return fam, fam.canonical(arch)
        fam.settings(arch)  # checked; the config's own dict is returned
        return fam, arch
    except (KeyError, TypeError, AttributeError) as err:
        raise ValueError(f'cannot read the arch {arch!r} of a {fam.name} backbone: {err}')


def label_of_backbone_cfg(backbone):
    """Run label of a ``model.backbone`` config (ours or mmpretrain's ViTs), or None when the
    type is not a ViT family; the bare family label when its arch cannot be read."""
    fam = family_of_type(backbone.get('type', ''))
    if fam is None:
        return None
    try:
        _, arch = backbone_of_cfg(backbone)
    except ValueError:
        return fam.label
    return fam.label if arch is None else fam.backbone_label(arch)


_SIZE_IN_NAME = re.compile(r'vit[-_]?(tiny|small|base|large|huge|t|s|b|l|h)(?![a-z])')


def arch_in_name(text):
    """(family, arch_zoo key or None) that a model or folder name spells, e.g.
    ``convmae_convvit_base_patch16`` (the official ``args.model``) or
    ``mask-rcnn_vit-l_coco``; None when it names no family."""
    fam = family_of_type(text)
    if fam is None:
        return None
    match = _SIZE_IN_NAME.search(str(text).lower())
    if match is None:
        return fam, None
    try:
        return fam, fam.canonical(match.group(1))
    except ValueError:  # a size the family does not have (ConvViT-tiny)
        return fam, None


def label_in_name(text):
    """``'ViT-L'``-style label that a name spells, the bare family label when it names no
    size, None when it names no family."""
    found = arch_in_name(text)
    if found is None:
        return None
    fam, arch = found
    return fam.label if arch is None else fam.backbone_label(arch)
