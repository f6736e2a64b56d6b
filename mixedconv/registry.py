"""Where mixedconv registers its components.

mmpretrain, mmdet and mmseg each have child registries of mmengine's root registries, and a
child that misses a name looks it up in its parents. Registering into the root therefore makes
every component buildable with a plain ``type='ConvViT'`` from all three libraries' configs
(``default_scope`` mmpretrain, mmdet or mmseg) once ``mixedconv`` is imported. Names are chosen
not to clash with any class of those libraries (checked in tests/test_registry.py).
"""
from mmengine.registry import (HOOKS, MODELS, OPTIM_WRAPPER_CONSTRUCTORS, OPTIMIZERS,
                               PARAM_SCHEDULERS, TASK_UTILS, TRANSFORMS)

__all__ = ['MODELS', 'OPTIMIZERS', 'OPTIM_WRAPPER_CONSTRUCTORS', 'PARAM_SCHEDULERS', 'HOOKS',
           'TRANSFORMS', 'TASK_UTILS']
