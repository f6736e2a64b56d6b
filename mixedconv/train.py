"""Train any mmpretrain, mmdet or mmseg config that uses mixedconv components.

    python -m mixedconv.train CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
                                     [--cfg-options k=v ...] [--launcher none|pytorch|slurm]

``CONFIG`` is a path or ``mixedconv::convmae/<name>.py`` (the configs shipped with the
package). ``tools/train.py`` runs the same from a checkout.
"""
import os.path as osp

from .data.layout import check_dataset_paths
from .dropin import check_config
from .launch import (build_runner, enable_amp, load_config, parser,
                     remove_stale_checkpoint_temporaries, run_cli)


def parse_args(argv=None):
    p = parser('Train a model')
    p.add_argument('--resume', nargs='?', const='auto', default=None,
                   help='resume from CKPT, or from the latest checkpoint in the work dir '
                   'when no path is given')
    p.add_argument('--amp', action='store_true', help='mixed precision (AmpOptimWrapper)')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    cfg = load_config(args)
    if args.amp:
        enable_amp(cfg)
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        if not osp.isfile(args.resume):
            raise FileNotFoundError(f'--resume checkpoint not found: {args.resume}')
        cfg.resume, cfg.load_from = True, args.resume
    check_dataset_paths(cfg, ('train', 'val'))
    check_config(cfg)
    remove_stale_checkpoint_temporaries(cfg)
    build_runner(cfg).train()


if __name__ == '__main__':
    run_cli(main)
