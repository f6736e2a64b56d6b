"""Measure pretraining step time, memory and FLOP rate of MAE, ConvMAE and MixedAE, the
detection-size inference of the ConvViT and PlainViT backbones, and one training step
(forward + backward) of every transfer backbone (FPN, SFP / ViTDet and UperNet recipes), in
one run.

Examples::

    # Base sizes, the figures the README reports
    python tools/analysis/speed.py --out work_dirs/speed
    python tools/analysis/speed.py --arch tiny --repeats 2 --out /tmp/speed   # a quick check
    # the transfer training steps only, the 1024 recipes at 512 (minutes on a small CPU)
    python tools/analysis/speed.py --rows convvit_fpn_train convvit_sfp_train \
        plainvit_sfp_train convvit_seg_train plainvit_seg_train --det-size 512 --out /tmp/s

Writes ``speed.json`` and ``speed.md`` into ``--out`` and prints the table. Methods (timing,
FLOP counting, matmul ceiling, peak memory) are described in ``mixedconv/speed/__init__.py``.
"""
import argparse
import os.path as osp
import sys

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, REPO)  # run from a checkout

from mixedconv.speed import (Settings, measure_speed, profile_rows, resolve_device,  # noqa: E402
                             workloads, write_outputs)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--arch', choices=('base', 'tiny'), default='base',
                        help='Base-size models as in the configs, or tiny ones (minutes on CPU)')
    parser.add_argument('--batch', type=int, default=8, help='pretraining batch (multiple of 4)')
    parser.add_argument('--img-size', type=int, default=224, help='pretraining image side')
    parser.add_argument('--det-size', type=int, default=1024,
                        help='image side of the detection backbone rows, inference and '
                             'training step (batch 1; 512 shortens a CPU run)')
    parser.add_argument('--seg-size', type=int, default=512,
                        help='image side of the UperNet backbone training-step rows (batch 1)')
    parser.add_argument('--repeats', type=int, default=3, help='timed rounds (median)')
    parser.add_argument('--warmup', type=int, default=3,
                        help='untimed rounds first (the dense ConvMAE step settles after 3)')
    parser.add_argument('--device', choices=('auto', 'cpu', 'cuda'), default='auto')
    parser.add_argument('--rows', nargs='+', metavar='ROW',
                        choices=[w.key for w in workloads('base')],
                        help='measure only these rows (default: all)')
    parser.add_argument('--profile', action='store_true',
                        help='also write a torch.profiler table of one step per row')
    parser.add_argument('--out', required=True, help='folder for speed.json and speed.md')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        settings = Settings(arch=args.arch, batch=args.batch, img_size=args.img_size,
                            det_size=args.det_size, seg_size=args.seg_size,
                            device=resolve_device(args.device))
        result = measure_speed(settings, repeats=args.repeats, warmup=args.warmup,
                               keys=args.rows)
    except ValueError as err:
        raise SystemExit(f'error: {err}')
    json_path, md_path = write_outputs(result, args.out)
    if args.profile:
        profile_rows(settings, [row['key'] for row in result['rows']], args.out)
    print(md_path.read_text())
    print(f'wrote {json_path} and {md_path}')


if __name__ == '__main__':
    main()
