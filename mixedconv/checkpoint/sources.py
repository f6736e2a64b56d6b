"""The source layouts of backbone tensors, and one adaptation function for each.

A :class:`Source` is one producer's naming of a backbone family's tensors: where the
producer keeps the encoder in its files (``prefixes``), a key pattern only it writes
(``marker``), and the function that turns its tensors into ours (``adapt``). Every rename and
every resize of position embeddings and relative position tables happens in these functions,
once, in the spirit of timm's ``checkpoint_filter_fn``. Adding a source layout means adding
one function and one :class:`Source` to :data:`SOURCES` (and one test).

An adaptation function takes ``(tensors, model=None, others=None)``: the encoder tensors
(prefix removed) under the source's names, the backbone to fit them to, and the file's
tensors outside the encoder (for a neck the backbone builds itself). Without a model it only
renames: that is how a file's sizes are read before any backbone exists
(:func:`mixedconv.checkpoint.convert.backbone_for`).
"""
import re
from dataclasses import dataclass
from typing import Callable, Optional, Tuple

from .errors import CheckpointError

# index buffers the official modules store; ours are recomputed from the grid
DERIVED_BUFFERS = ('relative_position_index',)


def rename(tensors, renames):
    """``tensors`` with each key renamed by the first (regex, replacement) of ``renames`` that
    matches (unchanged when none does), without the derived index buffers."""
    out = {}
    for key, value in tensors.items():
        if key.endswith(DERIVED_BUFFERS):
            continue
        for pattern, replacement in renames:
            key, count = re.subn(pattern, replacement, key)
            if count:
                break
        out[key] = value
    return out


# ----------------------------------------------------------------------------------------
# fitting position tables to a backbone


def fit_pos_embed(model, pos, has_cls_row):
    """A checkpoint's absolute position embedding fitted to ``model``.

    Args:
        model: the backbone (``pos_embed``, ``pos_grid``, ``num_extra_tokens``).
        pos (Tensor): (1, extra + Hs*Ws, C); ``extra`` (0 or 1 class-token rows) is
            ``has_cls_row`` when that leaves a grid of the model's or a square size, else the
            other one.
        has_cls_row (bool): the checkpoint has a class token.

    Returns:
        Tensor: (1, model extra + H*W, C) for ``model.pos_grid``: the class row dropped or
        added as zeros, the grid resized bicubically. A table that fits no grid is returned
        unchanged (the load report then shows its shape mismatch).
    """
    from ..models.layers import infer_grid, resize_pos_embed
    if pos.ndim != 3 or pos.shape == model.pos_embed.shape:
        return pos
    extra = None
    for guess in (int(has_cls_row), 1 - int(has_cls_row)):
        try:
            src_hw = infer_grid(pos.shape[1] - guess, model.pos_grid)
        except ValueError:
            continue
        extra = guess
        break
    if extra is None:
        return pos
    own_extra = model.num_extra_tokens
    if extra and not own_extra:
        pos = pos[:, 1:]
    elif own_extra and not extra:
        pos = _prepend_zero_row(pos)
    return resize_pos_embed(pos, src_hw, model.pos_grid, own_extra)


def _prepend_zero_row(pos):
    """(1, N, C) -> (1, 1 + N, C) with a zero class-token row first."""
    import torch
    return torch.cat([pos.new_zeros(1, 1, pos.shape[2]), pos], 1)


def fit_position_tables(model, tensors):
    """``pos_embed`` and every relative position table of ``tensors`` fitted to ``model``.

    * ``pos_embed``: :func:`fit_pos_embed`.
    * BEiT tables go bicubically to their module's grid (the three class-token rows kept);
      a table with BEiT's three class-token rows loaded into a module without class token
      loses them (the official ConvMAE SEG tables carry them unused).
    * ViTDet ``rel_pos_h``/``rel_pos_w`` go linearly to their module's length.

    Returns:
        dict: a new dict.
    """
    from ..models.layers import DecomposedRelPos, RelativePositionBias
    from ..models.layers.rel_pos import resize_rows
    tensors = dict(tensors)
    if 'pos_embed' in tensors and hasattr(model, 'pos_embed'):
        tensors['pos_embed'] = fit_pos_embed(model, tensors['pos_embed'],
                                             'cls_token' in tensors)
    for name, module in model.named_modules():
        prefix = f'{name}.' if name else ''
        if isinstance(module, RelativePositionBias):
            key = prefix + 'relative_position_bias_table'
            table = tensors.get(key)
            if table is None or table.shape[0] == module.relative_position_bias_table.shape[0]:
                continue
            if not module.num_extra_tokens:
                try:
                    src = module.table_grid(table.shape[0])
                except ValueError:
                    table, src = table[:-3], module.table_grid(table.shape[0] - 3)
            else:
                src = module.table_grid(table.shape[0])
            tensors[key] = module.resize_table(table, src, module.grid_hw)
        elif isinstance(module, DecomposedRelPos):
            for attr in ('rel_pos_h', 'rel_pos_w'):
                if prefix + attr in tensors:
                    tensors[prefix + attr] = resize_rows(tensors[prefix + attr],
                                                         getattr(module, attr).shape[0])
    return tensors


def _finish(tensors, model, others):
    """The steps every source ends with, given a model: a PlainViT with
    ``rescale_to_pyramid`` takes from ``others`` the pyramid it builds itself, mmseg's
    ``Feature2Pyramid`` neck (``models/necks/featurepyramid.py``: ``upsample_4x`` = deconv,
    norm, GELU, deconv; ``upsample_2x`` = deconv), which the MAE UperNet keeps under
    ``neck.`` whatever the backbone's names; then the position tables are fitted
    (:func:`fit_position_tables`)."""
    if model is None:
        return tensors
    if hasattr(model, 'fpn1') and others:
        claimed = {k: v for k, v in others.items() if k.startswith('neck.upsample_')}
        tensors = {**tensors, **rename(claimed, _FEATURE2PYRAMID)}
    return fit_position_tables(model, tensors)


# ----------------------------------------------------------------------------------------
# the adaptation functions

# ViTDet's decomposed tables sit directly under ``attn``; ours under ``attn.rel_pos``
_DECOMPOSED = (r'\.attn\.rel_pos_([hw])$', r'.attn.rel_pos.rel_pos_\1')
_VITDET_MARKER = r'\.attn\.rel_pos_[hw]$'
# BEiT's per-block tables directly under ``attn`` and its layer scale ``gamma_1``/``gamma_2``
_BEIT = ((r'\.attn\.relative_position_bias_table$', '.attn.rel_pos.relative_position_bias_table'),
         (r'\.gamma_([12])$', r'.ls\1.gamma'))


def adapt_own_names(tensors, model=None, others=None):
    """Layouts whose names are ours: Alpha-VL/ConvMAE's (``models_convmae.py``,
    ``models_convvit.py``, and ``DET/models/convmae.py`` under ``backbone.bottom_up.``, whose
    shared tables' index buffers are dropped), timm's and MAE's (``models_mae.py``,
    ``models_vit.py``), mixedconv's own."""
    return _finish(rename(tensors, ()), model, others)


def adapt_vitdet(tensors, model=None, others=None):
    """detectron2 ViTDet (``modeling/backbone/vit.py``) and OpenGVLab/Official-ConvMAE-Det,
    under ``backbone.net.``: decomposed ``attn.rel_pos_h``/``_w`` -> ours under
    ``attn.rel_pos``; ViTDet's ``pos_embed`` keeps the pretraining class row, dropped by
    :func:`fit_pos_embed` for a backbone without class token."""
    return _finish(rename(tensors, (_DECOMPOSED,)), model, others)


def adapt_convmae_seg(tensors, model=None, others=None):
    """Alpha-VL/ConvMAE ``SEG/`` (mmseg 0.x UperNet, ``SEG/backbone/convmae.py``): per-block
    BEiT tables directly under ``attn``, BEiT layer scale ``gamma_1``/``gamma_2``, and the
    /32 level ``fpn.0`` (conv) / ``fpn.1`` (norm) -> ``level4_conv``'s conv and norm."""
    level4 = getattr(model, 'level4_conv', None) if model is not None else None
    norm = getattr(level4, 'norm_name', None) or 'bn'
    return _finish(rename(tensors, _BEIT + (
        (r'^fpn\.0\.', 'level4_conv.conv.'),
        (r'^fpn\.1\.', f'level4_conv.{norm}.'),
    )), model, others)


# mmpretrain VisionTransformer / MAEViT and mmseg MAE names -> timm names
_MMPRETRAIN = (
    (r'^patch_embed\.projection\.', 'patch_embed.proj.'),
    (r'^layers\.(\d+)\.ln1\.', r'blocks.\1.norm1.'),
    (r'^layers\.(\d+)\.ln2\.', r'blocks.\1.norm2.'),
    (r'^layers\.(\d+)\.attn\.gamma1\.weight$', r'blocks.\1.ls1.gamma'),
    (r'^layers\.(\d+)\.ffn\.gamma2\.weight$', r'blocks.\1.ls2.gamma'),
    (r'^layers\.(\d+)\.gamma_([12])$', r'blocks.\1.ls\2.gamma'),
    (r'^layers\.(\d+)\.attn\.relative_position_bias_table$',
     r'blocks.\1.attn.rel_pos.relative_position_bias_table'),
    (r'^layers\.(\d+)\.attn\.', r'blocks.\1.attn.'),
    (r'^layers\.(\d+)\.ffn\.layers\.0\.0\.', r'blocks.\1.mlp.fc1.'),
    (r'^layers\.(\d+)\.ffn\.layers\.1\.', r'blocks.\1.mlp.fc2.'),
    (r'^ln1\.', 'norm.'),
    (r'^ln2\.', 'fc_norm.'),
)
# mmseg's Feature2Pyramid neck (``models/necks/featurepyramid.py``: ``upsample_4x`` =
# deconv, norm, GELU, deconv; ``upsample_2x`` = deconv) -> PlainViT's folded pyramid
_FEATURE2PYRAMID = (
    (r'^neck\.upsample_4x\.', 'fpn1.'),
    (r'^neck\.upsample_2x\.0\.', 'fpn2.'),
)


def adapt_beit(tensors, model=None, others=None):
    """timm names with BEiT's per-block tables and layer scale (timm ``beit.py``, and the
    backbones of BEiT-style transfer code)."""
    return _finish(rename(tensors, _BEIT), model, others)


def adapt_mmpretrain(tensors, model=None, others=None):
    """mmpretrain ``VisionTransformer`` / ``MAEViT`` (``layers.N.ln1``, ``ffn.layers``,
    ``patch_embed.projection``, ``ln1`` as the final norm)."""
    return _finish(rename(tensors, _MMPRETRAIN), model, others)


def adapt_mmseg_mae(tensors, model=None, others=None):
    """mmseg's ``MAE`` backbone (mmseg 0.x and 1.x ``models/backbones/mae.py``): mmpretrain
    names, BEiT ``gamma_1``/``gamma_2`` and per-block tables."""
    return _finish(rename(tensors, _MMPRETRAIN), model, others)


# ----------------------------------------------------------------------------------------
# the table


@dataclass(frozen=True)
class Source:
    """One producer's layout of a backbone family's tensors.

    Attributes:
        name: short name (reports).
        family: backbone family (:data:`mixedconv.families.FAMILIES`).
        producer: who writes it, for reports.
        adapt: the adaptation function.
        prefixes: where only this producer's files keep the encoder.
        marker: a pattern some encoder key (prefix removed) matches only in this layout.
    """
    name: str
    family: str
    producer: str
    adapt: Callable
    prefixes: Tuple[str, ...] = ()
    marker: Optional[str] = None

    def matches(self, tensors, prefix):
        """Whether encoder ``tensors`` found under ``prefix`` are in this layout."""
        if prefix in self.prefixes:
            return True
        return self.marker is not None and any(re.search(self.marker, k) for k in tensors)


# most specific first; each family's last entry is its default, taken when none matches
SOURCES = (
    Source('convmae_det', 'ConvViT', 'Alpha-VL/ConvMAE DET (detectron2 FPN Mask R-CNN)',
           adapt_own_names, prefixes=('backbone.bottom_up.',)),
    Source('convmae_vitdet', 'ConvViT', 'OpenGVLab/Official-ConvMAE-Det (detectron2 ViTDet)',
           adapt_vitdet, prefixes=('backbone.net.',), marker=_VITDET_MARKER),
    Source('convmae_seg', 'ConvViT', 'Alpha-VL/ConvMAE SEG (mmseg 0.x UperNet)',
           adapt_convmae_seg,
           marker=r'\.gamma_[12]$|^blocks3\.\d+\.attn\.relative_position_bias_table$|'
                  r'^fpn\.[01]\.'),
    Source('convmae', 'ConvViT', 'ConvMAE / mixedconv names', adapt_own_names),
    Source('vitdet', 'PlainViT', 'detectron2 ViTDet', adapt_vitdet,
           prefixes=('backbone.net.',), marker=_VITDET_MARKER),
    Source('mmseg_mae', 'PlainViT', 'mmseg MAE (mmseg 0.x / 1.x)', adapt_mmseg_mae,
           marker=r'^layers\.\d+\.(gamma_[12]$|attn\.relative_position_bias_table$)'),
    Source('mmpretrain', 'PlainViT', 'mmpretrain VisionTransformer / MAEViT',
           adapt_mmpretrain, marker=r'^(layers\.\d+\.|patch_embed\.projection\.)'),
    Source('beit', 'PlainViT', 'timm BEiT-style names', adapt_beit,
           marker=r'^blocks\.\d+\.(gamma_[12]$|attn\.relative_position_bias_table$)'),
    Source('timm', 'PlainViT', 'timm / MAE / mixedconv names', adapt_own_names),
)


def source_for(family, tensors, prefix):
    """The :class:`Source` of a family's encoder ``tensors`` found under ``prefix``."""
    candidates = [s for s in SOURCES if s.family == family]
    if not candidates:
        raise CheckpointError(f'no source layouts are known for the backbone family {family!r}')
    return next((s for s in candidates if s.matches(tensors, prefix)), candidates[-1])


def source_named(name):
    """The :class:`Source` called ``name``; CheckpointError naming the valid ones."""
    for source in SOURCES:
        if source.name == name:
            return source
    raise CheckpointError(f'unknown source layout {name!r}; known: '
                          f'{", ".join(s.name for s in SOURCES)}')
