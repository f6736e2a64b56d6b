"""Evaluate a checkpoint with any mmpretrain, mmdet or mmseg config.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--cfg-options k=v ...]
                                           [--launcher none|pytorch|slurm]
"""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout

from mixedconv.data.layout import check_dataset_paths  # noqa: E402
from mixedconv.launch import build_runner, load_config, parser, run_cli  # noqa: E402


def main(argv=None):
    p = parser('Evaluate a checkpoint')
    p.add_argument('checkpoint', help='checkpoint to evaluate')
    args = p.parse_args(argv)
    if not osp.isfile(args.checkpoint):
        raise FileNotFoundError(f'checkpoint not found: {args.checkpoint}')
    cfg = load_config(args)
    cfg.load_from = args.checkpoint
    check_dataset_paths(cfg, ('test',))
    return build_runner(cfg).test()


if __name__ == '__main__':
    run_cli(main)
