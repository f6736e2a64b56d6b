"""Train any mmpretrain, mmdet or mmseg config that uses mixedconv components.

    python -m mixedconv.train CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
                                     [--cfg-options k=v ...] [--launcher none|pytorch|slurm]

``CONFIG`` is a path or ``mixedconv::convmae/<name>.py`` (the configs shipped with the
package). ``tools/train.py`` runs the same from a checkout.
"""
import os.path as osp

from .data.layout import check_dataset_paths
from .dropin import check_config
from .launch import (build_runner, check_loop_settings, enable_amp, load_config, parser,
                     remove_stale_checkpoint_temporaries, run_cli)


def parse_args(argv=None):
    p = parser('Train a model')
    p.add_argument('--resume', nargs='?', const='auto', default=None,
                   help='resume from CKPT, or from the latest checkpoint in the work dir '
                   'when no path is given')
    p.add_argument('--amp', action='store_true', help='mixed precision (AmpOptimWrapper)')
    return p.parse_args(argv)


def check_resumable(path):
    """Raise when ``path`` is not a checkpoint an mmengine ``Runner`` can resume from: one
    with ``meta`` (its epoch and iteration), ``state_dict`` and ``message_hub``, as
    ``Runner.save_checkpoint`` writes. Weights alone (a state dict, a converted or exported
    encoder, another trainer's checkpoint) are loaded with ``load_from`` instead.

    Raises:
        FileNotFoundError, CheckpointError: the file is missing, refused or corrupt, or is
            not a Runner checkpoint (the message names what it lacks and the fix).
    """
    from .checkpoint import CheckpointError, safe_load
    checkpoint = safe_load(path)
    content = checkpoint if isinstance(checkpoint, dict) else {}
    meta = content.get('meta')
    lacks = []
    if not (isinstance(meta, dict) and all(
            isinstance(meta.get(k), int) for k in ('epoch', 'iter'))):
        lacks.append("'meta' with the epoch and iteration")
    lacks += [f"'{key}'" for key in ('state_dict', 'message_hub')
              if not isinstance(content.get(key), dict)]
    if lacks:
        keys = ', '.join(map(str, list(content)[:8])) or type(checkpoint).__name__
        raise CheckpointError(
            f'--resume {path}: not a checkpoint that an mmengine Runner wrote (it has no '
            f'{", no ".join(lacks)}; its keys: {keys}). To train from its weights, pass '
            f'--cfg-options load_from={path} (or set the backbone\'s init_cfg) instead of '
            '--resume; resume from the iter_N.pth or epoch_N.pth of a run')


def main(argv=None):
    args = parse_args(argv)
    cfg = load_config(args)
    if args.amp:
        enable_amp(cfg)
    check_loop_settings(cfg, ('train', 'val'))
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
        from mmengine.runner import find_latest_checkpoint
        latest = find_latest_checkpoint(cfg.work_dir) if osp.isdir(cfg.work_dir) else None
        if latest is not None:
            check_resumable(latest)
    elif args.resume is not None:
        if not osp.isfile(args.resume):
            raise FileNotFoundError(f'--resume checkpoint not found: {args.resume}')
        check_resumable(args.resume)
        cfg.resume, cfg.load_from = True, args.resume
    check_dataset_paths(cfg, ('train', 'val'))
    check_config(cfg)
    remove_stale_checkpoint_temporaries(cfg)
    build_runner(cfg).train()


if __name__ == '__main__':
    run_cli(main)
