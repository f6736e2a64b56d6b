"""mixedconv: ConvMAE and MixedAE for OpenMMLab.

Importing the package registers every component into mmengine's root registries (so mmpretrain,
mmdet and mmseg configs find them with ``custom_imports=dict(imports=['mixedconv'])``), makes
every mmengine checkpoint load go through the weights-only loader in :mod:`mixedconv.checkpoint`
and every local checkpoint write atomic (:mod:`mixedconv.fileio`).
"""
from . import checkpoint, fileio  # noqa: F401  (safe loading, atomic writes: first)
from . import data, engine, models  # noqa: F401
from .version import __version__

__all__ = ['__version__']
