"""A plain ViT (Dosovitskiy et al. 2021) with timm parameter names, for transferring MixedAE,
MAE and timm-style ViT checkpoints to classification, segmentation and detection."""
import re

import torch
import torch.nn as nn
from mmengine.model.weight_init import trunc_normal_
from mmengine.utils import to_2tuple

from ...families import PLAINVIT
from ...registry import MODELS
from ..layers import (REL_POS_TYPES, Attention, Block, HomologousAttention,
                      RelativePositionBias, build_rel_pos, check_cp_mode,
                      init_transformer_, resize_pos_embed, run_blocks, sincos_pos_embed_2d)
from ..layers.norm import build_norm_2d
from .base import PretrainedBackbone

ATTN_LAYERS = {'Attention': Attention, 'HomologousAttention': HomologousAttention}


class PatchEmbed(nn.Module):
    """Non-overlapping p x p patches -> D channels (``patch_embed.proj`` in timm)."""

    def __init__(self, patch_size, in_channels, embed_dim):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, embed_dim, patch_size, stride=patch_size)

    def forward(self, x):
        """(B, C, H, W) -> (B, D, H/p, W/p)."""
        return self.proj(x)


@MODELS.register_module()
class PlainViT(PretrainedBackbone):
    """Plain Vision Transformer with timm parameter names (``patch_embed.proj``,
    ``cls_token``, ``pos_embed``, ``blocks.i.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}``,
    ``norm``), so timm, MAE and MixedAE encoder checkpoints load without conversion and
    mmpretrain ``VisionTransformer``/``MAEViT`` checkpoints load after renaming
    (:mod:`mixedconv.checkpoint.sources`).

    Any input whose sides are multiples of the patch size is accepted; the learned position
    embedding (built for ``img_size``) is resized bicubically to the input's grid.

    Dense prediction: ``out_type='featmap'`` returns the patch tokens after the blocks in
    ``out_indices`` as NCHW maps at stride p; ``rescale_to_pyramid=True`` turns the four maps
    into strides p/4, p/2, p, 2p (MAE/BEiT segmentation: two 2x deconvs with norm + GELU
    between, one 2x deconv, identity, 2x max-pool; modules ``fpn1..fpn4``). For ViTDet, take
    the last block only and add :class:`SimpleFeaturePyramid`.

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
        rescale_to_pyramid (bool): see above; needs 'featmap' and four out indices.
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
        frozen_stages (int): -1 freezes nothing; k >= 0 freezes the embeddings and the
            first k blocks (no gradient, eval mode).
        with_cp (bool | str): activation checkpointing of the blocks: ``False``, ``True`` or
            ``'elementwise'`` (:func:`~mixedconv.models.layers.run_blocks`).
        init_cfg (dict | None): ``dict(type='Pretrained', checkpoint=...)`` to load weights.
    """

    family = PLAINVIT.name
    arch_zoo = PLAINVIT.arch_zoo
    arch_aliases = PLAINVIT.arch_aliases
    OUT_TYPES = ('featmap', 'cls_token', 'avg_featmap')

    def __init__(self, arch='base', img_size=224, patch_size=16, in_channels=3,
                 out_indices=None, out_type='featmap', final_norm=True,
                 rescale_to_pyramid=False, pyramid_norm_cfg=dict(type='BN'), qkv_bias=True,
                 mlp_ratio=None, drop_path_rate=0., layer_scale_init=None, window_size=0,
                 global_blocks=(), rel_pos_type=None, use_rel_pos=False, with_cls_token=None,
                 pretrain_img_size=None, norm_eps=1e-6, fixed_pos_embed=False,
                 attn_layer='Attention', frozen_stages=-1, with_cp=False, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        settings = PLAINVIT.settings(arch)
        self.embed_dim = settings['embed_dim']
        self.depth = settings['depth']
        self.patch_size = patch_size
        self.grid_hw = self.check_input_size(*to_2tuple(img_size))
        self.pos_grid = self.grid_hw if pretrain_img_size is None else \
            self.check_input_size(*to_2tuple(pretrain_img_size))
        if use_rel_pos and rel_pos_type is None:
            rel_pos_type = 'bias'
        if rel_pos_type not in REL_POS_TYPES:
            raise ValueError(f'rel_pos_type must be one of {REL_POS_TYPES}, got '
                             f'{rel_pos_type!r}')
        if out_type not in self.OUT_TYPES:
            raise ValueError(f'out_type must be one of {self.OUT_TYPES}, got {out_type!r}')
        self.out_type = out_type
        self.out_indices = self._resolve_out_indices(out_indices, settings)
        self.final_norm = final_norm
        check_cp_mode(with_cp)
        self.with_cp = with_cp
        self.frozen_stages = frozen_stages
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

        d = self.embed_dim
        self.patch_embed = PatchEmbed(patch_size, in_channels, d)
        if self.with_cls_token:
            self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        num_pos = self.num_extra_tokens + self.pos_grid[0] * self.pos_grid[1]
        self.pos_embed = nn.Parameter(torch.zeros(1, num_pos, d), requires_grad=not fixed_pos_embed)
        dpr = torch.linspace(0, drop_path_rate, self.depth).tolist()
        global_blocks = {i % self.depth for i in global_blocks}
        heads = settings['num_heads']
        window_grid = (window_size, window_size)
        if rel_pos_type == 'shared':
            if window_size:
                self.windowed_rel_pos_bias = RelativePositionBias(heads, window_grid)
            self.global_rel_pos_bias = RelativePositionBias(heads, self.grid_hw)
        self.blocks = nn.ModuleList()
        for i in range(self.depth):
            windowed = bool(window_size) and i not in global_blocks
            shared = getattr(self, 'windowed_rel_pos_bias' if windowed else
                             'global_rel_pos_bias', None)
            rel_pos = build_rel_pos(rel_pos_type, heads, d // heads,
                                    window_grid if windowed else self.grid_hw,
                                    self.num_extra_tokens, shared=shared)
            self.blocks.append(Block(
                d, heads, mlp_ratio or settings.get('mlp_ratio', 4.),
                qkv_bias=qkv_bias, drop_path=dpr[i], layer_scale_init=layer_scale_init,
                window_size=window_size if windowed else 0, rel_pos=rel_pos,
                attn_layer=ATTN_LAYERS[attn_layer], norm_eps=norm_eps))
        if final_norm:
            self.norm = nn.LayerNorm(d, eps=norm_eps)
        if out_type == 'avg_featmap':
            self.fc_norm = nn.LayerNorm(d, eps=norm_eps)
        self.rescale_to_pyramid = rescale_to_pyramid
        if rescale_to_pyramid:
            if out_type != 'featmap' or len(self.out_indices) != 4:
                raise ValueError("rescale_to_pyramid needs out_type='featmap' and exactly 4 "
                                 f'out_indices, got {out_type!r} and {self.out_indices}')
            self._build_pyramid(d, pyramid_norm_cfg)
        self._init_random_weights(fixed_pos_embed)
        self._freeze_stages()

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

    def _build_pyramid(self, d, norm_cfg):
        self.fpn1 = nn.Sequential(nn.ConvTranspose2d(d, d, 2, stride=2), build_norm_2d(norm_cfg, d),
                                  nn.GELU(), nn.ConvTranspose2d(d, d, 2, stride=2))
        self.fpn2 = nn.ConvTranspose2d(d, d, 2, stride=2)
        self.fpn3 = nn.Identity()
        self.fpn4 = nn.MaxPool2d(2, stride=2)

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

    def _freeze_stages(self):
        if self.frozen_stages < 0:
            return
        frozen = [self.patch_embed, *self.blocks[:self.frozen_stages]]
        for module in frozen:
            module.eval()
            for param in module.parameters():
                param.requires_grad = False
        for name in ('cls_token', 'pos_embed'):
            if hasattr(self, name):
                getattr(self, name).requires_grad = False

    def train(self, mode=True):
        super().train(mode)
        self._freeze_stages()
        return self

    # ------------------------------------------------------------------ forward pieces
    def check_input_size(self, h, w):
        """Token grid of an h x w input; raises when a side is not a multiple of p."""
        p = self.patch_size
        if h % p or w % p:
            raise ValueError(f'input size {h}x{w} is not a multiple of the patch size {p}; '
                             f'resize or pad the image to multiples of {p}')
        return h // p, w // p

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
        grid_hw = self.check_input_size(*x.shape[-2:])
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
            x (Tensor): (B, C, H, W), sides multiples of the patch size.

        Returns:
            tuple[Tensor]: one output per out index: (B, D, H/p, W/p) maps (strides p/4, p/2,
            p, 2p with ``rescale_to_pyramid``), or (B, D) vectors.
        """
        tokens, grid_hw, cls_pos = self.embed_patches(x)
        outs = []
        for i, x in self.iter_blocks(self.prepend_cls_token(tokens, cls_pos), grid_hw):
            if i in self.out_indices:
                out = self.norm(x) if (i == self.depth - 1 and self.final_norm) else x
                outs.append(self.format_output(out, grid_hw))
        if self.rescale_to_pyramid:
            outs = [fpn(o) for fpn, o in zip((self.fpn1, self.fpn2, self.fpn3, self.fpn4), outs)]
        # contiguous NCHW, as every mm backbone returns (the token grid is a transposed view;
        # mmcv kernels such as RoIAlign read the raw buffer)
        return tuple(o.contiguous() for o in outs)

    # ------------------------------------------------------------------ transfer
    def get_layer_depth(self, param_name, prefix=''):
        """Layer id for layer-wise lr decay (mmpretrain convention).

        Embeddings (patch, class token, position) are layer 0, block i is layer i + 1, and
        everything after the blocks (norms, pyramid) is the last layer.

        Returns:
            tuple[int, int]: (layer_id, num_layers) with num_layers = depth + 2.
        """
        num_layers = self.depth + 2
        if not param_name.startswith(prefix):
            return num_layers - 1, num_layers
        name = param_name[len(prefix):]
        if name.startswith(('patch_embed', 'cls_token', 'pos_embed', 'windowed_rel_pos_bias.',
                            'global_rel_pos_bias.')):
            return 0, num_layers
        match = re.match(r'blocks\.(\d+)\.', name)
        if match:
            return int(match.group(1)) + 1, num_layers
        return num_layers - 1, num_layers
