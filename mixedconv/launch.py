"""Config handling shared by tools/train.py and tools/test.py, for mmpretrain, mmdet and mmseg
configs alike: the config's ``default_scope`` decides which library's registries build it."""
import argparse
import os
import os.path as osp
import signal

import torch
import torch.distributed as dist
from mmengine.config import Config, DictAction
from mmengine.logging import print_log

from .cli import check_writable_folder
from .config_files import config_path, register_config_scope

LAUNCHERS = ('none', 'pytorch', 'slurm', 'mpi')
# what each launcher's starter sets in every process it starts (mmengine's init_dist reads it)
LAUNCH_ENV = {
    'pytorch': ('torchrun', ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT'),
                'bash tools/dist_train.sh CONFIG NPROC'),
    'slurm': ('srun', ('SLURM_PROCID', 'SLURM_NTASKS', 'SLURM_NODELIST'),
              'GPUS=N bash tools/slurm_train.sh PARTITION JOB_NAME CONFIG'),
    'mpi': ('mpirun', ('OMPI_COMM_WORLD_RANK', 'OMPI_COMM_WORLD_LOCAL_RANK',
                       'OMPI_COMM_WORLD_SIZE'), 'mpirun -np N python tools/train.py CONFIG'),
}


class UsageError(ValueError):
    """Arguments or config settings that cannot make a run; the message names them and the
    fix."""


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
    check_launcher(args.launcher)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    cfg = Config.fromfile(path)
    cfg.merge_from_dict(args.cfg_options)
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    check_writable_folder(cfg.work_dir, '--work-dir' if args.work_dir is not None else 'work_dir')
    _use_gloo_without_cuda(cfg)
    return cfg


def check_launcher(launcher, env=None, gpus=None):
    """Raise :class:`UsageError` when this process cannot run under ``launcher``: a
    distributed launcher whose starter did not start it, ``none`` in a process that torchrun
    started as one of several, or a process whose local rank has no GPU.

    Args:
        launcher (str): one of :data:`LAUNCHERS`.
        env (Mapping, optional): the environment (default ``os.environ``).
        gpus (int, optional): GPUs of this machine (default: torch's count where CUDA is
            available, else no limit).
    """
    env = os.environ if env is None else env
    if gpus is None and torch.cuda.is_available():
        gpus = torch.cuda.device_count()
    if launcher == 'none':
        world = env.get('WORLD_SIZE', '1')
        if world.isdigit() and int(world) > 1:
            raise UsageError(
                f'--launcher none: this process is one of {world} that torchrun started; '
                'each would train alone into the same work dir. Pass --launcher pytorch '
                '(tools/dist_train.sh does), or start one process without torchrun')
        return
    starter, names, command = LAUNCH_ENV[launcher]
    missing = [name for name in names if name not in env]
    if missing:
        raise UsageError(
            f'--launcher {launcher}: this process was not started by {starter} '
            f'({", ".join(missing)} not set). Start the processes with {command}, or leave '
            'out --launcher to train in one process')
    local = env.get('LOCAL_RANK' if launcher == 'pytorch' else 'OMPI_COMM_WORLD_LOCAL_RANK')
    if launcher != 'slurm' and gpus is not None and local and local.isdigit() and \
            int(local) >= gpus:
        raise UsageError(
            f'--launcher {launcher}: this is process {local} of its machine, which has '
            f'{gpus} GPU{"s" * (gpus != 1)}; start at most {gpus} processes per machine')


def check_process_count(launcher, nproc):
    """Raise :class:`UsageError` when ``nproc`` processes per task (the benchmark's
    ``--gpus``) cannot run under ``launcher``. A count above the GPUs of a machine is
    refused by each process (:func:`check_launcher`)."""
    if nproc < 1:
        raise UsageError(f'--gpus {nproc}: a run needs at least one process')
    if launcher == 'none' and nproc > 1:
        raise UsageError(f'--gpus {nproc} needs --launcher pytorch or slurm; with --launcher '
                         'none one process trains')


def _positive_int(value):
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def check_loop_settings(cfg, splits=('train', 'val', 'test')):
    """Raise :class:`UsageError` for loop settings with which a run trains or evaluates
    nothing, or cannot start: ``train_cfg.max_iters``, ``max_epochs`` and ``val_interval``
    and the splits' ``batch_size`` must be positive integers (mmengine accepts
    ``max_iters=-5`` and ends at once)."""
    settings = []
    if 'train' in splits:
        train_cfg = cfg.get('train_cfg') or {}
        settings += [(f'train_cfg.{key}', train_cfg[key])
                     for key in ('max_iters', 'max_epochs', 'val_interval') if key in train_cfg]
    for split in splits:
        loader = cfg.get(f'{split}_dataloader')
        if loader and 'batch_size' in loader:
            settings.append((f'{split}_dataloader.batch_size', loader['batch_size']))
    for key, value in settings:
        if not _positive_int(value):
            raise UsageError(f'{key} = {value!r}: must be a positive integer; set it with '
                             f'--cfg-options {key}=N')


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
    """``Runner.from_cfg``, or the config's own ``runner_type``. Whichever it is, it loads
    checkpoints through mmengine's loader, which :func:`mixedconv.register_all_modules`
    keeps from handing stored config text to ``Config.fromstring``
    (:func:`~mixedconv.config_data.guard_checkpoint_configs`), and each dataloader it builds
    is checked before the first iteration
    (:func:`~mixedconv.data.checks.checked_dataloader_builder`). A ``Runner`` loads
    ``load_from`` whole (:func:`whole_model_loader`)."""
    from mixedconv import register_all_modules
    register_all_modules()  # components, the safe checkpoint loader
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    from .data.checks import checked_dataloader_builder
    _init_cpu_process_group(cfg)
    runner = RUNNERS.build(cfg) if 'runner_type' in cfg else Runner.from_cfg(cfg)
    if hasattr(runner, 'build_dataloader'):
        runner.build_dataloader = checked_dataloader_builder(runner.build_dataloader, cfg)
    if type(runner).load_checkpoint is Runner.load_checkpoint:
        runner.load_checkpoint = whole_model_loader(runner)
    return runner


def whole_model_loader(runner):
    """``runner.load_checkpoint`` (which loads ``load_from``) that loads the file whole:
    a detectron2 or mmseg 0.x release or an mm checkpoint is converted to the model's names
    (:func:`mixedconv.checkpoint.load_whole_checkpoint`), and a tensor left at init, a file
    tensor with no place or one of another shape is a ``CheckpointError`` naming them, where
    mmengine's non-strict load only logs. The file is read by mmengine's reader (any scheme,
    weights-only, stored config texts removed) and ``after_load_checkpoint`` hooks see it as
    they do in mmengine."""
    from mmengine.model import is_model_wrapper
    from mmengine.runner.checkpoint import _load_checkpoint
    from .checkpoint import load_whole_checkpoint

    def load_checkpoint(filename, map_location='cpu', strict=False, revise_keys=None):
        checkpoint = _load_checkpoint(filename, map_location=map_location)
        runner.call_hook('after_load_checkpoint', checkpoint=checkpoint)
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        load_whole_checkpoint(model, checkpoint, filename, logger=runner.logger)
        runner._has_loaded = True
        runner.logger.info(f'Load checkpoint from {filename}')
        return checkpoint

    return load_checkpoint


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
    from .data import DatasetError
    if os.environ.get(DIE_WITH_PARENT_ENV) == '1':
        die_with_parent()
    return cli.run_cli(main, argv, (CheckpointError, DatasetError, UsageError))


def parser(description):
    return add_common_args(argparse.ArgumentParser(description=description))
