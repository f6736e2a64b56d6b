"""Where the recipe configs are, and the ``mixedconv::`` scope that names them.

The configs ship inside the package as ``mixedconv/.mim/configs`` (the OpenMMLab layout that
mmengine resolves ``mmdet::`` and ``mmseg::`` names in): in a checkout that folder is a link
to the repository's ``configs/``, and a built wheel holds a copy. So the same names work
editable and installed::

    _base_ = 'mixedconv::convmae/upernet_convvit-base-p16_8xb2-amp-160k_ade20k-512x512.py'
    python -m mixedconv.train mixedconv::mae/mae_vit-base-p16_8xb512-amp-coslr-1600e_in1k.py

mmengine resolves a ``scope::`` only for the packages it knows; :func:`register_config_scope`
adds ours (done on registration, and by our training and test entry points before they read a
config). Standard library only: the leaderboard asks this module without torch.
"""
import os.path as osp

SCOPE = 'mixedconv::'
PACKAGE_DIR = osp.dirname(osp.abspath(__file__))
CONFIG_ROOT = osp.join(PACKAGE_DIR, '.mim', 'configs')


def config_path(name):
    """Absolute path of a shipped config named ``mixedconv::<dir>/<file>.py``,
    or ``configs/<dir>/<file>.py`` (the names in the repository); other paths are returned
    as given.

    Raises:
        FileNotFoundError: a ``mixedconv::`` name that the package does not ship.
    """
    if name.startswith(SCOPE):
        relative = name[len(SCOPE):]
    elif name.startswith('configs/'):
        relative = name[len('configs/'):]
    else:
        return name
    path = osp.join(CONFIG_ROOT, relative)
    if not osp.isfile(path):
        raise FileNotFoundError(f'{name}: mixedconv ships no such config (looked in '
                                f'{CONFIG_ROOT}); list them with `ls {CONFIG_ROOT}/*`')
    return path


def register_config_scope():
    """Let mmengine resolve ``mixedconv::`` config names (idempotent).

    mmengine's scope table is closed to the OpenMMLab packages, so ours is added to it; and
    it finds a package's folder through its distribution's location, which for an editable
    install is site-packages rather than the checkout, so for ``mixedconv`` it is given this
    package's folder (every other package is looked up as before)."""
    import mmengine.config.config as mm_config
    from mmengine.config.utils import MODULE2PACKAGE
    MODULE2PACKAGE.setdefault('mixedconv', 'mixedconv')
    lookup = mm_config.get_installed_path
    if getattr(lookup, 'mixedconv_aware', False):
        return

    def get_installed_path(package):
        return PACKAGE_DIR if package == 'mixedconv' else lookup(package)

    get_installed_path.mixedconv_aware = True
    mm_config.get_installed_path = get_installed_path
