"""Check the environment: ``python -m mixedconv.env`` (or ``python tools/check_env.py``).

Prints the versions of the stack, whether mmcv's compiled ops load, the CUDA path (each
visible GPU with its compute capability, torch's CUDA release, the CUDA release mmcv's ops
were compiled with) and which mm libraries can build mixedconv components; exits with 1 and
says what to do when something required is missing. A machine without a GPU is not a
problem; a GPU with an mmcv that cannot run on it is.
"""
import importlib
import os
import sys
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

REQUIRED = ('torch', 'torchvision', 'mmengine', 'mmcv', 'mmdet', 'mmseg', 'mmpretrain', 'timm',
            'pycocotools', 'ftfy', 'regex', 'pkg_resources', 'numpy')
LIBRARIES = {'mmpretrain': 'mmpretrain.registry', 'mmdet': 'mmdet.registry',
             'mmseg': 'mmseg.registry'}
FIX = 'run `bash tools/setup_env.sh` and use the python of the venv it prints'
CUDA_OPS_FIX = ('rebuild it by `MIXEDCONV_CUDA_OPS=1 bash tools/setup_env.sh` '
                '(docs/cuda.md)')


def _version(name):
    module = importlib.import_module(name)
    return getattr(module, '__version__', 'installed')


def mmcv_cuda_release():
    """The CUDA release (``'13.2'``) that mmcv's compiled ops were built with, as mmcv
    recorded it at compile time (``mmcv.ops.get_compiling_cuda_version``: the toolkit whose
    nvcc compiled its CUDA kernels); None when mmcv has CPU ops only, or no compiled ops."""
    try:
        from mmcv.ops import get_compiling_cuda_version
    except ImportError:  # no compiled ops at all: check() reports that
        return None
    release = get_compiling_cuda_version()
    return None if release == 'not available' else release


def _major(release):
    return release.split('.')[0]


@dataclass
class CudaStatus:
    """What this machine offers for the CUDA path.

    Attributes:
        torch: torch's version.
        cuda: torch's CUDA release (``torch.version.cuda``), None for a CPU-only torch.
        devices: ``(name, (major, minor))``, the name and compute capability of each GPU
            torch sees.
        mmcv_cuda: the CUDA release of mmcv's compiled ops (:func:`mmcv_cuda_release`), None
            when mmcv has CPU ops only.
        visible: ``CUDA_VISIBLE_DEVICES`` when set.
    """
    torch: str
    cuda: Optional[str]
    devices: List[Tuple[str, Tuple[int, int]]] = field(default_factory=list)
    mmcv_cuda: Optional[str] = None
    visible: Optional[str] = None

    def mmcv_problem(self):
        """Why mmcv's ops cannot run on torch's CUDA (a sentence with the fix), or None."""
        if self.mmcv_cuda is None:
            return f'mmcv was built with CPU ops only: {CUDA_OPS_FIX}'
        if self.cuda is not None and _major(self.mmcv_cuda) != _major(self.cuda):
            return (f"mmcv's CUDA ops were compiled with CUDA {self.mmcv_cuda}, torch runs "
                    f'CUDA {self.cuda}: {CUDA_OPS_FIX}')
        return None

    def unusable(self):
        """Why the CUDA path (a GPU, and mmcv's CUDA ops for mmdet and mmseg) cannot run
        here, or None when it can."""
        if self.cuda is None:
            return (f'torch {self.torch} is built without CUDA: the CUDA path needs torch '
                    'with CUDA and a machine with an NVIDIA GPU')
        if not self.devices:
            hidden = f', CUDA_VISIBLE_DEVICES={self.visible!r}' if self.visible is not None \
                else ''
            return (f'no CUDA GPU visible (torch.cuda.is_available() is False{hidden}): the '
                    'CUDA path needs a machine with an NVIDIA GPU and driver')
        return self.mmcv_problem()

    def lines(self):
        """Report lines: torch's CUDA, one per GPU, mmcv's CUDA ops."""
        if self.cuda is None:
            return ['cuda         torch without CUDA (CPU only)']
        count = f'{len(self.devices)} GPU' if self.devices else 'no GPU visible (CPU only)'
        lines = [f'cuda         torch CUDA {self.cuda}; {count}']
        lines += [f'gpu {i:<8} {name}, compute capability {major}.{minor}'
                  for i, (name, (major, minor)) in enumerate(self.devices)]
        if self.mmcv_cuda is None:
            ops = 'not compiled (CPU ops only)'
        else:
            ops = f'compiled with CUDA {self.mmcv_cuda}'
            if self.mmcv_cuda != self.cuda:
                ops += f' (torch: {self.cuda})'
        lines.append(f'mmcv cuda    {ops}')
        return lines


def cuda_status():
    """The :class:`CudaStatus` of this machine (imports torch and mmcv)."""
    import torch
    devices = []
    if torch.cuda.is_available():
        devices = [(torch.cuda.get_device_name(i), torch.cuda.get_device_capability(i))
                   for i in range(torch.cuda.device_count())]
    return CudaStatus(torch=torch.__version__, cuda=torch.version.cuda, devices=devices,
                      mmcv_cuda=mmcv_cuda_release(),
                      visible=os.environ.get('CUDA_VISIBLE_DEVICES'))


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
        status = cuda_status()
        lines += status.lines()
        if status.devices and status.mmcv_problem():  # a GPU machine needs the CUDA ops
            problems.append(status.mmcv_problem())
    except ImportError:  # torch or mmcv missing: reported above
        pass
    try:
        import mixedconv
        mixedconv.register_all_modules()  # `python -m mixedconv.env` imports it before torch
        from mixedconv.registry import MODELS
        names = sorted(n for n, cls in MODELS.module_dict.items()
                       if cls.__module__.startswith('mixedconv'))
        lines.append(f'mixedconv    {mixedconv.__version__}: {", ".join(names)}')
        if not names:
            problems.append('mixedconv registered no components')
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
