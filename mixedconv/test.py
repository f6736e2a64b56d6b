"""Evaluate a checkpoint with any mmpretrain, mmdet or mmseg config.

    python -m mixedconv.test CONFIG CHECKPOINT [--work-dir DIR] [--cfg-options k=v ...]
                                               [--launcher none|pytorch|slurm]

``CONFIG`` is a path or ``mixedconv::<dir>/<name>.py``. ``tools/test.py`` runs the same from
a checkout.
"""
import os.path as osp

from .data.layout import check_dataset_paths
from .dropin import check_config
from .launch import build_runner, check_loop_settings, load_config, parser, run_cli


def main(argv=None):
    p = parser('Evaluate a checkpoint')
    p.add_argument('checkpoint', help='checkpoint to evaluate')
    args = p.parse_args(argv)
    if not osp.isfile(args.checkpoint):
        raise FileNotFoundError(f'checkpoint not found: {args.checkpoint}')
    cfg = load_config(args)
    cfg.load_from = args.checkpoint
    check_loop_settings(cfg, ('test',))
    check_dataset_paths(cfg, ('test',))
    check_config(cfg)
    return build_runner(cfg).test()


if __name__ == '__main__':
    run_cli(main)
