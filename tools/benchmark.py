"""From checkpoints to a leaderboard.

Evaluate pretrained checkpoints (ours, official ConvMAE, MAE, timm-style ViTs):

    python tools/benchmark.py CKPT [CKPT ...] --tasks coco-maskrcnn,ade20k-upernet \\
        [--data-root data] [--work-dir work_dirs/benchmark] [--launcher pytorch --gpus 8]

Or run the whole chain, pretraining included; without --data-root this is the embedded
default benchmark (generated COCO/ADE20K/ImageNet-format data, tiny models, minutes on a CPU):

    python tools/benchmark.py --pretrain convmae,mixedae,mae [--data-root data]

Each task trains and evaluates in its own process; results go to
<work-dir>/transfer/<run>/<task>/summary.json and the leaderboard to <work-dir>/leaderboard/.
Finished tasks are not rerun; failed or interrupted ones resume. The exit code is 0 only
when every task finished, 1 when one failed, 2 for a usage or input error.
"""
import argparse
import os.path as osp
import signal
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout

from mixedconv.benchmark import PRETRAIN_CONFIGS, TASK_CONFIGS, Launch  # noqa: E402
from mixedconv.benchmark.checkpoints import parse_arch  # noqa: E402
from mixedconv.benchmark.recipes import parse_names  # noqa: E402
from mixedconv.benchmark.runner import (BenchmarkBusy, TaskMismatch, run_benchmark,  # noqa: E402
                                        run_chain, write_leaderboard)
from mixedconv.checkpoint import CheckpointError  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument('checkpoints', nargs='*', help='pretrained checkpoints to evaluate')
    p.add_argument('--pretrain',
                   help=f'pretrain these methods first ({",".join(PRETRAIN_CONFIGS)})')
    p.add_argument('--tasks', default='coco-maskrcnn,ade20k-upernet',
                   help=f'comma-separated, from {",".join(TASK_CONFIGS)}')
    p.add_argument('--data-root', help='folder with coco/, ade/ADEChallengeData2016/, imagenet/ '
                   '(default: the configs\' data/ paths; with --pretrain: generated data)')
    p.add_argument('--work-dir', default='work_dirs/benchmark')
    p.add_argument('--method', help='pretraining method of the checkpoints, when they do not say')
    p.add_argument('--arch', help='backbone of the checkpoints instead of detecting it: ConvViT or '
                   'PlainViT, optionally with an arch (PlainViT:large, ConvViT:b)')
    p.add_argument('--baseline', default='MAE', help='method the leaderboard compares against')
    p.add_argument('--launcher', default='none', choices=['none', 'pytorch', 'slurm'])
    p.add_argument('--gpus', type=int, default=1, help='processes per task (pytorch, slurm)')
    p.add_argument('--partition', help='Slurm partition')
    args = p.parse_args(argv)
    if not args.checkpoints and not args.pretrain:
        p.error('give checkpoints to evaluate, or --pretrain METHODS')
    return args


def _stop_on_sigterm(signum, frame):
    raise KeyboardInterrupt(f'signal {signum}')


def main(argv=None):
    """Exit codes: 0 when every requested task finished, 1 when any failed (the leaderboard
    is still written), 2 on a usage or input error, 130 when interrupted."""
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)  # record 'interrupted', stop the trainer
    try:
        tasks = parse_names(args.tasks, list(TASK_CONFIGS), 'task')
        launch = Launch(args.launcher, args.gpus, args.partition)
        if args.arch:
            parse_arch(args.arch)
        for path in args.checkpoints:
            if not osp.isfile(path):
                raise FileNotFoundError(f'checkpoint not found: {path}')
        records = []
        if args.pretrain:
            methods = parse_names(args.pretrain, list(PRETRAIN_CONFIGS), 'pretraining method')
            files, records = run_chain(methods, tasks, args.work_dir, args.data_root, launch,
                                       args.baseline, with_records=True)
        if args.checkpoints:
            records = run_benchmark(args.checkpoints, tasks, args.work_dir, args.data_root,
                                    launch=launch, method=args.method, arch=args.arch)
            files = write_leaderboard(records, args.work_dir, args.baseline)
    except (ValueError, FileNotFoundError, CheckpointError, BenchmarkBusy,
            TaskMismatch) as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    except RuntimeError as err:  # a pretraining run failed: no checkpoint to benchmark
        print(f'error: {err}', file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print('interrupted; the summaries say so, and a rerun resumes', file=sys.stderr)
        return 130
    print('\nleaderboard:')
    for kind, path in files.items():
        print(f'  {kind:<8} {path}')
    with open(files['md']) as f:
        print('\n' + f.read())
    failed = [r for r in records if r.status != 'done']
    for record in failed:
        print(f'\n{record.task} {record.status} for {record.checkpoint} ({record.config}):\n'
              f'{record.error}', file=sys.stderr)
    if failed:
        print(f'\nerror: {len(failed)} of {len(records)} tasks did not finish', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
