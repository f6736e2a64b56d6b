"""From checkpoints to a leaderboard.

Evaluate pretrained checkpoints (ours, official ConvMAE, MAE, timm-style ViTs):

    python tools/benchmark.py CKPT [CKPT ...] --tasks coco-maskrcnn,ade20k-upernet \\
        [--data-root data] [--work-dir work_dirs/benchmark] [--launcher pytorch --gpus 8]

Without --data-root the checkpoints go through the recipes at a reduced size on generated
COCO/ADE20K/ImageNet-format data: a check on a CPU, before GPU hours, that the whole chain
runs (its numbers are not results, and the leaderboard says so). The recipes train with
mixed precision; on a machine without CUDA, --no-amp trains them in float32.

Or run the whole chain, pretraining included; without --data-root this is the embedded
default benchmark (generated data, tiny models, minutes on a CPU):

    python tools/benchmark.py --pretrain convmae,mixedae,mae [--data-root data]

Or evaluate released fine-tuned detectors and segmentors as they are (a detectron2 Mask
R-CNN model_final.pth, an mmseg 0.x UperNet): each is evaluated with the test loop of the
recipe of --tasks it loads into whole (or --config), and its leaderboard row is marked
"released weights, evaluated here", beside the published number, never compared with models
trained here:

    python tools/benchmark.py --finetuned model_final.pth [--data-root data] [--method MAE]

Each task trains and evaluates in its own process; results go to
<work-dir>/transfer/<run>/<task>/summary.json and the leaderboard to <work-dir>/leaderboard/.
Finished tasks are not rerun; failed or interrupted ones resume. The exit code is 0 only
when every task finished, 1 when one failed, 2 for a usage or input error.
"""
import argparse
import os
import os.path as osp
import signal
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout

from mixedconv.benchmark import PRETRAIN_CONFIGS, TASK_CONFIGS, Launch  # noqa: E402
from mixedconv.benchmark.checkpoints import CheckpointError, parse_arch  # noqa: E402
from mixedconv.benchmark.recipes import parse_names  # noqa: E402
from mixedconv.benchmark.released import evaluate_released  # noqa: E402
from mixedconv.benchmark.runner import (EMBEDDED, BenchmarkBusy, BenchmarkRun,  # noqa: E402
                                        TaskMismatch, run_benchmark, run_chain,
                                        try_checkpoints, write_leaderboard)
from mixedconv.benchmark.tiny import SIZE  # noqa: E402
from mixedconv.cli import check_writable_folder, run_cli  # noqa: E402
from mixedconv.families import MAE  # noqa: E402

USER_ERRORS = (ValueError, CheckpointError, BenchmarkBusy, TaskMismatch, NotADirectoryError,
               PermissionError)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument('checkpoints', nargs='*', help='pretrained checkpoints to evaluate')
    p.add_argument('--pretrain',
                   help=f'pretrain these methods first ({",".join(PRETRAIN_CONFIGS)})')
    p.add_argument('--tasks', default='coco-maskrcnn,ade20k-upernet',
                   help=f'comma-separated, from {",".join(TASK_CONFIGS)}')
    p.add_argument('--data-root', help='folder with coco/, ade/ADEChallengeData2016/, imagenet/: '
                   'the real recipes run on it (default: generated data, the recipes at a '
                   'reduced size)')
    p.add_argument('--work-dir', default='work_dirs/benchmark')
    p.add_argument('--method', help='pretraining method of the checkpoints, when they do not say')
    p.add_argument('--arch', help='backbone of the checkpoints instead of detecting it: ConvViT or '
                   'PlainViT, optionally with an arch (PlainViT:large, ConvViT:b)')
    p.add_argument('--baseline', default=MAE.name,
                   help='method the leaderboard compares against')
    p.add_argument('--launcher', default='none', choices=['none', 'pytorch', 'slurm'])
    p.add_argument('--gpus', type=int, default=1, help='processes per task (pytorch, slurm)')
    p.add_argument('--partition', help='Slurm partition')
    p.add_argument('--finetuned', nargs='+', metavar='FILE',
                   help='released fine-tuned detectors / segmentors to evaluate as they are')
    p.add_argument('--config', help='with --finetuned: the recipe to evaluate with (a path or '
                   'mixedconv::<dir>/<file>.py) instead of the --tasks recipe the file fits')
    p.add_argument('--no-amp', action='store_true',
                   help='train in float32 where a recipe uses mixed precision (for a machine '
                   'without CUDA; the numbers are then not the recipe\'s)')
    args = p.parse_args(argv)
    if args.finetuned and (args.checkpoints or args.pretrain):
        p.error('--finetuned evaluates released models; run pretrained checkpoints and '
                '--pretrain in another call with the same --work-dir (one leaderboard shows '
                'both)')
    if args.config and not args.finetuned:
        p.error('--config goes with --finetuned')
    if not args.checkpoints and not args.pretrain and not args.finetuned:
        p.error('give checkpoints to evaluate, --pretrain METHODS or --finetuned FILES')
    return args


def _stop_on_sigterm(signum, frame):
    raise KeyboardInterrupt(f'signal {signum}')


def main(argv=None):
    """Exit codes: 0 when every requested task finished, 1 when any failed (the leaderboard
    is still written), 2 on a usage or input error, 130 when interrupted."""
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)  # record 'interrupted', stop the trainer
    tasks = parse_names(args.tasks, list(TASK_CONFIGS), 'task')
    launch = Launch(args.launcher, args.gpus, args.partition)
    if args.arch:
        parse_arch(args.arch)
    for path in args.checkpoints + (args.finetuned or []):
        if osp.isdir(path):
            raise IsADirectoryError(f'checkpoint {path} is a folder; give the checkpoint file '
                                    '(.pth) in it')
        if not osp.isfile(path):
            raise FileNotFoundError(f'checkpoint not found: {path}')
    methods = parse_names(args.pretrain, list(PRETRAIN_CONFIGS), 'pretraining method') \
        if args.pretrain else []
    check_writable_folder(args.work_dir, '--work-dir')
    amp = not args.no_amp
    records = []
    try:
        if args.finetuned:
            records = evaluate_released(args.finetuned, tasks, args.work_dir, args.data_root,
                                        launch, args.method, args.config)
            run = BenchmarkRun(records, write_leaderboard(records, args.work_dir,
                                                          args.baseline))
        if methods:
            run = run_chain(methods, tasks, args.work_dir, args.data_root, launch,
                            args.baseline, amp=amp)
            records = run.records
        if args.checkpoints and args.data_root:
            records += run_benchmark(args.checkpoints, tasks, args.work_dir, args.data_root,
                                     launch=launch, method=args.method, arch=args.arch,
                                     amp=amp)
            run = BenchmarkRun(records, write_leaderboard(records, args.work_dir,
                                                          args.baseline))
        elif args.checkpoints:
            print(f'No --data-root: the recipes run at a reduced size ({SIZE} px images, '
                  f'{EMBEDDED["transfer_iters"]} training iterations, narrow heads, each '
                  'checkpoint\'s own backbone) on generated data in '
                  f'{osp.join(args.work_dir, "data")}. This checks that the checkpoints go '
                  'through the whole chain on this machine; the numbers are not results. '
                  'Give --data-root for the real recipes.', flush=True)
            tried = try_checkpoints(args.checkpoints, tasks, args.work_dir, launch,
                                    args.method, args.arch, args.baseline)
            run = BenchmarkRun(records + tried.records, tried.leaderboard)
    except RuntimeError as err:  # a pretraining run failed: no checkpoint to benchmark
        if isinstance(err, USER_ERRORS):
            raise
        print(f'error: {err}', file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print('interrupted; the summaries say so, and a rerun resumes', file=sys.stderr)
        return 130
    return report(run)


def report(run):
    """Print where the leaderboard is, the table, and why unfinished tasks did not finish;
    the exit code."""
    print('\nleaderboard:')
    for kind, path in run.leaderboard.items():
        print(f'  {kind:<8} {path}')
    with open(run.leaderboard['md']) as f:
        print('\n' + f.read())
    for record in run.unfinished:
        print(f'\n{record.task} {record.status} for {record.checkpoint} ({record.config}):\n'
              f'{record.error}', file=sys.stderr)
    if run.unfinished:
        print(f'\nerror: {len(run.unfinished)} of {len(run.records)} tasks did not finish',
              file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(run_cli(main, user_errors=USER_ERRORS))
