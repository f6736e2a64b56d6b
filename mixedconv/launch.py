"""Config handling shared by tools/train.py and tools/test.py, for mmpretrain, mmdet and mmseg
configs alike: the config's ``default_scope`` decides which library's registries build it."""
import argparse
import logging
import os
import os.path as osp
import signal

import torch
import torch.distributed as dist
from mmengine.config import Config, DictAction
from mmengine.logging import print_log

from .config_files import config_path, register_config_scope

LAUNCHERS = ('none', 'pytorch', 'slurm', 'mpi')


def add_common_args(parser):
    """Arguments both tools take."""
    parser.add_argument('config', help='config file (mmpretrain, mmdet or mmseg), or a shipped '
                        'one as mixedconv::<dir>/<file>.py')
    parser.add_argument('--work-dir', help='where logs and checkpoints go '
                        '(default: ./work_dirs/<config name>)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                        help='override config keys, e.g. train_cfg.max_iters=10')
    parser.add_argument('--launcher', choices=LAUNCHERS, default='none')
    # torchrun sets LOCAL_RANK; older launchers pass --local_rank / --local-rank
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    return parser


def load_config(args):
    """Read the config (a path or a shipped ``mixedconv::<dir>/<file>.py``), apply
    ``--cfg-options``, ``--work-dir`` and ``--launcher``."""
    register_config_scope()  # for configs whose _base_ is a mixedconv:: name
    path = config_path(args.config)
    if not osp.isfile(path):
        raise FileNotFoundError(f'config file not found: {args.config}')
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    cfg = Config.fromfile(path)
    cfg.merge_from_dict(args.cfg_options)
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    _use_gloo_without_cuda(cfg)
    return cfg


def _use_gloo_without_cuda(cfg):
    """NCCL needs GPUs; a distributed run on a CPU-only machine uses gloo (and says so).

    The model is then wrapped in DDP without ``device_ids`` (mmengine passes
    ``[LOCAL_RANK]``, which DDP only accepts for a module on a GPU).
    """
    if cfg.launcher == 'none' or torch.cuda.is_available():
        return
    dist_cfg = cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})
    if dist_cfg.get('backend', 'nccl') == 'nccl':
        print_log('no CUDA device: distributed backend nccl -> gloo', logger='current')
        dist_cfg['backend'] = 'gloo'
    wrapper = cfg.get('model_wrapper_cfg') or dict(
        type='MMDistributedDataParallel', broadcast_buffers=False,
        find_unused_parameters=cfg.get('find_unused_parameters', False))
    if wrapper.get('type', 'MMDistributedDataParallel') == 'MMDistributedDataParallel':
        wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper


def _init_cpu_process_group(cfg):
    """Start the gloo process group of a CPU-only torchrun launch.

    mmengine's ``init_dist`` selects a CUDA device before initialising the group and so
    fails without one; when the group already exists the runner uses it as it is.
    """
    if cfg.launcher != 'pytorch' or torch.cuda.is_available() or dist.is_initialized():
        return
    dist.init_process_group(backend=cfg.env_cfg.dist_cfg.backend)


def enable_amp(cfg):
    """``--amp``: train with ``AmpOptimWrapper`` (dynamic loss scale unless the config sets
    one); a config that already uses it is left as it is."""
    wrapper = cfg.optim_wrapper.get('type', 'OptimWrapper')
    if wrapper == 'AmpOptimWrapper':
        print_log('--amp: the config already uses AmpOptimWrapper', logger='current')
    elif wrapper != 'OptimWrapper':
        raise ValueError(f'--amp cannot replace optim_wrapper type {wrapper}; set '
                         'optim_wrapper.type=AmpOptimWrapper in the config instead')
    else:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    return cfg


def build_runner(cfg):
    """``Runner.from_cfg``, or the config's own ``runner_type``, that never executes the
    config text a checkpoint carries (see :func:`_read_stored_config_as_data`)."""
    from mixedconv import register_all_modules
    register_all_modules()  # components, the safe checkpoint loader
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    _init_cpu_process_group(cfg)
    runner = RUNNERS.build(cfg) if 'runner_type' in cfg else Runner.from_cfg(cfg)
    _read_stored_config_as_data(runner)
    return runner


def _read_stored_config_as_data(runner):
    """Make ``runner.resume`` read the checkpoint's ``meta['config']`` as data.

    mmengine's ``Runner.resume`` passes that text to ``Config.fromstring``, which executes it,
    only to read ``gpu_ids`` from it. The checkpoint's text is parsed with
    :func:`~mixedconv.config_data.parse_config_text` instead and replaced by a one-line
    config holding just the ``gpu_ids`` it declared (a list of ints, written by us), so
    mmengine's GPU-count check still runs and nothing the file wrote is executed.
    """
    from .config_data import ConfigTextError, parse_config_text
    load = runner.load_checkpoint

    def load_checkpoint(filename, *args, **kwargs):
        checkpoint = load(filename, *args, **kwargs)
        meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
        if isinstance(meta, dict) and 'config' in meta:
            gpu_ids = None
            try:
                gpu_ids = parse_config_text(str(meta['config']),
                                            f"meta['config'] of {filename}").get('gpu_ids')
            except ConfigTextError as err:
                print_log(f'{err}; it is ignored', logger='current', level=logging.WARNING)
            ok = isinstance(gpu_ids, (list, tuple)) and all(
                isinstance(i, int) and not isinstance(i, bool) for i in gpu_ids)
            meta['config'] = f'gpu_ids = {list(gpu_ids)!r}\n' if ok else ''
        return checkpoint

    runner.load_checkpoint = load_checkpoint


def die_with_parent():
    """Ask the kernel to SIGKILL this process when its parent dies, however the parent dies
    (``prctl(PR_SET_PDEATHSIG)``; Linux only, elsewhere a no-op). Safe to call in a
    ``preexec_fn``."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass


DIE_WITH_PARENT_ENV = 'MIXEDCONV_DIE_WITH_PARENT'


def remove_stale_checkpoint_temporaries(cfg):
    """On the first rank, before the run writes anything: delete the ``.part`` files a run
    killed mid-write left in the work directory."""
    from .fileio import remove_stale_temporaries
    if int(os.environ.get('RANK', os.environ.get('LOCAL_RANK', 0)) or 0) != 0:
        return
    for path in remove_stale_temporaries(cfg.work_dir, recursive=False):
        print_log(f'removed {path}, a checkpoint temporary left by a killed run',
                  logger='current')


def run_cli(main, argv=None):
    """Run a tool's ``main``; user errors print one ``error: ...`` line (exit code 2)
    instead of a traceback (:func:`mixedconv.cli.run_cli`, with checkpoint errors).
    Programming errors keep their traceback."""
    from . import cli
    from .checkpoint import CheckpointError
    if os.environ.get(DIE_WITH_PARENT_ENV) == '1':
        die_with_parent()
    return cli.run_cli(main, argv, (CheckpointError, ))


def parser(description):
    return add_common_args(argparse.ArgumentParser(description=description))
