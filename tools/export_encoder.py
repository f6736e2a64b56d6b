"""Write the encoder of a checkpoint (ConvMAE, MixedAE, mmpretrain MAE pretraining runs, the
official MAE/ConvMAE releases, detectron2 or mmseg transfer checkpoints) as
``{'model': state_dict}`` under its own names, for ConvViT / PlainViT or the official
fine-tuning code.

    python tools/export_encoder.py work_dirs/convmae/epoch_1600.pth convmae_encoder.pth

tools/convert_checkpoint.py writes our names instead and reports every tensor. User errors
print one ``error: ...`` line and exit with code 2.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout

from mixedconv.checkpoint import CheckpointError, export_encoder  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('src', help='checkpoint to read')
    p.add_argument('dst', help='encoder checkpoint to write')
    p.add_argument('--prefix', default=None,
                   help='encoder key prefix in src (default: found; backbone.bottom_up., '
                   'backbone.net., backbone. or none, then without the official decoders '
                   'and heads)')
    args = p.parse_args(argv)
    try:
        state_dict = export_encoder(args.src, args.dst, args.prefix)
    except (FileNotFoundError, IsADirectoryError, CheckpointError) as err:
        print(f'error: {err}'.splitlines()[0], file=sys.stderr)
        return 2
    print(f'wrote {len(state_dict)} encoder tensors to {args.dst}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
