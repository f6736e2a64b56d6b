"""Convert a downloaded or trained checkpoint into ``{'state_dict': ...}`` with mixedconv's
backbone names, and say what matched, what was renamed and what was dropped.

    python tools/convert_checkpoint.py mae_pretrain_vit_base.pth vit-base_mae.pth
    python tools/convert_checkpoint.py model_final.pth convmae-det.pth --arch ConvViT

With ``--whole CONFIG`` the whole released detector or segmentor (detectron2 Mask R-CNN,
mmseg 0.x UperNet) is converted into the model CONFIG builds, every tensor accounted for:

    python tools/convert_checkpoint.py --whole mixedconv::mae/mask-rcnn_vit-base-p16_sfp_16xb4-amp-lsj-1024-100e_coco.py \
        model_final_61ccd1.pkl mask-rcnn_vit-base_vitdet.pth

Accepted layouts and what is kept: docs/checkpoints.md. The file is read weights-only (a
pickle that would run code is refused). User errors print one ``error: ...`` line and exit
with code 2.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout

from mixedconv.checkpoint import CheckpointError, convert_checkpoint  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('src', help='checkpoint to read (any layout of docs/checkpoints.md)')
    p.add_argument('dst', help="file to write: {'state_dict': backbone tensors}")
    p.add_argument('--arch', help='ConvViT or PlainViT, optionally :ARCH (PlainViT:large); '
                   'checked against the tensors, which decide otherwise')
    p.add_argument('--prefix', help='key prefix of the encoder in SRC (default: found; '
                   'backbone.bottom_up., backbone.net., backbone. or none)')
    p.add_argument('--keep-extra', action='store_true',
                   help="keep the tensors outside the backbone (decoders, heads, necks) under "
                   "'extra', with their names in SRC (default: dropped)")
    p.add_argument('--whole', metavar='CONFIG',
                   help='convert the whole model (backbone, neck, heads) into the model this '
                   'mmdet / mmseg config builds (a path or mixedconv::<dir>/<file>.py)')
    p.add_argument('--full', action='store_true', help='list every name in the report')
    return p.parse_args(argv)


def convert_whole(args):
    from mixedconv.benchmark.released import build_recipe_model
    from mixedconv.checkpoint import convert_whole_checkpoint
    report = convert_whole_checkpoint(args.src, args.dst, build_recipe_model(args.whole)[1])
    print(report.summary(limit=0 if args.full else 8))
    print(f"wrote {args.dst}: {report.loaded} tensors under 'state_dict'")
    return 0


def main(argv=None):
    args = parse_args(argv)
    if args.whole and (args.arch or args.prefix or args.keep_extra):
        print('error: --whole converts the model CONFIG builds; --arch, --prefix and '
              '--keep-extra are for backbone conversions', file=sys.stderr)
        return 2
    try:
        if args.whole:
            return convert_whole(args)
        conversion = convert_checkpoint(args.src, args.dst, arch=args.arch, prefix=args.prefix,
                                        keep_extra=args.keep_extra)
    except (FileNotFoundError, IsADirectoryError, CheckpointError, ValueError) as err:
        print(f'error: {err}'.splitlines()[0], file=sys.stderr)
        return 2
    print(conversion.report(limit=0 if args.full else 6))
    extra = f" and {len(conversion.extra)} under 'extra'" if args.keep_extra else ''
    print(f"wrote {args.dst}: {len(conversion.state_dict)} backbone tensors under "
          f"'state_dict'{extra}")
    return 0


if __name__ == '__main__':
    sys.exit(main())
