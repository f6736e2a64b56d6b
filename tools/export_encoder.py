"""Turn a pretraining checkpoint (ConvMAE, MixedAE or mmpretrain MAE) into an encoder
checkpoint ``{'model': state_dict}`` for ConvViT / PlainViT or the official fine-tuning code.

    python tools/export_encoder.py work_dirs/convmae/epoch_1600.pth convmae_encoder.pth
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout

from mixedconv.checkpoint import export_encoder  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('src', help='pretraining checkpoint')
    p.add_argument('dst', help='encoder checkpoint to write')
    p.add_argument('--prefix', default='backbone.', help='encoder key prefix in src')
    args = p.parse_args(argv)
    state_dict = export_encoder(args.src, args.dst, args.prefix)
    print(f'wrote {len(state_dict)} encoder tensors to {args.dst}')


if __name__ == '__main__':
    main()
