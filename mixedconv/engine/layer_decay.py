"""Layer-wise learning-rate decay for any model whose backbone has ``get_layer_depth``."""
from mmengine.model import is_model_wrapper
from mmengine.logging import print_log
from mmengine.optim import DefaultOptimWrapperConstructor

from ..registry import OPTIM_WRAPPER_CONSTRUCTORS

NO_DECAY_NAMES = ('pos_embed', 'cls_token', 'mask_token', 'relative_position_bias_table')


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class LayerDecayOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """Layer-wise lr decay (BEiT, Bao et al. 2022) for mmpretrain, mmdet and mmseg alike.

    The backbone (``model.backbone``, or the model itself when it has ``get_layer_depth``) tells
    each parameter's ``(layer_id, num_layers)``; its lr is scaled by
    ``layer_decay_rate ** (num_layers - 1 - layer_id)``. Parameters outside the backbone (necks,
    heads) keep the full rate. Norms, biases (every 1-D tensor), position embeddings, class and
    mask tokens and relative position tables get no weight decay.

    Config::

        optim_wrapper = dict(
            type='AmpOptimWrapper', optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.05),
            constructor='LayerDecayOptimWrapperConstructor',
            paramwise_cfg=dict(layer_decay_rate=0.65))

    ``paramwise_cfg`` may also set ``no_decay_names`` (substrings, default ``NO_DECAY_NAMES``).
    """

    def __init__(self, optim_wrapper_cfg, paramwise_cfg=None):
        paramwise_cfg = dict(paramwise_cfg or {})
        if 'layer_decay_rate' not in paramwise_cfg:
            raise ValueError('LayerDecayOptimWrapperConstructor needs '
                             'paramwise_cfg=dict(layer_decay_rate=...)')
        self.layer_decay_rate = paramwise_cfg.pop('layer_decay_rate')
        self.no_decay_names = tuple(paramwise_cfg.pop('no_decay_names', NO_DECAY_NAMES))
        if paramwise_cfg:
            raise ValueError(f'unknown paramwise_cfg keys for layer decay: {sorted(paramwise_cfg)}')
        super().__init__(optim_wrapper_cfg, paramwise_cfg=dict(layer_decay_rate=None))

    def add_params(self, params, module, **kwargs):
        if is_model_wrapper(module):
            module = module.module
        backbone, prefix = ((module, '') if hasattr(module, 'get_layer_depth') else
                            (getattr(module, 'backbone', None), 'backbone.'))
        if not hasattr(backbone, 'get_layer_depth'):
            raise TypeError(f'layer decay needs a backbone with get_layer_depth(); '
                            f'{type(backbone).__name__} has none')
        base_lr = self.base_lr
        base_wd = self.base_wd or 0.
        groups = {}
        for name, param in module.named_parameters():
            if not param.requires_grad:
                continue
            scale = 1.0
            if name.startswith(prefix):
                layer_id, num_layers = backbone.get_layer_depth(name[len(prefix):])
                scale = self.layer_decay_rate ** (num_layers - 1 - layer_id)
            no_decay = param.ndim == 1 or any(key in name for key in self.no_decay_names)
            wd = 0. if no_decay else base_wd
            group = groups.setdefault((scale, wd), dict(params=[], param_names=[], lr=base_lr *
                                                        scale, weight_decay=wd, lr_scale=scale))
            group['params'].append(param)
            group['param_names'].append(name)
        params.extend(groups.values())
        print_log(f'layer decay {self.layer_decay_rate}: {len(groups)} parameter groups, lr '
                  f'scales {min(s for s, _ in groups):.3g}..{max(s for s, _ in groups):.3g}',
                  logger='current')
