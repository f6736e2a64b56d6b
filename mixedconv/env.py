"""Check the environment: ``python -m mixedconv.env`` (or ``python tools/check_env.py``).

Prints the versions of the stack, whether mmcv's compiled ops load, CUDA availability and
which mm libraries can build mixedconv components; exits with 1 and says what to do when
something required is missing.
"""
import importlib
import sys

REQUIRED = ('torch', 'torchvision', 'mmengine', 'mmcv', 'mmdet', 'mmseg', 'mmpretrain', 'timm',
            'pycocotools', 'ftfy', 'regex', 'pkg_resources', 'numpy')
LIBRARIES = {'mmpretrain': 'mmpretrain.registry', 'mmdet': 'mmdet.registry',
             'mmseg': 'mmseg.registry'}
FIX = 'run `bash tools/setup_env.sh` and use the python of the venv it prints'


def _version(name):
    module = importlib.import_module(name)
    return getattr(module, '__version__', 'installed')


def check():
    """Return (report lines, list of problems)."""
    lines, problems = [], []
    for name in REQUIRED:
        try:
            lines.append(f'{name:<12} {_version(name)}')
        except Exception as err:  # any import failure is a finding to report
            lines.append(f'{name:<12} MISSING ({type(err).__name__}: {err})')
            problems.append(f'{name} cannot be imported')
    try:
        from mmcv.ops import RoIAlign, nms  # noqa: F401
        lines.append('mmcv.ops     compiled (RoIAlign, nms load)')
    except Exception as err:
        lines.append(f'mmcv.ops     NOT COMPILED ({err})')
        problems.append('mmcv was installed without compiled ops (mmdet and mmseg need them)')
    try:
        import torch
        cuda = (f'available: {torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda})'
                if torch.cuda.is_available() else 'not available (CPU only)')
        lines.append(f'cuda         {cuda}')
    except ImportError:
        pass
    try:
        import mixedconv
        from mixedconv.registry import MODELS
        names = sorted(n for n, cls in MODELS.module_dict.items()
                       if cls.__module__.startswith('mixedconv'))
        lines.append(f'mixedconv    {mixedconv.__version__}: {", ".join(names)}')
        usable = []
        for lib, registry_module in LIBRARIES.items():
            child = importlib.import_module(registry_module).MODELS
            if all(child.get(n) is MODELS.get(n) for n in names):
                usable.append(lib)
            else:
                problems.append(f'{lib} cannot build mixedconv components')
        lines.append(f'registered   usable from {", ".join(usable) or "nothing"}')
    except Exception as err:
        lines.append(f'mixedconv    FAILED ({type(err).__name__}: {err})')
        problems.append('import mixedconv failed')
    return lines, problems


def main():
    lines, problems = check()
    print('\n'.join(lines))
    if problems:
        print('\nPROBLEMS:\n' + '\n'.join(f'  - {p}' for p in problems) + f'\nFix: {FIX}',
              file=sys.stderr)
        return 1
    print('\nenvironment OK')
    return 0


if __name__ == '__main__':
    sys.exit(main())
