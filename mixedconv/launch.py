"""Config handling shared by tools/train.py and tools/test.py, for mmpretrain, mmdet and mmseg
configs alike: the config's ``default_scope`` decides which library's registries build it."""
import argparse
import os
import os.path as osp

import torch
from mmengine.config import Config, DictAction
from mmengine.logging import print_log

LAUNCHERS = ('none', 'pytorch', 'slurm', 'mpi')


def add_common_args(parser):
    """Arguments both tools take."""
    parser.add_argument('config', help='config file (mmpretrain, mmdet or mmseg)')
    parser.add_argument('--work-dir', help='where logs and checkpoints go '
                        '(default: ./work_dirs/<config name>)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                        help='override config keys, e.g. train_cfg.max_iters=10')
    parser.add_argument('--launcher', choices=LAUNCHERS, default='none')
    # torchrun sets LOCAL_RANK; older launchers pass --local_rank / --local-rank
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    return parser


def load_config(args):
    """Read the config, apply ``--cfg-options``, ``--work-dir`` and ``--launcher``."""
    if not osp.isfile(args.config):
        raise FileNotFoundError(f'config file not found: {args.config}')
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    cfg = Config.fromfile(args.config)
    cfg.merge_from_dict(args.cfg_options)
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    _use_gloo_without_cuda(cfg)
    return cfg


def _use_gloo_without_cuda(cfg):
    """NCCL needs GPUs; a distributed run on a CPU-only machine uses gloo (and says so)."""
    if cfg.launcher == 'none' or torch.cuda.is_available():
        return
    dist_cfg = cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})
    if dist_cfg.get('backend', 'nccl') == 'nccl':
        print_log('no CUDA device: distributed backend nccl -> gloo', logger='current')
        dist_cfg['backend'] = 'gloo'


def build_runner(cfg):
    """``Runner.from_cfg``, or the config's own ``runner_type``."""
    import mixedconv  # noqa: F401  (registers components and the safe checkpoint loader)
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    if 'runner_type' in cfg:
        return RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)


def parser(description):
    return add_common_args(argparse.ArgumentParser(description=description))
