"""Turning a foreign state dict into a backbone's: official names, position tables resized
to the backbone's shapes."""
import re

from ..layers import DecomposedRelPos, RelativePositionBias, infer_grid, resize_pos_embed
from ..layers.rel_pos import resize_rows


def adapt_position_tables(model, state_dict, num_extra_tokens=0):
    """Resize ``pos_embed`` and every relative position table of ``state_dict`` to ``model``.

    * ``pos_embed`` (1, extra + Hs*Ws, C) goes bicubically to ``model.pos_grid``; the stored
      grid is the model's when the sizes agree, else square (:func:`infer_grid`). A table
      that fits no grid is left as it is and shows as a shape mismatch in the load report.
    * BEiT tables go bicubically to their module's grid (the three class-token rows kept);
      a table with BEiT's three class-token rows loaded into a module without class token
      loses them (the official ConvMAE SEG tables carry them unused).
    * ViTDet ``rel_pos_h``/``rel_pos_w`` go linearly to their module's length.

    Returns:
        dict: a new state dict.
    """
    state_dict = dict(state_dict)
    pos = state_dict.get('pos_embed')
    if pos is not None and pos.ndim == 3 and pos.shape != model.pos_embed.shape \
            and pos.shape[1] > num_extra_tokens:
        try:
            src = infer_grid(pos.shape[1] - num_extra_tokens, model.pos_grid)
        except ValueError:
            src = None
        if src is not None:
            state_dict['pos_embed'] = resize_pos_embed(pos, src, model.pos_grid,
                                                       num_extra_tokens)
    for name, module in model.named_modules():
        prefix = f'{name}.' if name else ''
        if isinstance(module, RelativePositionBias):
            key = prefix + 'relative_position_bias_table'
            if key not in state_dict:
                continue
            table = state_dict[key]
            own_rows = module.relative_position_bias_table.shape[0]
            if table.shape[0] == own_rows:
                continue
            if not module.num_extra_tokens:
                try:
                    src = module.table_grid(table.shape[0])
                except ValueError:
                    table, src = table[:-3], module.table_grid(table.shape[0] - 3)
            else:
                src = module.table_grid(table.shape[0])
            state_dict[key] = module.resize_table(table, src, module.grid_hw)
        elif isinstance(module, DecomposedRelPos):
            for attr in ('rel_pos_h', 'rel_pos_w'):
                key = prefix + attr
                if key in state_dict:
                    state_dict[key] = resize_rows(state_dict[key],
                                                  getattr(module, attr).shape[0])
    return state_dict


# names of the official transfer checkpoints -> ours (regex, replacement), for both backbones:
# per-block BEiT tables (ConvMAE SEG, mmseg MAE), ViTDet's decomposed tables (detectron2,
# Official-ConvMAE-Det) and BEiT-style layer scale ``gamma_1``/``gamma_2``
OFFICIAL_RENAMES = (
    (r'\.attn\.relative_position_bias_table$', '.attn.rel_pos.relative_position_bias_table'),
    (r'\.attn\.rel_pos_([hw])$', r'.attn.rel_pos.rel_pos_\1'),
    (r'\.gamma_1$', '.ls1.gamma'),
    (r'\.gamma_2$', '.ls2.gamma'),
)
# index buffers the official modules store; ours are recomputed from the grid
DERIVED_BUFFERS = ('relative_position_index',)


def rename_official(state_dict, renames=OFFICIAL_RENAMES):
    """Rename official transfer-checkpoint keys to ours and drop derived index buffers."""
    out = {}
    for key, value in state_dict.items():
        if key.endswith(DERIVED_BUFFERS):
            continue
        for pattern, replacement in renames:
            key = re.sub(pattern, replacement, key)
        out[key] = value
    return out
