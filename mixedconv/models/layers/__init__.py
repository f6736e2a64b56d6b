from .attention import Attention
from .block import CP_MODES, Block, LayerNorm6, check_cp_mode, run_blocks
from .cblock import CBlock, channels_last_norm
from .init import init_transformer_
from .homologous_attention import HomologousAttention, homologous_precision, topk_key_mask
from .norm import LayerNorm2d, build_norm_2d
from .rel_pos import (REL_POS_TYPES, DecomposedRelPos, RelativePositionBias, SharedRef,
                      build_rel_pos)
from .pos_embed import infer_grid, resize_pos_embed, sincos_pos_embed_2d
from .visible_blocks import (blocks_to_map, map_to_blocks, strided_conv_blocks,
                             visible_depthwise_conv)
from .window import window_partition, window_unpartition

__all__ = ['Attention', 'RelativePositionBias', 'DecomposedRelPos', 'SharedRef',
           'build_rel_pos', 'REL_POS_TYPES', 'Block', 'LayerNorm6', 'run_blocks', 'CP_MODES',
           'check_cp_mode', 'CBlock', 'channels_last_norm', 'blocks_to_map', 'map_to_blocks',
           'strided_conv_blocks', 'visible_depthwise_conv',
           'HomologousAttention', 'homologous_precision', 'topk_key_mask', 'LayerNorm2d',
           'build_norm_2d', 'infer_grid', 'resize_pos_embed', 'sincos_pos_embed_2d',
           'window_partition', 'window_unpartition', 'init_transformer_']
