"""Check the CUDA path on a machine with a GPU, in a few minutes, and print one table.

    python tools/analysis/gpu_check.py --out work_dirs/gpu_check     # (or bash tools/gpu_check.sh)

Checks, in order (``--checks`` picks some):

* ``ops``: mmcv's CUDA kernels agree with its CPU kernels on random inputs: ``RoIAlign``
  forward and input gradient (aligned and not, adaptive and fixed sampling) and ``nms``
  (the kept indices); whether ``RoIAlign`` takes bfloat16 input is reported too.
* ``pretrain``: one training step of the ConvMAE and the MixedAE pretraining recipes, shrunk
  to tiny models (:func:`mixedconv.benchmark.tiny.shrink_pretrain`) on generated images,
  through mmengine's Runner with the recipes' bfloat16 ``AmpOptimWrapper``.
* ``transfer``: 10 iterations and one evaluation of the Mask R-CNN (ConvViT) and UperNet
  (PlainViT) recipes shrunk by :func:`mixedconv.benchmark.tiny.shrink_transfer`, on generated
  COCO / ADE20K-format data, with the recipes' bfloat16 AMP.
* ``speed``: ``tools/analysis/speed.py --arch base --device cuda`` (bfloat16 autocast on CUDA).

Exits with 2 when no GPU is visible or mmcv has no CUDA kernels, 1 when a check fails, 0
otherwise; writes ``gpu_check.md`` (the table), ``speed/`` and the runs' work dirs to ``--out``.
"""
import argparse
import math
import os
import os.path as osp
import subprocess
import sys
import time
import traceback

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CHECKS = ('ops', 'pretrain', 'transfer', 'speed')
PRETRAIN = {'ConvMAE': 'convmae', 'MixedAE': 'mixedae'}  # label -> recipes.PRETRAIN_CONFIGS key
TRANSFER = {'Mask R-CNN': ('coco-maskrcnn', 'ConvViT'),  # label -> (task, backbone family)
            'UperNet': ('ade20k-upernet', 'PlainViT')}
TRANSFER_ITERS = 10
SPEED_TIMEOUT_S = 240


class Unavailable(RuntimeError):
    """The machine cannot run the checks at all (no GPU, no CUDA kernels)."""


def require_gpu():
    """Raise :class:`Unavailable` unless torch sees a CUDA GPU; returns its name."""
    import torch
    if torch.version.cuda is None:
        raise Unavailable(f'torch {torch.__version__} is built without CUDA')
    if not torch.cuda.is_available():
        visible = os.environ.get('CUDA_VISIBLE_DEVICES')
        raise Unavailable('no CUDA GPU visible (torch.cuda.is_available() is False'
                          + (f', CUDA_VISIBLE_DEVICES={visible!r}' if visible is not None else '')
                          + '): the GPU check needs a machine with an NVIDIA GPU and driver')
    return torch.cuda.get_device_name(0)


def mmcv_ext_has_cuda_kernels():
    """Whether mmcv's compiled ``_ext`` holds GPU code: nvcc puts the kernels of every .cu
    file into an ELF section named ``.nv_fatbin``."""
    import glob

    import mmcv
    ext = glob.glob(osp.join(osp.dirname(mmcv.__file__), '_ext*.so'))
    if not ext:
        raise Unavailable('mmcv has no compiled ops (_ext): run `bash tools/setup_env.sh`')
    with open(ext[0], 'rb') as f:
        return b'.nv_fatbin' in f.read()


def require_mmcv_cuda():
    if not mmcv_ext_has_cuda_kernels():
        raise Unavailable('mmcv was built with CPU ops only: rebuild it with CUDA ops by '
                          '`MIXEDCONV_CUDA_OPS=1 bash tools/setup_env.sh` (docs/cuda.md)')


# ------------------------------------------------------------------------------ ops
def random_rois(gen, num, num_images, size):
    """``num`` RoIs (batch index, x1, y1, x2, y2) inside a ``size`` x ``size`` image."""
    import torch
    xy = torch.rand(num, 2, generator=gen) * size * 0.8
    wh = torch.rand(num, 2, generator=gen) * size * 0.5 + 1
    idx = torch.randint(num_images, (num, 1), generator=gen).float()
    return torch.cat([idx, xy, (xy + wh).clamp(max=size - 1)], dim=1)


def random_boxes(gen, num, size=100.):
    import torch
    xy = torch.rand(num, 2, generator=gen) * size
    wh = torch.rand(num, 2, generator=gen) * size * 0.3 + 1
    return torch.cat([xy, xy + wh], dim=1)


def compare_roi_align(device='cuda', seed=0):
    """Largest |CUDA - CPU| of RoIAlign outputs and input gradients over four settings."""
    import torch
    from mmcv.ops import RoIAlign
    gen = torch.Generator().manual_seed(seed)
    feats = torch.randn(2, 16, 40, 40, generator=gen)
    rois = random_rois(gen, 128, num_images=2, size=80)  # in input pixels; scale 0.5
    grad_out = torch.randn(128, 16, 7, 7, generator=gen)
    worst = {'forward': 0.0, 'backward': 0.0}
    for aligned in (True, False):
        for sampling in (0, 2):
            layer = RoIAlign((7, 7), spatial_scale=0.5, sampling_ratio=sampling, aligned=aligned)
            results = []
            for dev in ('cpu', device):
                x = feats.to(dev).requires_grad_()
                out = layer(x, rois.to(dev))
                out.backward(grad_out.to(dev))
                results.append((out.detach().cpu(), x.grad.cpu()))
            (ref, ref_grad), (got, got_grad) = results
            # the backward accumulates with atomicAdd on CUDA: only summation order differs
            torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5,
                                       msg=lambda m: f'RoIAlign aligned={aligned} '
                                       f'sampling_ratio={sampling} forward: {m}')
            torch.testing.assert_close(got_grad, ref_grad, rtol=1e-4, atol=1e-5,
                                       msg=lambda m: f'RoIAlign aligned={aligned} '
                                       f'sampling_ratio={sampling} backward: {m}')
            worst['forward'] = max(worst['forward'], (got - ref).abs().max().item())
            worst['backward'] = max(worst['backward'], (got_grad - ref_grad).abs().max().item())
    return worst


def compare_nms(device='cuda', seed=0, num=1000, iou=0.5):
    """The indices ``mmcv.ops.nms`` keeps on CUDA and on CPU must be the same."""
    import torch
    from mmcv.ops import nms
    gen = torch.Generator().manual_seed(seed)
    boxes, scores = random_boxes(gen, num), torch.rand(num, generator=gen)
    _, keep_cpu = nms(boxes, scores, iou)
    dets, keep_gpu = nms(boxes.to(device), scores.to(device), iou)
    assert dets.is_cuda == (device != 'cpu')
    if not torch.equal(keep_cpu, keep_gpu.cpu()):
        diff = set(keep_cpu.tolist()) ^ set(keep_gpu.cpu().tolist())
        raise AssertionError(f'nms keeps {len(keep_gpu)} boxes on {device}, {len(keep_cpu)} '
                             f'on cpu; {len(diff)} differ')
    return len(keep_cpu), num


def roi_align_bf16(device='cuda'):
    """'yes' when RoIAlign runs on bfloat16 features (what mmdet passes under bf16 AMP),
    else the error."""
    import torch
    from mmcv.ops import RoIAlign
    feats = torch.randn(1, 4, 16, 16, device=device, dtype=torch.bfloat16)
    rois = torch.tensor([[0., 1., 1., 9., 9.]], device=device, dtype=torch.bfloat16)
    try:
        RoIAlign((2, 2), spatial_scale=1.0, sampling_ratio=0, aligned=True)(feats, rois)
    except RuntimeError as err:
        return f'no ({str(err).splitlines()[0]})'
    return 'yes'


def check_ops(_ctx):
    worst = compare_roi_align()
    kept, num = compare_nms()
    return (f'RoIAlign max |cuda-cpu| fwd {worst["forward"]:.1e}, grad {worst["backward"]:.1e}; '
            f'nms same {kept}/{num} kept; RoIAlign bf16 input: {roi_align_bf16()}')


# ------------------------------------------------------------------------- training
def reset_mm_state():
    """A clean logger, message hub and default scope for the next Runner in this process."""
    from mmengine.logging import MessageHub, MMLogger
    from mmengine.registry import DefaultScope
    for managed in (MessageHub, MMLogger, DefaultScope):
        managed._instance_dict.clear()


def _first_tensor(value):
    import torch
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (list, tuple)):
        for item in value:
            found = _first_tensor(item)
            if found is not None:
                return found
    if isinstance(value, dict):
        return _first_tensor(list(value.values()))
    return None


def record_backbone_dtypes(runner):
    """The output dtypes of the backbone's linear and convolution layers during ``runner``'s
    steps (a set, filled in place): ``bfloat16`` when autocast is on. Leaf layers are hooked
    because the pretraining models call the backbone's own methods, not its ``forward``."""
    import torch.nn as nn
    model = getattr(runner.model, 'module', runner.model)
    dtypes = set()

    def hook(_module, _inputs, output):
        tensor = _first_tensor(output)
        if tensor is not None:
            dtypes.add(str(tensor.dtype).replace('torch.', ''))
    for module in model.backbone.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            module.register_forward_hook(hook)
    return dtypes


def require_bf16_amp(cfg, what):
    wrapper = cfg.optim_wrapper
    if wrapper.get('type') != 'AmpOptimWrapper' or wrapper.get('dtype') != 'bfloat16':
        raise AssertionError(f'{what}: the recipe is not bf16 AMP ({wrapper.get("type")}, '
                             f'{wrapper.get("dtype")})')


def run_pretrain(label, ctx):
    from mmengine.config import Config
    from mmengine.runner import Runner

    from mixedconv.benchmark.recipes import PRETRAIN_CONFIGS
    from mixedconv.config_files import config_path
    from mixedconv.benchmark.tiny import shrink_pretrain
    config = config_path(PRETRAIN_CONFIGS[PRETRAIN[label]])
    cfg = shrink_pretrain(Config.fromfile(config), ctx['imagenet'], iters=1, batch_size=8)
    require_bf16_amp(cfg, label)
    cfg.work_dir = osp.join(ctx['out'], 'pretrain', PRETRAIN[label])
    reset_mm_state()
    runner = Runner.from_cfg(cfg)
    dtypes = record_backbone_dtypes(runner)
    runner.train()
    loss = runner.message_hub.get_scalar('train/loss').current()
    if not math.isfinite(loss):
        raise AssertionError(f'{label}: loss {loss}')
    if 'bfloat16' not in dtypes:
        raise AssertionError(f'{label}: the backbone layers ran in {dtypes}, not bfloat16')
    return f'{label}: loss {loss:.3f}, backbone layers {"/".join(sorted(dtypes))}'


def check_pretrain(ctx):
    return '; '.join(run_pretrain(label, ctx) for label in PRETRAIN)


def run_transfer(label, ctx):
    import torch
    from mmengine.config import Config
    from mmengine.runner import Runner

    from mixedconv.benchmark.recipes import TASK_CONFIGS
    from mixedconv.config_files import config_path
    from mixedconv.benchmark.tiny import shrink_transfer
    task, family = TRANSFER[label]
    data = ctx['coco'] if task.startswith('coco') else ctx['ade']
    cfg = shrink_transfer(Config.fromfile(config_path(TASK_CONFIGS[task][family])), data,
                          iters=TRANSFER_ITERS)
    require_bf16_amp(cfg, label)
    cfg.model.backbone.init_cfg = None  # random weights: this checks the path, not accuracy
    cfg.work_dir = osp.join(ctx['out'], 'transfer', task)
    reset_mm_state()
    runner = Runner.from_cfg(cfg)
    dtypes = record_backbone_dtypes(runner)
    runner.train()
    model = getattr(runner.model, 'module', runner.model)
    if not next(model.parameters()).is_cuda:
        raise AssertionError(f'{label}: the model is not on the GPU')
    if runner.iter != TRANSFER_ITERS:
        raise AssertionError(f'{label}: ran {runner.iter} of {TRANSFER_ITERS} iterations')
    hub = runner.message_hub
    loss = hub.get_scalar('train/loss').current()
    if not math.isfinite(loss):
        raise AssertionError(f'{label}: loss {loss}')
    metric = 'coco/bbox_mAP' if task.startswith('coco') else 'mIoU'
    value = hub.get_scalar(f'val/{metric}').current()
    peak = torch.cuda.max_memory_allocated() / 2 ** 20
    if 'bfloat16' not in dtypes:
        raise AssertionError(f'{label}: the backbone layers ran in {dtypes}, not bfloat16')
    return (f'{label}: {runner.iter} it, loss {loss:.3f}, {metric} {value:.3f}, backbone '
            f'layers {"/".join(sorted(dtypes))}, peak {peak:.0f} MiB')


def check_transfer(ctx):
    return '; '.join(run_transfer(label, ctx) for label in TRANSFER)


def check_speed(ctx):
    import json
    out = osp.join(ctx['out'], 'speed')
    cmd = [sys.executable, osp.join(REPO, 'tools', 'analysis', 'speed.py'), '--arch', 'base',
           '--device', 'cuda', '--out', out]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=SPEED_TIMEOUT_S)
    os.makedirs(out, exist_ok=True)
    with open(osp.join(out, 'speed.log'), 'w') as f:
        f.write(proc.stdout + proc.stderr)
    if proc.returncode:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:]
        raise AssertionError(f'speed.py exited {proc.returncode}: {" ".join(tail)}')
    with open(osp.join(out, 'speed.json')) as f:
        result = json.load(f)
    rows = {r['key']: r for r in result['rows']}
    met = sum(t['met'] for t in result['targets'])
    parts = [f'{len(rows)} rows ({result["machine"]["dtype"]})']
    for key in ('convmae_skip', 'mixedae'):
        if rows.get(key, {}).get('time_vs_mae') is not None:
            parts.append(f'{key} {rows[key]["time_vs_mae"]:.2f}x MAE time')
    parts.append(f'targets met {met}/{len(result["targets"])}; {out}/speed.md')
    return ', '.join(parts)


RUNNERS = {'ops': check_ops, 'pretrain': check_pretrain, 'transfer': check_transfer,
           'speed': check_speed}


# ---------------------------------------------------------------------------- driver
def make_data(out):
    from mixedconv.data import make_ade20k, make_coco, make_image_folder
    root = osp.join(out, 'data')
    make_image_folder(osp.join(root, 'imagenet', 'train'), num_images=16)
    make_coco(osp.join(root, 'coco'), num_train=8, num_val=2)
    make_ade20k(osp.join(root, 'ade'), num_train=8, num_val=2)
    return dict(imagenet=osp.join(root, 'imagenet'), coco=osp.join(root, 'coco'),
                ade=osp.join(root, 'ade'))


def table(rows):
    lines = ['| check | result | time |', '|---|---|---:|']
    lines += [f'| {name} | {result} | {secs:.1f} s |' for name, result, secs in rows]
    return '\n'.join(lines) + '\n'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', default=osp.join(REPO, 'work_dirs', 'gpu_check'),
                        help='folder for gpu_check.md, speed/ and the runs (default: %(default)s)')
    parser.add_argument('--checks', nargs='+', choices=CHECKS, default=list(CHECKS),
                        help='the checks to run (default: all)')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        gpu = require_gpu()
        require_mmcv_cuda()
    except Unavailable as err:
        print(f'gpu_check: FAILED: {err}', file=sys.stderr)
        return 2
    import torch

    from mixedconv import register_all_modules
    register_all_modules()
    os.makedirs(args.out, exist_ok=True)
    print(f'gpu_check on {gpu} (torch {torch.__version__}, CUDA {torch.version.cuda})',
          flush=True)
    start = time.perf_counter()
    ctx = dict(out=args.out, **make_data(args.out))
    rows = [('data', 'generated ImageNet-, COCO- and ADE20K-format sets',
             time.perf_counter() - start)]
    failed = []
    for name in args.checks:
        start = time.perf_counter()
        try:
            result = f'ok: {RUNNERS[name](ctx)}'
        except Exception as err:  # report every check, then fail
            traceback.print_exc()
            first = (str(err).strip().splitlines() or [''])[0]
            result = f'FAIL: {type(err).__name__}: {first}'
            failed.append(name)
        torch.cuda.synchronize()
        rows.append((name, result.replace('|', '/'), time.perf_counter() - start))
        print(f'[gpu_check] {name}: {result}', flush=True)
    text = table(rows)
    with open(osp.join(args.out, 'gpu_check.md'), 'w') as f:
        f.write(text)
    print()
    print(text, end='')
    if failed:
        print(f'gpu_check: FAILED: {", ".join(failed)} (tracebacks above)', file=sys.stderr)
        return 1
    print(f'gpu_check: all {len(args.checks)} checks passed; wrote {args.out}/gpu_check.md')
    return 0


if __name__ == '__main__':
    sys.exit(main())
