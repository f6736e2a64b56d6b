"""Layer-wise learning-rate decay for any model whose backbone has ``get_layer_depth``, with the
weight-decay rule of either the MAE/BEiT fine-tuning code or detectron2."""
import torch.nn as nn
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.optim import DefaultOptimWrapperConstructor

from ..registry import MODELS, OPTIM_WRAPPER_CONSTRUCTORS

NO_DECAY_NAMES = ('pos_embed', 'cls_token', 'mask_token', 'relative_position_bias_table')

DECAY_RULES = ('mae', 'detectron2')
# The ``norm_module_types`` of detectron2's ``get_default_optimizer_params``
# (facebookresearch/detectron2 detectron2/solver/build.py): parameters of modules of these
# types (``isinstance``, so NaiveSyncBatchNorm through BatchNorm2d) get ``weight_decay_norm``.
DETECTRON2_NORM_TYPES = ('BatchNorm1d', 'BatchNorm2d', 'BatchNorm3d', 'SyncBatchNorm',
                         'GroupNorm', 'InstanceNorm1d', 'InstanceNorm2d', 'InstanceNorm3d',
                         'LayerNorm', 'LocalResponseNorm')
# Our modules that stand where detectron2 uses a norm outside that list although they subclass
# one of its types: ``LayerNorm2d`` is our counterpart of ``detectron2.layers.LayerNorm`` (a
# plain ``nn.Module``; the ``'LN'`` of the simple feature pyramid and the RoI heads), whose
# parameters detectron2 decays.
DETECTRON2_DECAYED_TYPES = ('LayerNorm2d', )
# keys a detectron2-rule override may set, per parameter name
OVERRIDE_KEYS = ('weight_decay', 'lr_scale')
# The layer-decay constructors of mmseg (LayerDecayOptimizerConstructor,
# LearningRateDecayOptimizerConstructor) and mmdet (LearningRateDecayOptimizerConstructor):
# they recognise only their own backbones, by class name (BEiT/MAE, ConvNeXt) and parameter
# names (layers.N, stages.N), and raise a bare NotImplementedError for any other.
LIBRARY_CONSTRUCTORS = {'LayerDecayOptimizerConstructor': 'mmseg',
                        'LearningRateDecayOptimizerConstructor': 'mmseg and mmdet'}
# their paramwise_cfg spelling: decay_rate (= layer_decay_rate), num_layers, decay_type
LIBRARY_DECAY_TYPES = ('layer_wise', 'layer_wise_vit')


def refuse_library_constructor(constructor, backbone_type):
    """ValueError, in one line, when ``constructor`` is one of :data:`LIBRARY_CONSTRUCTORS`
    (scope prefix allowed): it cannot assign layers of ``backbone_type``."""
    name = str(constructor).rpartition('.')[-1]
    if name in LIBRARY_CONSTRUCTORS:
        raise ValueError(
            f"{name} ({LIBRARY_CONSTRUCTORS[name]}) assigns layer ids only to its library's own "
            f"backbones and cannot assign those of {backbone_type}: write optim_wrapper."
            "constructor='LayerDecayOptimWrapperConstructor' (it reads num_layers and "
            'decay_rate from the same paramwise_cfg)')


def resolve_module_type(name):
    """A module class from its name: ``torch.nn`` first, then the registry (``LayerNorm2d``)."""
    if isinstance(name, type):
        return name
    cls = getattr(nn, name, None)
    if cls is None:
        cls = MODELS.get(name)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ValueError(f'{name!r} is not a torch.nn module type nor a registered module')
    return cls


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class LayerDecayOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """Layer-wise lr decay (BEiT, Bao et al. 2022) for mmpretrain, mmdet and mmseg alike.

    The backbone (``model.backbone``, or the model itself when it has ``get_layer_depth``) tells
    each parameter's ``(layer_id, num_layers)``; its lr is scaled by
    ``layer_decay_rate ** (num_layers - 1 - layer_id)``. Parameters outside the backbone (necks,
    heads) keep the full rate. Which parameters get weight decay is set by ``decay_rule``:

    * ``'mae'`` (default; the MAE/BEiT/ConvMAE fine-tuning code, mmseg's layer-decay
      constructor): no weight decay for every 1-D tensor (norms, biases) and for names that
      contain one of ``no_decay_names`` (substrings, default ``NO_DECAY_NAMES``: position
      embeddings, class and mask tokens, relative position bias tables).
    * ``'detectron2'`` (detectron2's ``get_default_optimizer_params`` with
      ``weight_decay_norm`` and ``overrides``, as the ViTDet-style recipes call it with
      ``lr_factor_func`` for the layer decay): every parameter is decayed (biases and relative
      position tables included) except the parameters of modules that are instances of
      ``norm_types`` (default ``DETECTRON2_NORM_TYPES``) and not of ``decayed_types``
      (default ``DETECTRON2_DECAYED_TYPES``), which get ``weight_decay_norm`` (default 0).
      Then ``overrides`` maps a parameter's own name (the last part of its dotted name, as
      detectron2 keys them; e.g. ``'pos_embed'``) to ``weight_decay`` (absolute value) and/or
      ``lr_scale`` (replaces the layer-decay scale). A parameter shared by several modules
      belongs to the first one in ``named_modules()`` order, as in detectron2.

    The paramwise_cfg of mmseg's and mmdet's layer-decay constructors works as it is:
    ``decay_rate`` is ``layer_decay_rate``, ``num_layers`` (the transformer blocks those
    constructors count; at least the backbone's) sets the ids as they do (embeddings 0, block i
    i + 1, the rest ``num_layers + 1``), ``decay_type`` may be ``'layer_wise'`` or
    ``'layer_wise_vit'``, and weight decay then exempts only 1-D parameters unless
    ``no_decay_names`` is given (their rule). Those constructors themselves cannot be pointed at
    our backbones (:func:`refuse_library_constructor`).

    Frozen parameters (``requires_grad=False``) are left out of the optimizer.

    Config::

        optim_wrapper = dict(
            type='AmpOptimWrapper', optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.1),
            constructor='LayerDecayOptimWrapperConstructor',
            paramwise_cfg=dict(layer_decay_rate=0.7, decay_rule='detectron2',
                               overrides=dict(pos_embed=dict(weight_decay=0.0))))

    Each parameter group carries ``lr_scale`` and ``param_names``.
    """

    def __init__(self, optim_wrapper_cfg, paramwise_cfg=None):
        paramwise_cfg = dict(paramwise_cfg or {})
        library = self._read_library_keys(paramwise_cfg)
        if 'layer_decay_rate' not in paramwise_cfg:
            raise ValueError('LayerDecayOptimWrapperConstructor needs '
                             'paramwise_cfg=dict(layer_decay_rate=...) (or decay_rate=...)')
        self.layer_decay_rate = paramwise_cfg.pop('layer_decay_rate')
        self.decay_rule = paramwise_cfg.pop('decay_rule', 'mae')
        if self.decay_rule not in DECAY_RULES:
            raise ValueError(f'decay_rule must be one of {DECAY_RULES}, got {self.decay_rule!r}')
        if self.decay_rule == 'mae':
            self.no_decay_names = tuple(paramwise_cfg.pop(
                'no_decay_names', () if library else NO_DECAY_NAMES))
        else:
            self.norm_types = tuple(resolve_module_type(t) for t in paramwise_cfg.pop(
                'norm_types', DETECTRON2_NORM_TYPES))
            self.decayed_types = tuple(resolve_module_type(t) for t in paramwise_cfg.pop(
                'decayed_types', DETECTRON2_DECAYED_TYPES))
            self.weight_decay_norm = float(paramwise_cfg.pop('weight_decay_norm', 0.0))
            self.overrides = {k: dict(v) for k, v in paramwise_cfg.pop('overrides', {}).items()}
            for key, value in self.overrides.items():
                unknown = set(value) - set(OVERRIDE_KEYS)
                if unknown:
                    raise ValueError(f'override {key!r} sets {sorted(unknown)}; an override '
                                     f'may set {OVERRIDE_KEYS}')
        if paramwise_cfg:
            raise ValueError(f'unknown paramwise_cfg keys for layer decay with decay_rule='
                             f'{self.decay_rule!r}: {sorted(paramwise_cfg)}')
        super().__init__(optim_wrapper_cfg, paramwise_cfg=dict(layer_decay_rate=None))

    def _read_library_keys(self, paramwise_cfg):
        """Take mmseg's/mmdet's ``decay_rate``, ``num_layers``, ``decay_type`` out of
        ``paramwise_cfg`` (in place); True when any was there."""
        library = any(k in paramwise_cfg for k in ('decay_rate', 'num_layers', 'decay_type'))
        if 'decay_rate' in paramwise_cfg:
            if 'layer_decay_rate' in paramwise_cfg:
                raise ValueError('paramwise_cfg sets both decay_rate and layer_decay_rate; '
                                 'keep one')
            paramwise_cfg['layer_decay_rate'] = paramwise_cfg.pop('decay_rate')
        self.num_layers = paramwise_cfg.pop('num_layers', None)
        decay_type = paramwise_cfg.pop('decay_type', 'layer_wise')
        if decay_type not in LIBRARY_DECAY_TYPES:
            raise ValueError(f'decay_type {decay_type!r} is not supported (it groups ConvNeXt '
                             f'stages); use one of {LIBRARY_DECAY_TYPES}')
        return library

    def _scale(self, backbone, name):
        """lr scale of a backbone parameter (name without the backbone prefix)."""
        layer_id, num_layers = backbone.get_layer_depth(name)
        if self.num_layers is not None:  # the libraries' count: ids 0..num_layers + 1
            if layer_id == num_layers - 1:
                layer_id = self.num_layers + 1
            num_layers = self.num_layers + 2
        return self.layer_decay_rate ** (num_layers - 1 - layer_id)

    def _named_params(self, module):
        """(full name, own name, owning module, parameter) of every trainable parameter, each
        once, in ``named_modules()`` order."""
        seen = set()
        for module_name, mod in module.named_modules():
            for own_name, param in mod.named_parameters(recurse=False):
                if not param.requires_grad or param in seen:
                    continue
                seen.add(param)
                name = f'{module_name}.{own_name}' if module_name else own_name
                yield name, own_name, mod, param

    def _weight_decay(self, name, own_name, mod, param, base_wd):
        """Weight decay of one parameter under the configured rule."""
        if self.decay_rule == 'mae':
            no_decay = param.ndim == 1 or any(key in name for key in self.no_decay_names)
            return 0. if no_decay else base_wd
        is_norm = isinstance(mod, self.norm_types) and not isinstance(mod, self.decayed_types)
        return self.weight_decay_norm if is_norm else base_wd

    def add_params(self, params, module, **kwargs):
        if is_model_wrapper(module):
            module = module.module
        backbone, prefix = ((module, '') if hasattr(module, 'get_layer_depth') else
                            (getattr(module, 'backbone', None), 'backbone.'))
        if not hasattr(backbone, 'get_layer_depth'):
            raise TypeError(f'layer decay needs a backbone with get_layer_depth(); '
                            f'{type(backbone).__name__} has none')
        if self.num_layers is not None:
            blocks = backbone.get_layer_depth('')[1] - 2
            if self.num_layers < blocks:
                raise ValueError(f'paramwise_cfg num_layers={self.num_layers} is fewer than the '
                                 f'{blocks} transformer blocks of {type(backbone).__name__}; '
                                 f'set num_layers={blocks}')
        base_lr = self.base_lr
        base_wd = self.base_wd or 0.
        groups = {}
        for name, own_name, mod, param in self._named_params(module):
            scale = 1.0
            if name.startswith(prefix):
                scale = self._scale(backbone, name[len(prefix):])
            wd = self._weight_decay(name, own_name, mod, param, base_wd)
            if self.decay_rule == 'detectron2' and own_name in self.overrides:
                override = self.overrides[own_name]
                wd = float(override.get('weight_decay', wd))
                scale = float(override.get('lr_scale', scale))
            group = groups.setdefault((scale, wd), dict(params=[], param_names=[], lr=base_lr *
                                                        scale, weight_decay=wd, lr_scale=scale))
            group['params'].append(param)
            group['param_names'].append(name)
        params.extend(groups.values())
        print_log(f'layer decay {self.layer_decay_rate} ({self.decay_rule} weight-decay rule): '
                  f'{len(groups)} parameter groups, lr scales '
                  f'{min(s for s, _ in groups):.3g}..{max(s for s, _ in groups):.3g}',
                  logger='current')
