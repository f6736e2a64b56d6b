"""ConvViT, the hybrid convolution-transformer encoder of ConvMAE (Gao et al., NeurIPS 2022).

Stages 1-2 are convolution blocks at strides 4 and 8, stage 3 is a plain ViT at stride 16 on
the flattened stage-2 output. Parameter names follow the official checkpoints
(``patch_embed1..4``, ``blocks1..3``, ``pos_embed``, ``norm``; ``fc_norm`` in fine-tuning), so
released weights load without conversion.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmengine.utils import to_2tuple

from ...families import CONVVIT
from ...registry import MODELS
from ..layers import (CP_MODES, CBlock, channels_last_norm, check_cp_mode, init_transformer_,
                      map_to_blocks, resize_pos_embed, run_blocks, sincos_pos_embed_2d,
                      strided_conv_blocks)
from .transfer_backbone import TransferBackbone
from .transformer_stage import SHARED_TABLES, build_transformer_stage, resolve_rel_pos_type

STRIDE = 16
LEVEL_STRIDES = (4, 8, 16, 32)


class ConvPatchEmbed(nn.Module):
    """Downsampling ``proj`` (conv, kernel = stride) -> LayerNorm over channels -> GELU.

    Args:
        in_channels (int): input channels.
        embed_dim (int): output channels.
        stride (int): kernel size and stride.
    """

    def __init__(self, in_channels, embed_dim, stride):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, embed_dim, stride, stride=stride)
        self.norm = nn.LayerNorm(embed_dim)
        self.act = nn.GELU()

    def forward(self, x):
        """(B, C_in, H, W) -> (B, C, H/stride, W/stride)."""
        x = self.proj(x)
        return self.act(channels_last_norm(self.norm, x))

    def forward_blocks(self, x):
        """Visible blocks (B, L, r, r, C_in) -> (B, L, r/stride, r/stride, C)."""
        return self.act(self.norm(strided_conv_blocks(self.proj, x)))


@MODELS.register_module()
class ConvViT(TransferBackbone):
    """ConvViT backbone for classification, detection and segmentation.

    Usable from mmpretrain, mmdet and mmseg configs (``type='ConvViT'``). Any input size works
    for dense outputs (padded to multiples of 16, ``patch_pad``): the stage-3 position
    embedding, stored for ``img_size``, is resized bicubically for other grids.

    Args:
        arch (str | dict): ``'s'``, ``'b'``, ``'l'``, ``'h'`` (or ``'small'`` ... ``'huge'``,
            as mmpretrain; Gao et al. 2022, table 1) or a dict with
            ``embed_dims`` (3 widths), ``depths`` (3 block counts), ``num_heads`` (stage 3) and
            ``mlp_ratios`` (3).
        img_size (int | tuple[int, int]): size the stored position embedding is built for.
        in_channels (int): image channels.
        out_indices (Sequence[int]): levels to return, from 0 = stage 1 (stride 4),
            1 = stage 2 (/8), 2 = stage 3 (/16, after ``norm`` when ``final_norm``), 3 = a /32
            level made from stage 3 by ``out_level4``.
        out_type (str): ``'featmap'`` returns NCHW maps of ``out_indices``;
            ``'avg_featmap'`` returns ``(B, C)`` = ``fc_norm`` of the mean stage-3 token (the
            official fine-tuning head input; the model then has no ``norm``) and needs
            ``out_indices=(2,)``.
        out_level4 (str): ``'maxpool'`` (2x2 max-pool, ConvMAE ``DET/models/convmae.py``) or
            ``'conv'`` (a new 3x3 stride-2 :class:`~mmcv.cnn.ConvModule` ``level4_conv``,
            ConvMAE ``SEG/backbone/convmae.py``).
        level4_cfg (dict | None): ``padding``, ``norm_cfg``, ``act_cfg`` and ``bias`` of
            ``level4_conv``; default ``dict(padding=1)`` (no norm, no activation). The
            official segmentation recipe is ``dict(padding=0, norm_cfg=dict(type='SyncBN'),
            act_cfg=dict(type='GELU'))`` (15x15 at 512x512).
        final_norm (bool): apply ``norm`` to the stage-3 map. The official detection and
            segmentation backbones have no final norm (False); True keeps the pretrained
            ``norm``.
        window_size (int): window side for stage-3 attention (ViTDet); 0 = global everywhere.
        global_blocks (Sequence[int]): stage-3 blocks that keep global attention when
            ``window_size`` is set.
        rel_pos_type (str | None): relative position term of stage 3
            (:mod:`~mixedconv.models.layers.rel_pos`), zero-initialised:
            ``'bias'`` a BEiT table per block (window grid in windowed blocks, the
            ``img_size`` grid in global ones; SEG recipe), ``'shared'`` two tables shared by
            all blocks, ``windowed_rel_pos_bias`` and ``global_rel_pos_bias`` (DET FPN
            recipe), ``'decomposed'`` ViTDet's ``rel_pos_h``/``rel_pos_w`` per block
            (Official-ConvMAE-Det), or None.
        use_rel_pos (bool): ``True`` is ``rel_pos_type='bias'`` (kept for older configs).
        pretrain_img_size (int | tuple | None): keep ``pos_embed`` at this size's grid (the
            pretraining one, 224 -> 14x14) and interpolate it bicubically at every forward,
            as detectron2's ViT and the official ConvMAE DET/SEG backbones do. None builds
            it for ``img_size`` and resizes a checkpoint's table once on load.
        norm_eps (float): epsilon of the stage-3 LayerNorms (blocks and final norms).
        cblock_norm_eps (float): epsilon of the stage-1/2 block LayerNorms (1e-6 in
            Official-ConvMAE-Det, 1e-5 in Alpha-VL ConvMAE).
        layer_scale_init (float | None): LayerScale init value in stage 3; None disables it.
        drop_path_rate (float): stochastic depth, linear from 0 over all blocks of the 3 stages.
        learnable_pos_embed (bool): train the (sin-cos initialised) position embedding, as
            the official fine-tuning code, mm's ViTs and PlainViT do. The pretraining recipe
            and the official FPN detection backbone keep it fixed (False in their configs).
        with_cp (bool | str | None): activation checkpointing of every block (see
            :func:`~mixedconv.models.layers.run_blocks`): ``False``, ``True`` (recompute each
            block) or ``'elementwise'`` (keep matmul, attention and convolution outputs,
            recompute the element-wise work). ``None`` (default): ``False`` for every block
            except stages 1-2 of the skip-masked pretraining path, which take
            ``skip_path_cp``.
        skip_path_cp (bool | str): the mode of stages 1-2 of the skip-masked pretraining path
            (:meth:`forward_masked` with ``skip_masked=True``) while ``with_cp`` is None.
            Default ``'elementwise'``: there it saves memory for little step time (README,
            Speed and memory); ``False`` keeps every activation.
        frozen_stages (int): freeze (no gradient, eval mode) as mm backbones number it:
            -1 nothing, 0 the stem ``patch_embed1``, 1 also stage 1 (``blocks1``), 2 also
            stage 2 (``patch_embed2``, ``blocks2``), 3 everything (stage 3: ``patch_embed3``,
            ``patch_embed4``, ``pos_embed``, ``blocks3``, and the final norm and shared
            relative position tables; the linear-probe recipe).
        patch_pad (str | None): ``'corner'`` (default): dense inputs whose sides are not
            multiples of 16 are zero-padded at the bottom/right and every level is cropped to
            ``ceil(H / stride)`` (see :class:`~.transfer_backbone.TransferBackbone`); None
            raises for them. The classifier output and :meth:`forward_masked` always need
            multiples of 16.
        norm_eval (bool): keep BatchNorms (``level4_cfg``'s) in eval mode while training.
        pretrained (str | None): checkpoint path, the older spelling of ``init_cfg`` (mmseg
            passes ``model.pretrained`` here).
        init_cfg (dict | None): ``dict(type='Pretrained', checkpoint=...)`` loads through
            :func:`mixedconv.checkpoint.load_pretrained` (reports and rejects wrong
            checkpoints).

    Attributes:
        out_channels (list[int]): channels of each output, in order
            (:meth:`mixedconv.families.Family.out_channels`).
    """

    family = CONVVIT.name
    arch_zoo = CONVVIT.arch_zoo
    arch_aliases = CONVVIT.arch_aliases
    OUT_TYPES = ('featmap', 'avg_featmap')
    BLOCKS = 'blocks3'
    LAYER0 = ('patch_embed', 'blocks1.', 'blocks2.', 'pos_embed',
              *(f'{name}.' for name in SHARED_TABLES))
    patch_stride = STRIDE

    def __init__(self, arch='b', img_size=224, in_channels=3, out_indices=(2,),
                 out_type='featmap', out_level4='maxpool', level4_cfg=None, final_norm=True,
                 window_size=0, global_blocks=(), rel_pos_type=None, use_rel_pos=False,
                 pretrain_img_size=None, norm_eps=1e-6, cblock_norm_eps=1e-5,
                 layer_scale_init=None,
                 drop_path_rate=0., learnable_pos_embed=True, with_cp=None,
                 skip_path_cp='elementwise', frozen_stages=-1, patch_pad='corner',
                 norm_eval=False, pretrained=None, init_cfg=None, **kwargs):
        super().__init__(init_cfg=init_cfg, pretrained=pretrained, frozen_stages=frozen_stages,
                         norm_eval=norm_eval, patch_pad=patch_pad,
                         dense=out_type == 'featmap', options=kwargs)
        arch = CONVVIT.settings(arch)
        dims, depths = arch['embed_dims'], arch['depths']
        self.embed_dims = dims
        self.grid = self.grid_of(to_2tuple(img_size))
        self.pos_grid = self.grid if pretrain_img_size is None else \
            self.grid_of(to_2tuple(pretrain_img_size))
        self.out_indices = tuple(out_indices)
        self.out_type = out_type
        self.out_level4 = out_level4
        self.final_norm = final_norm
        self.rel_pos_type = resolve_rel_pos_type(rel_pos_type, use_rel_pos)
        check_cp_mode(with_cp, (None, *CP_MODES))
        check_cp_mode(skip_path_cp)
        self.with_cp = with_cp
        self.skip_path_cp = skip_path_cp
        self._check_outputs()
        self.out_channels = CONVVIT.out_channels(arch, self.out_indices)
        self.out_strides = tuple(LEVEL_STRIDES[i] for i in self.out_indices)

        dpr = torch.linspace(0, drop_path_rate, sum(depths), device='cpu').tolist()
        self.patch_embed1 = ConvPatchEmbed(in_channels, dims[0], 4)
        self.patch_embed2 = ConvPatchEmbed(dims[0], dims[1], 2)
        self.patch_embed3 = ConvPatchEmbed(dims[1], dims[2], 2)
        self.patch_embed4 = nn.Linear(dims[2], dims[2])
        self.pos_embed = nn.Parameter(sincos_pos_embed_2d(dims[2], self.pos_grid),
                                      requires_grad=learnable_pos_embed)
        self.blocks1 = nn.ModuleList(
            CBlock(dims[0], arch['mlp_ratios'][0], dpr[i], cblock_norm_eps)
            for i in range(depths[0]))
        self.blocks2 = nn.ModuleList(
            CBlock(dims[1], arch['mlp_ratios'][1], dpr[depths[0] + i], cblock_norm_eps)
            for i in range(depths[1]))
        self.blocks3 = build_transformer_stage(
            self, depths[2], dims[2], arch['num_heads'], arch['mlp_ratios'][2], self.grid,
            dpr[depths[0] + depths[1]:], window_size=window_size, global_blocks=global_blocks,
            rel_pos_type=self.rel_pos_type, qkv_bias=True, layer_scale_init=layer_scale_init,
            norm_eps=norm_eps)
        if out_type == 'avg_featmap':
            self.fc_norm = nn.LayerNorm(dims[2], eps=norm_eps)
        elif final_norm:
            self.norm = nn.LayerNorm(dims[2], eps=norm_eps)
        if 3 in self.out_indices and out_level4 == 'conv':
            cfg = dict(padding=1, norm_cfg=None, act_cfg=None, bias=True)
            cfg.update(level4_cfg or {})
            self.level4_conv = ConvModule(dims[2], dims[2], 3, stride=2, **cfg)
        elif level4_cfg is not None:
            raise ValueError("level4_cfg configures out_level4='conv' with level 3 in "
                             'out_indices; remove it or use that level')

        # MAE/ConvMAE init: xavier Linear, unit LayerNorm, the stage-3 downsampling conv like
        # a Linear layer (Alpha-VL/ConvMAE models_convmae.py)
        init_transformer_(self)
        w = self.patch_embed3.proj.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        self.freeze_stages()

    # ----------------------------------------------------------------------------- config
    def _check_outputs(self):
        if self.out_type not in self.OUT_TYPES:
            raise ValueError(f'out_type must be one of {self.OUT_TYPES}, got {self.out_type!r}')
        if not self.out_indices or not set(self.out_indices) <= {0, 1, 2, 3}:
            raise ValueError(f'out_indices must be a non-empty subset of (0, 1, 2, 3), '
                             f'got {self.out_indices}')
        if self.out_type == 'avg_featmap' and self.out_indices != (2,):
            raise ValueError("out_type='avg_featmap' pools stage 3 only: use out_indices=(2,)")
        if self.out_level4 not in ('maxpool', 'conv'):
            raise ValueError(f"out_level4 must be 'maxpool' or 'conv', got {self.out_level4!r}")

    # ---------------------------------------------------------------------------- forward
    def pos_embed_for(self, grid_hw):
        """Position embedding (1, gh*gw, C) for a stage-3 grid (bicubic resize if needed)."""
        return resize_pos_embed(self.pos_embed, self.pos_grid, grid_hw)

    @property
    def block_cp(self):
        """``with_cp`` as :func:`run_blocks` takes it outside the skip-masked stages 1-2."""
        return self.with_cp or False

    def forward(self, x):
        """Encode a batch.

        Args:
            x (Tensor): (B, C_in, H, W); sides that are not multiples of 16 are padded
                (``patch_pad``, dense outputs only).

        Returns:
            tuple[Tensor]: for ``out_type='featmap'`` the maps of ``out_indices``:
            (B, C1, H/4, W/4), (B, C2, H/8, W/8), (B, C3, H/16, W/16), (B, C3, H/32, W/32)
            (each side rounded up for padded inputs);
            for ``'avg_featmap'`` one (B, C3) tensor.
        """
        b = x.shape[0]
        size = x.shape[-2:]
        x = self.pad_input(x)
        grid = self.grid_of(x.shape[-2:])
        cp = self.block_cp
        x1 = run_blocks(self.blocks1, self.patch_embed1(x), cp)
        x2 = run_blocks(self.blocks2, self.patch_embed2(x1), cp)
        x = self.patch_embed4(self.patch_embed3(x2).flatten(2).transpose(1, 2))
        x = run_blocks(self.blocks3, x + self.pos_embed_for(grid), cp, grid_hw=grid)
        if self.out_type == 'avg_featmap':
            return (self.fc_norm(x.mean(dim=1)),)
        if self.final_norm:
            x = self.norm(x)
        x3 = x.transpose(1, 2).reshape(b, -1, *grid)
        levels = [x1, x2, x3]
        if 3 in self.out_indices:
            levels.append(self.level4_conv(x3) if self.out_level4 == 'conv'
                          else F.max_pool2d(x3, 2))
        # contiguous NCHW, as every mm backbone returns: mmcv kernels (RoIAlign) read the
        # raw buffer, and the stage maps here are channels-last views (or cropped ones)
        outs = self.crop_outputs([levels[i] for i in self.out_indices], size)
        outs = tuple(out.contiguous() for out in outs)
        self.check_outputs_read(outs, self._describe_output, self._READ_FIX)
        return outs

    _READ_FIX = ('out_indices lists the levels (0-3) the neck and heads read, and their '
                 'in_channels are the backbone\'s out_channels; with FPN start_level=1 drop '
                 'level 0 and set start_level=0, as mmdet\'s Swin configs do')

    def _describe_output(self, position):
        level = self.out_indices[position]
        return f'level {level} (stride {LEVEL_STRIDES[level]})'

    def forward_masked(self, x, ids_keep, skip_masked=True):
        """The ConvMAE pretraining encoder up to (not including) fusion and the final norm.

        Masked convolution in stages 1-2 (each 16x16 block is visible or masked at every
        scale) and the stage-3 transformer on the visible tokens only (Gao et al. 2022,
        sec. 3.2). With ``skip_masked`` stages 1-2 compute at visible positions only
        (:meth:`CBlock.forward_visible`); otherwise densely with the keep-mask, as the official
        code. Both give the same visible features.

        Args:
            x (Tensor): (B, C_in, H, W) images, sides multiples of 16.
            ids_keep (Tensor): (B, L) long, visible cells of the (H/16, W/16) grid.
            skip_masked (bool): skip the computation at masked positions.

        Returns:
            tuple: stage-3 visible tokens (B, L, C3) after the last block; stage-1 and
            stage-2 features at the visible cells, (B, L, 4, 4, C1) and (B, L, 2, 2, C2).
        """
        if any(blk.window_size or blk.attn.rel_pos is not None for blk in self.blocks3):
            raise ValueError('the masked encoder runs stage 3 on visible tokens only, which '
                             'window attention and relative position bias cannot use: build '
                             'the pretraining ConvViT without window_size/rel_pos_type')
        grid = self.grid_of(x.shape[-2:])
        cp = self.block_cp
        if skip_masked:
            kw = dict(ids_keep=ids_keep, grid_hw=grid)
            cp12 = self.skip_path_cp if self.with_cp is None else cp
            x1 = run_blocks([blk.forward_visible for blk in self.blocks1],
                            self.patch_embed1.forward_blocks(map_to_blocks(x, ids_keep, STRIDE)),
                            cp12, **kw)
            x2 = run_blocks([blk.forward_visible for blk in self.blocks2],
                            self.patch_embed2.forward_blocks(x1), cp12, **kw)
            x3 = self.patch_embed3.forward_blocks(x2).flatten(1, 3)
        else:
            keep = torch.zeros(x.shape[0], grid[0] * grid[1], device=x.device, dtype=x.dtype)
            keep = keep.scatter(1, ids_keep, 1.).view(-1, 1, *grid)
            m1 = F.interpolate(keep, scale_factor=4, mode='nearest')
            m2 = F.interpolate(keep, scale_factor=2, mode='nearest')
            x1 = run_blocks(self.blocks1, self.patch_embed1(x), cp, keep_mask=m1)
            x2 = run_blocks(self.blocks2, self.patch_embed2(x1), cp, keep_mask=m2)
            x3 = map_to_blocks(self.patch_embed3(x2), ids_keep, 1).flatten(1, 3)
            x1, x2 = map_to_blocks(x1, ids_keep, 4), map_to_blocks(x2, ids_keep, 2)
        pos = self.pos_embed_for(grid).expand(x.shape[0], -1, -1)
        pos = torch.gather(pos, 1, ids_keep.unsqueeze(-1).expand(-1, -1, pos.shape[-1]))
        x3 = run_blocks(self.blocks3, self.patch_embed4(x3) + pos, cp)
        return x3, x1, x2

    # ----------------------------------------------------------------------- freezing
    def stage_parts(self):
        """Stem ``patch_embed1``; stage 1 ``blocks1``; stage 2 ``patch_embed2``, ``blocks2``;
        stage 3 ``patch_embed3``, ``patch_embed4``, ``pos_embed``, ``blocks3``."""
        return [[self.patch_embed1], [self.blocks1], [self.patch_embed2, self.blocks2],
                [self.patch_embed3, self.patch_embed4, self.pos_embed, self.blocks3]]

    def last_stage_parts(self):
        """``norm`` or ``fc_norm`` and the shared relative position tables."""
        return [getattr(self, name, None) for name in ('norm', 'fc_norm', *SHARED_TABLES)]
