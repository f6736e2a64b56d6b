"""A plain ViT (Dosovitskiy et al. 2021) with timm parameter names, for transferring MixedAE,
MAE and timm-style ViT checkpoints to classification, segmentation and detection."""

import torch
import torch.nn as nn
from mmengine.model.weight_init import trunc_normal_
from mmengine.utils import to_2tuple

from ...families import PLAINVIT
from ...registry import MODELS
from ..layers import (Attention, HomologousAttention, check_cp_mode, init_transformer_,
                      resize_pos_embed, run_blocks, sincos_pos_embed_2d)
from ..layers.norm import build_norm_2d
from .transfer_backbone import TransferBackbone
from .transformer_stage import SHARED_TABLES, build_transformer_stage, resolve_rel_pos_type

ATTN_LAYERS = {'Attention': Attention, 'HomologousAttention': HomologousAttention}
# the folded pyramid: rescale of a stride-p map -> its branch (modules fpn1..fpn4, the names of
# the BEiT/MAE segmentation backbones)
PYRAMID_BRANCHES = {4: 'fpn1', 2: 'fpn2', 1: 'fpn3', 0.5: 'fpn4'}
# rescales by number of outputs when pyramid_rescales is not given: strides p/4..2p, p/2..2p
DEFAULT_RESCALES = {4: (4, 2, 1, 0.5), 3: (2, 1, 0.5)}


class PatchEmbed(nn.Module):
    """Non-overlapping p x p patches -> D channels (``patch_embed.proj`` in timm)."""

    def __init__(self, patch_size, in_channels, embed_dim):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, embed_dim, patch_size, stride=patch_size)

    def forward(self, x):
        """(B, C, H, W) -> (B, D, H/p, W/p)."""
        return self.proj(x)


@MODELS.register_module()
class PlainViT(TransferBackbone):
    """Plain Vision Transformer with timm parameter names (``patch_embed.proj``,
    ``cls_token``, ``pos_embed``, ``blocks.i.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}``,
    ``norm``), so timm, MAE and MixedAE encoder checkpoints load without conversion and
    mmpretrain ``VisionTransformer``/``MAEViT`` checkpoints load after renaming
    (:mod:`mixedconv.checkpoint.sources`).

    The learned position embedding (built for ``img_size``) is resized bicubically to the
    input's grid. Dense outputs take any input size (padded to multiples of the patch size,
    ``patch_pad``); the other outputs need multiples of it.

    Dense prediction: ``out_type='featmap'`` returns the patch tokens after the blocks in
    ``out_indices`` as NCHW maps at stride p; ``rescale_to_pyramid=True`` resamples each map by
    its entry of ``pyramid_rescales`` (MAE/BEiT segmentation, mmseg ``Feature2Pyramid``: 4 = two
    2x deconvs with norm + GELU between (``fpn1``), 2 = one 2x deconv (``fpn2``), 1 = identity
    (``fpn3``), 0.5 = 2x max-pool (``fpn4``)). Only the branches asked for are built, so no
    parameter waits for a level nobody reads. For ViTDet, take the last block only and add
    :class:`SimpleFeaturePyramid`.

    Window attention (ViTDet): blocks not in ``global_blocks`` attend inside non-overlapping
    ``window_size`` windows. Windows and ViTDet's decomposed relative position need a
    sequence that is exactly the token grid, so with either of them the class token is
    **dropped** (as in ViTDet): ``cls_token`` does not exist and the position embedding of the
    class token in a checkpoint is discarded. A BEiT bias table works either way: with the
    class token kept (mmseg's ``MAE`` backbone) it has BEiT's three class-token rows.
    Relative position tables are zero-initialised.

    Args:
        arch (str | dict): 'tiny', 'small', 'base', 'large', 'huge' (or 't', 's', 'b', 'l',
            'h', as mmpretrain), or a dict with ``embed_dim``, ``depth``, ``num_heads`` and
            optionally ``mlp_ratio``.
        img_size (int | tuple[int, int]): size the position embedding grid is built for.
        patch_size (int): patch side p.
        in_channels (int): image channels.
        out_indices (Sequence[int] | int | None): blocks (0-based, negative counts from the
            end) whose outputs are returned. None: the arch's four quarter points for
            ``'featmap'`` ((3, 5, 7, 11) for ViT-B, i.e. after blocks 4, 6, 8, 12), the last
            block otherwise.
        out_type (str): 'featmap' (NCHW maps), 'cls_token' (B, D) or 'avg_featmap' (mean of
            the patch tokens through ``fc_norm``, MAE fine-tuning), per out index.
        final_norm (bool): apply ``norm`` to the output of the last block. The official dense
            recipes (detectron2 ViTDet, mmseg MAE) have none: False there.
        rescale_to_pyramid (bool): see above; needs 'featmap'.
        pyramid_rescales (Sequence[float] | None): one rescale per out index, from 4, 2, 1,
            0.5, finest first. None: (4, 2, 1, 0.5) for four out indices (strides p/4, p/2, p,
            2p), (2, 1, 0.5) for three (p/2, p, 2p: the 8/16/32 pyramid of RetinaNet, FCOS and
            the DETR family).
        pyramid_norm_cfg (dict): norm inside ``fpn1`` (``BN``; ``SyncBN`` for multi-GPU).
        qkv_bias (bool): bias in the qkv projections.
        mlp_ratio (float | None): overrides the arch's MLP ratio.
        drop_path_rate (float): stochastic depth, increasing linearly over the blocks.
        layer_scale_init (float | None): LayerScale initial value; None disables it.
        window_size (int): window side for ViTDet window attention; 0 disables it.
        global_blocks (Sequence[int]): blocks that keep global attention when windowed.
        rel_pos_type (str | None): relative position term of every block
            (:mod:`~mixedconv.models.layers.rel_pos`): ``'bias'`` (BEiT table per block, mmseg
            MAE), ``'decomposed'`` (ViTDet ``rel_pos_h``/``rel_pos_w``), ``'shared'`` (one
            table per attention kind) or None.
        use_rel_pos (bool): ``True`` is ``rel_pos_type='bias'`` (kept for older configs).
        with_cls_token (bool | None): keep the class token. None: keep it unless windows or
            a relative position term are used (ViTDet); True with ``'bias'`` is mmseg's MAE.
        pretrain_img_size (int | tuple | None): keep ``pos_embed`` at this size's grid and
            interpolate it bicubically at every forward (detectron2 ``get_abs_pos``); None
            builds it for ``img_size`` and resizes a checkpoint's table once on load.
        norm_eps (float): epsilon of every LayerNorm.
        fixed_pos_embed (bool): a frozen 2-D sin-cos position embedding (MAE pretraining)
            instead of a learned one.
        attn_layer (str): 'Attention' or 'HomologousAttention' (same parameters; used by
            MixedAE pretraining).
        frozen_stages (int): -1 freezes nothing; k >= 0 freezes the embeddings (patch
            embedding, class token, position embedding) and the first k blocks (no gradient,
            eval mode); k = depth also the final norms and the shared relative position
            tables, as mmpretrain's ViT freezes ``ln1``/``ln2``.
        with_cp (bool | str): activation checkpointing of the blocks: ``False``, ``True`` or
            ``'elementwise'`` (:func:`~mixedconv.models.layers.run_blocks`).
        patch_pad (str | None): ``'corner'`` (default): dense inputs whose sides are not
            multiples of p are zero-padded at the bottom/right and every output is cropped to
            ``ceil(H / stride)`` (see :class:`~.transfer_backbone.TransferBackbone`); None
            raises for them.
        norm_eval (bool): keep BatchNorms (the pyramid's) in eval mode while training.
        pretrained (str | None): checkpoint path, the older spelling of ``init_cfg`` (mmseg
            passes ``model.pretrained`` here).
        init_cfg (dict | None): ``dict(type='Pretrained', checkpoint=...)`` to load weights.

    Attributes:
        out_channels (list[int]): channels of each output, in order
            (:meth:`mixedconv.families.Family.out_channels`).
    """

    family = PLAINVIT.name
    arch_zoo = PLAINVIT.arch_zoo
    arch_aliases = PLAINVIT.arch_aliases
    OUT_TYPES = ('featmap', 'cls_token', 'avg_featmap')
    LAYER0 = ('patch_embed', 'cls_token', 'pos_embed', *(f'{name}.' for name in SHARED_TABLES))

    def __init__(self, arch='base', img_size=224, patch_size=16, in_channels=3,
                 out_indices=None, out_type='featmap', final_norm=True,
                 rescale_to_pyramid=False, pyramid_rescales=None,
                 pyramid_norm_cfg=dict(type='BN'), qkv_bias=True,
                 mlp_ratio=None, drop_path_rate=0., layer_scale_init=None, window_size=0,
                 global_blocks=(), rel_pos_type=None, use_rel_pos=False, with_cls_token=None,
                 pretrain_img_size=None, norm_eps=1e-6, fixed_pos_embed=False,
                 attn_layer='Attention', frozen_stages=-1, with_cp=False, patch_pad='corner',
                 norm_eval=False, pretrained=None, init_cfg=None, **kwargs):
        super().__init__(init_cfg=init_cfg, pretrained=pretrained, frozen_stages=frozen_stages,
                         norm_eval=norm_eval, patch_pad=patch_pad,
                         dense=out_type == 'featmap', options=kwargs)
        settings = PLAINVIT.settings(arch)
        self.embed_dim = settings['embed_dim']
        self.depth = settings['depth']
        self.patch_size = self.patch_stride = patch_size
        self.grid_hw = self.grid_of(to_2tuple(img_size))
        self.pos_grid = self.grid_hw if pretrain_img_size is None else \
            self.grid_of(to_2tuple(pretrain_img_size))
        rel_pos_type = resolve_rel_pos_type(rel_pos_type, use_rel_pos)
        if out_type not in self.OUT_TYPES:
            raise ValueError(f'out_type must be one of {self.OUT_TYPES}, got {out_type!r}')
        self.out_type = out_type
        self.out_indices = self._resolve_out_indices(out_indices, settings)
        self.final_norm = final_norm
        check_cp_mode(with_cp)
        self.with_cp = with_cp
        if attn_layer not in ATTN_LAYERS:
            raise ValueError(f'attn_layer must be one of {sorted(ATTN_LAYERS)}, got {attn_layer!r}')

        # ViTDet drops the class token: windows and decomposed terms need a pure token grid
        if with_cls_token is None:
            with_cls_token = not (window_size or rel_pos_type)
        if with_cls_token and (window_size or rel_pos_type in ('decomposed', 'shared')):
            raise ValueError('window attention and decomposed/shared relative position need '
                             'a sequence without class token: set with_cls_token=False')
        self.with_cls_token = bool(with_cls_token)
        if out_type == 'cls_token' and not self.with_cls_token:
            raise ValueError("out_type='cls_token' needs the class token, which window "
                             'attention and relative position terms drop; use avg_featmap')
        self.num_extra_tokens = int(self.with_cls_token)
        self.rel_pos_type = rel_pos_type
        self.rescale_to_pyramid = rescale_to_pyramid
        self.pyramid_rescales = self._resolve_rescales(pyramid_rescales) \
            if rescale_to_pyramid else (1,) * len(self.out_indices)
        self.out_channels = PLAINVIT.out_channels(settings, self.out_indices)
        self.out_strides = tuple(patch_size / r for r in self.pyramid_rescales)

        d = self.embed_dim
        self.patch_embed = PatchEmbed(patch_size, in_channels, d)
        if self.with_cls_token:
            self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        num_pos = self.num_extra_tokens + self.pos_grid[0] * self.pos_grid[1]
        self.pos_embed = nn.Parameter(torch.zeros(1, num_pos, d), requires_grad=not fixed_pos_embed)
        self.blocks = build_transformer_stage(
            self, self.depth, d, settings['num_heads'], mlp_ratio or settings.get('mlp_ratio', 4.),
            self.grid_hw, torch.linspace(0, drop_path_rate, self.depth, device='cpu').tolist(),
            window_size=window_size, global_blocks=global_blocks, rel_pos_type=rel_pos_type,
            num_extra_tokens=self.num_extra_tokens, attn_layer=ATTN_LAYERS[attn_layer],
            qkv_bias=qkv_bias, layer_scale_init=layer_scale_init, norm_eps=norm_eps)
        if final_norm:
            self.norm = nn.LayerNorm(d, eps=norm_eps)
        if out_type == 'avg_featmap':
            self.fc_norm = nn.LayerNorm(d, eps=norm_eps)
        if rescale_to_pyramid:
            self._build_pyramid(d, pyramid_norm_cfg)
        self._init_random_weights(fixed_pos_embed)
        self.freeze_stages()

    # ------------------------------------------------------------------ construction
    def _resolve_out_indices(self, out_indices, settings):
        if out_indices is None:
            out_indices = (settings.get('out_indices', (self.depth - 1,))
                           if self.out_type == 'featmap' else (self.depth - 1,))
        if isinstance(out_indices, int):
            out_indices = (out_indices,)
        resolved = tuple(i % self.depth if -self.depth <= i < self.depth else None
                         for i in out_indices)
        if None in resolved:
            raise ValueError(f'out_indices {tuple(out_indices)} out of range for depth '
                             f'{self.depth}')
        return resolved

    def _resolve_rescales(self, rescales):
        """``pyramid_rescales`` checked, or its default for the number of out indices."""
        count = len(self.out_indices)
        if self.out_type != 'featmap':
            raise ValueError(f"rescale_to_pyramid needs out_type='featmap', got "
                             f'{self.out_type!r}')
        if rescales is None:
            if count not in DEFAULT_RESCALES:
                raise ValueError(
                    'rescale_to_pyramid needs exactly 4 out_indices (strides p/4, p/2, p, 2p) '
                    'or 3 (p/2, p, 2p), or pyramid_rescales with one rescale per out index; got '
                    f'out_indices {self.out_indices}')
            return DEFAULT_RESCALES[count]
        rescales = tuple(rescales)
        if len(rescales) != count or not set(rescales) <= set(PYRAMID_BRANCHES) \
                or list(rescales) != sorted(set(rescales), reverse=True):
            raise ValueError(f'pyramid_rescales must give one rescale per out index '
                             f'({count}), distinct values of {tuple(PYRAMID_BRANCHES)} from '
                             f'the finest, got {rescales}')
        return rescales

    def _build_pyramid(self, d, norm_cfg):
        """The branches of :attr:`pyramid_rescales`, in the order fpn1..fpn4."""
        branches = dict(
            fpn1=lambda: nn.Sequential(nn.ConvTranspose2d(d, d, 2, stride=2),
                                       build_norm_2d(norm_cfg, d), nn.GELU(),
                                       nn.ConvTranspose2d(d, d, 2, stride=2)),
            fpn2=lambda: nn.ConvTranspose2d(d, d, 2, stride=2),
            fpn3=nn.Identity,
            fpn4=lambda: nn.MaxPool2d(2, stride=2))
        for rescale in self.pyramid_rescales:
            name = PYRAMID_BRANCHES[rescale]
            setattr(self, name, branches[name]())

    def _init_random_weights(self, fixed_pos_embed):
        """MAE initialisation: xavier Linear layers and patch projection, N(0, .02) tokens."""
        init_transformer_(self)
        w = self.patch_embed.proj.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        if self.with_cls_token:
            nn.init.normal_(self.cls_token, std=.02)
        if fixed_pos_embed:
            self.pos_embed.data.copy_(sincos_pos_embed_2d(self.embed_dim, self.pos_grid,
                                                          cls_token=self.with_cls_token))
        else:
            trunc_normal_(self.pos_embed, std=.02)

    def stage_parts(self):
        """Stem: patch embedding, class token, position embedding; stage i: block i - 1."""
        stem = [self.patch_embed, getattr(self, 'cls_token', None), self.pos_embed]
        return [stem, *([blk] for blk in self.blocks)]

    def last_stage_parts(self):
        """``norm``, ``fc_norm`` and the shared relative position tables."""
        return [getattr(self, name, None) for name in ('norm', 'fc_norm', *SHARED_TABLES)]

    # ------------------------------------------------------------------ forward pieces
    def pos_embed_for(self, grid_hw):
        """The position embedding resized to ``grid_hw``: (1, extra + H*W, D)."""
        return resize_pos_embed(self.pos_embed, self.pos_grid, grid_hw, self.num_extra_tokens)

    def embed_patches(self, x):
        """Patch tokens with their position embedding.

        Args:
            x (Tensor): (B, C, H, W), H and W multiples of the patch size.

        Returns:
            tuple: tokens (B, N, D) in row-major grid order, the grid (H/p, W/p), and the
            class-token row of the position embedding ((1, 1, D), or None without class token).
        """
        grid_hw = self.grid_of(x.shape[-2:])
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2)
        pos = self.pos_embed_for(grid_hw)
        e = self.num_extra_tokens
        return tokens + pos[:, e:], grid_hw, (pos[:, :e] if e else None)

    def prepend_cls_token(self, tokens, cls_pos):
        """(B, N, D) -> (B, 1 + N, D) with the class token (unchanged without class token)."""
        if not self.with_cls_token:
            return tokens
        cls = (self.cls_token + cls_pos).expand(tokens.shape[0], -1, -1)
        return torch.cat([cls, tokens], dim=1)

    def iter_blocks(self, x, grid_hw, block_kwargs=None):
        """Run the blocks in order (with ``with_cp`` checkpointing), yielding each output.

        Args:
            x (Tensor): (B, extra + N, D) tokens, class token first.
            grid_hw (tuple[int, int]): patch grid of the N patch tokens.
            block_kwargs (dict[int, dict] | None): extra keyword arguments of block i's
                attention (MixedAE's homologous top-k and source ids).

        Yields:
            tuple[int, Tensor]: block index i and its output (B, extra + N, D).
        """
        block_kwargs = block_kwargs or {}
        for i, blk in enumerate(self.blocks):
            x = run_blocks([blk], x, self.with_cp, grid_hw=grid_hw, **block_kwargs.get(i, {}))
            yield i, x

    def format_output(self, x, grid_hw):
        """Turn a (B, extra + N, D) block output into the configured out type."""
        patches = x[:, self.num_extra_tokens:]
        if self.out_type == 'featmap':
            b, _, d = patches.shape
            return patches.transpose(1, 2).reshape(b, d, *grid_hw)
        if self.out_type == 'cls_token':
            return x[:, 0]
        return self.fc_norm(patches.mean(dim=1))

    def forward(self, x):
        """Run the ViT.

        Args:
            x (Tensor): (B, C, H, W); sides that are not multiples of the patch size are
                padded (``patch_pad``, dense outputs only).

        Returns:
            tuple[Tensor]: one output per out index: (B, D, H/p, W/p) maps (p / rescale with
            ``rescale_to_pyramid``; each side rounded up for padded inputs), or (B, D)
            vectors.
        """
        size = x.shape[-2:]
        tokens, grid_hw, cls_pos = self.embed_patches(self.pad_input(x))
        outs = []
        for i, x in self.iter_blocks(self.prepend_cls_token(tokens, cls_pos), grid_hw):
            if i in self.out_indices:
                out = self.norm(x) if (i == self.depth - 1 and self.final_norm) else x
                outs.append(self.format_output(out, grid_hw))
        if self.rescale_to_pyramid:
            outs = [getattr(self, PYRAMID_BRANCHES[r])(o)
                    for r, o in zip(self.pyramid_rescales, outs)]
        if self.out_type == 'featmap':
            outs = self.crop_outputs(outs, size)
        # contiguous NCHW, as every mm backbone returns (the token grid is a transposed view;
        # mmcv kernels such as RoIAlign read the raw buffer)
        outs = tuple(o.contiguous() for o in outs)
        self.check_outputs_read(outs, self._describe_output, self._READ_FIX)
        return outs

    _READ_FIX = ('out_indices lists the blocks whose maps the neck and heads read (with '
                 'rescale_to_pyramid, pyramid_rescales one rescale each: (2, 1, 0.5) for an '
                 '8/16/32 pyramid), and their in_channels are the backbone\'s out_channels; '
                 'with FPN start_level=1 drop the first level and set start_level=0, as '
                 'mmdet\'s Swin configs do')

    def _describe_output(self, position):
        text = f'output {position} (block {self.out_indices[position]}'
        if self.rescale_to_pyramid:
            rescale = self.pyramid_rescales[position]
            text += f', {PYRAMID_BRANCHES[rescale]}, stride {self.patch_size / rescale:g}'
        return text + ')'
