"""mixedconv: ConvMAE and MixedAE for OpenMMLab.

Importing the package registers every component into mmengine's root registries (so mmpretrain,
mmdet and mmseg configs find them with ``custom_imports=dict(imports=['mixedconv'])``) and makes
every mmengine checkpoint load go through the weights-only loader in :mod:`mixedconv.checkpoint`.
"""
from . import checkpoint  # noqa: F401  (registers the safe loader first)
from . import engine, models  # noqa: F401
from .version import __version__

__all__ = ['__version__']
