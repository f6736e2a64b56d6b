"""mixedconv: ConvMAE and MixedAE for OpenMMLab.

Registration, as the mm libraries do it: importing :mod:`mixedconv.models` registers the
models (as ``mmpretrain.models`` does), and :func:`register_all_modules` registers every
component (models, transforms, optimizers, hooks) into mmengine's root registries, so
mmpretrain, mmdet and mmseg configs find them by plain ``type=`` names. Both also make every
mmengine checkpoint load go through the weights-only loader of :mod:`mixedconv.checkpoint`
and every local checkpoint write atomic (:mod:`mixedconv.fileio`).

``import mixedconv`` itself calls :func:`register_all_modules` when torch or mmengine is
already loaded. That is always so where mmengine reads ``custom_imports=dict(imports=
['mixedconv'])`` in a config, and in any program that builds models, so configs keep
working with the package name alone; the data-only parts (:mod:`mixedconv.leaderboard`,
:mod:`mixedconv.families`, :mod:`mixedconv.config_data`) then import without torch. A script
that imports ``mixedconv`` before torch and mmengine calls :func:`register_all_modules`.
"""
import sys

from .version import __version__

__all__ = ['__version__', 'register_all_modules']


def register_all_modules():
    """Register every mixedconv component, install the safe checkpoint loader and the
    atomic checkpoint writer, keep mmengine from running the config text checkpoints carry,
    and let mmengine resolve ``mixedconv::`` config names (idempotent)."""
    from . import models  # noqa: F401  (first: it installs the safe loader, atomic writes)
    from . import data, engine  # noqa: F401
    from .config_data import guard_checkpoint_configs
    from .config_files import register_config_scope
    guard_checkpoint_configs()
    register_config_scope()


if 'torch' in sys.modules or 'mmengine' in sys.modules:
    register_all_modules()
