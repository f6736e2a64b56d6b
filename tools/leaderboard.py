"""Build the leaderboard (Markdown, CSV, HTML, PNG) from benchmark and mmengine work dirs.

Example::

    python tools/leaderboard.py work_dirs/benchmark work_dirs/mae_upernet --out leaderboard \
        --baseline 'MAE ViT-B' --published \
        --override 'work_dirs/mae_upernet:method=MAE,backbone=ViT-B,pretrain_epochs=1600'
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout

from mixedconv.cli import check_writable_folder, run_cli  # noqa: E402
from mixedconv.leaderboard import SummaryError, make_leaderboard  # noqa: E402

# bad input, and a leaderboard that cannot be written (a file as --out, a full disk: the
# previous files are then unchanged)
USER_ERRORS = (SummaryError, ValueError, OSError)


def parse_override(text):
    """``'DIR:key=value,key=value'`` -> ``(DIR, {key: value})`` (``pretrain_epochs`` as int)."""
    directory, sep, assignments = text.rpartition(':')
    fields = {}
    for item in assignments.split(','):
        key, eq, value = item.partition('=')
        if not (sep and eq and key.strip()):
            raise argparse.ArgumentTypeError(
                f'bad override {text!r}; expected DIR:key=value[,key=value...], e.g. '
                "'work_dirs/x:method=MAE,backbone=ViT-B,pretrain_epochs=1600'")
        value = value.strip()
        fields[key.strip()] = int(value) if key.strip() == 'pretrain_epochs' else value
    return directory, fields


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('work_dirs', nargs='+', metavar='WORK_DIR',
                        help='benchmark work dirs, plain mmengine work dirs, or folders of them')
    parser.add_argument('--out', required=True, help='folder for the leaderboard files')
    parser.add_argument('--baseline', help="row for the deltas, e.g. 'MAE ViT-B' or "
                        "'MAE ViT-B 1600e' or 'MAE ViT-B (published)'")
    parser.add_argument('--published', action='store_true',
                        help='add the published reference numbers, marked as published')
    parser.add_argument('--override', action='append', type=parse_override, default=[],
                        metavar='DIR:key=value,...',
                        help='set method/backbone/pretrain_epochs/task for results under DIR')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    check_writable_folder(args.out, '--out')
    paths = make_leaderboard(args.work_dirs, args.out, args.baseline, args.published,
                             dict(args.override))
    print('Leaderboard written:')
    for ext, path in paths.items():
        print(f'  {ext:4s} {path}')


if __name__ == '__main__':
    run_cli(main, user_errors=USER_ERRORS)
