"""Speed and memory of the pretraining steps and of the transfer backbones.

Every model is built from the real recipes under ``configs/`` (``--arch tiny`` shrinks only
the sizes, through :func:`mixedconv.benchmark.tiny.shrink_pretrain` and
:data:`~mixedconv.benchmark.tiny.ARCHS`) and measured in one process on one batch of images:

* **time**: median (and minimum) wall time of a pretraining step (forward + backward +
  AdamW step), of a backbone forward (inference, ``torch.no_grad``) or of a backbone training
  step (train mode, drop path on, forward + backward of the sum of the means of its
  outputs; no optimizer step), warm-up excluded. The training-step rows cover every dense
  transfer recipe: the detection backbones at ``det_size`` (ConvViT as in the FPN and the
  simple-feature-pyramid recipes, PlainViT as in ViTDet) and the UperNet backbones at
  ``seg_size``; each runs one image.
  The repeats of all rows and of the matmul ceiling are interleaved (row order rotated
  every round), so load from other processes on a shared machine spreads over all rows
  alike and the ratios of one run stay comparable; on a shared machine the minimum is the
  least disturbed figure.
* **FLOPs**: ``torch.utils.flop_counter.FlopCounterMode`` over one forward + backward (one
  forward for inference): matmuls, convolutions and attention kernels, 2 FLOPs per
  multiply-add; element-wise work and the optimizer are not counted. The convolution
  backward is counted as one forward-sized convolution per requested gradient (input,
  weight): torch's own formula ignores ``groups`` for the weight gradient and counts a
  C-channel depthwise convolution's backward C times too high.
* **ceiling**: the rate of a square matmul measured in the same run (float32 4096 x 4096 on
  CPU, bfloat16 8192 x 8192 on CUDA); every row reports its achieved FLOP/s as a fraction of it.
* **peak memory**: the peak of a step *above* the memory held before it (parameters and
  optimizer state, gradients freed), i.e. activations, gradients and temporaries, measured at
  the benchmark batch and at twice that batch. The per-image figure is the slope between the
  two, (peak(2B) - peak(B)) / B: the memory each further image costs, free of the
  batch-independent part (gradients, workspaces); the MAE ratio uses it. The backbone
  rows (batch 1) report their peak. CUDA: ``torch.cuda.max_memory_allocated`` after
  ``reset_peak_memory_stats``. CPU: one child process measures every row in turn with glibc's
  ``MALLOC_MMAP_THRESHOLD_=65536`` (tensors of 64 KiB and more are mapped and unmapped, so
  resident memory follows the live tensors): after a warm-up step at the batch size it reads
  ``VmRSS``, resets the high-water mark (``5`` into ``/proc/self/clear_refs``), runs one step
  and reads ``VmHWM``.

CUDA runs under bfloat16 autocast (the configs' AMP dtype); CPU runs in float32. On CPU the
backbones' SyncBN layers (segmentation /32 level and pyramid) are plain BatchNorm, as in the
tiny runs.
"""
import contextlib
import gc
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count

CONFIG_ROOT = Path(__file__).resolve().parents[2] / 'configs'
PRETRAIN_CONFIGS = {
    'mae': 'mae/mae_vit-base-p16_8xb512-amp-coslr-1600e_in1k.py',
    'convmae': 'convmae/convmae_convvit-base-p16_8xb384-amp-coslr-1600e_in1k.py',
    'mixedae': 'mixedae/mixedae_vit-base-p16_8xb256-amp-coslr-1600e_in1k.py',
}
DETECTION_CONFIGS = {
    'convvit': 'convmae/mask-rcnn_convvit-base-p16_sfp_8xb2-amp-lsj-1024-25e_coco.py',
    'convvit_fpn': 'convmae/mask-rcnn_convvit-base-p16_fpn_8xb4-amp-lsj-1024-25e_coco.py',
    'plainvit': 'mixedae/mask-rcnn_vit-base-p16_sfp_16xb4-amp-lsj-1024-100e_coco.py',
}
SEGMENTATION_CONFIGS = {
    'convvit': 'convmae/upernet_convvit-base-p16_8xb2-amp-160k_ade20k-512x512.py',
    'plainvit': 'mixedae/upernet_vit-base-p16_8xb2-amp-160k_ade20k-512x512.py',
}
# the Settings attribute with the image side of each kind (a 'train' row names its own)
SIDES = dict(pretrain='img_size', inference='det_size')
BASELINE = 'mae'


@dataclass(frozen=True)
class Workload:
    """One row of the benchmark.

    Attributes:
        key (str): row id (``mae``, ``convmae_skip``, ...).
        label (str): row name in the tables.
        kind (str): ``'pretrain'`` (pretraining step), ``'inference'`` (backbone forward) or
            ``'train'`` (backbone forward + backward).
        config (str): config path under ``configs/``.
        overrides (tuple): ``(name, value)`` pairs set on the model config (``skip_masked``).
        side (str | None): the :class:`Settings` attribute with the image side; None: the
            kind's (``SIDES``).
    """
    key: str
    label: str
    kind: str
    config: str
    overrides: tuple = ()
    side: str = None

    def image_side(self, settings):
        """The image side this row runs at."""
        return getattr(settings, self.side or SIDES[self.kind])


def workloads(arch):
    """The rows of the benchmark, in table order, for ``arch`` in ('base', 'tiny')."""
    s = 'B' if arch == 'base' else 'T'
    return [
        Workload('mae', f'MAE ViT-{s} (mmpretrain)', 'pretrain', PRETRAIN_CONFIGS['mae']),
        Workload('convmae_skip', f'ConvMAE ConvViT-{s}, skip masked', 'pretrain',
                 PRETRAIN_CONFIGS['convmae'], (('skip_masked', True),)),
        Workload('convmae_dense', f'ConvMAE ConvViT-{s}, dense', 'pretrain',
                 PRETRAIN_CONFIGS['convmae'], (('skip_masked', False),)),
        Workload('mixedae', f'MixedAE ViT-{s}', 'pretrain', PRETRAIN_CONFIGS['mixedae']),
        Workload('convvit_det', f'ConvViT-{s} backbone, detection', 'inference',
                 DETECTION_CONFIGS['convvit']),
        Workload('plainvit_det', f'PlainViT-{s} backbone, detection', 'inference',
                 DETECTION_CONFIGS['plainvit']),
        Workload('convvit_fpn_train', f'ConvViT-{s} backbone, FPN detection, train step',
                 'train', DETECTION_CONFIGS['convvit_fpn'], side='det_size'),
        Workload('convvit_sfp_train', f'ConvViT-{s} backbone, SFP detection, train step',
                 'train', DETECTION_CONFIGS['convvit'], side='det_size'),
        Workload('plainvit_sfp_train', f'PlainViT-{s} backbone, ViTDet, train step', 'train',
                 DETECTION_CONFIGS['plainvit'], side='det_size'),
        Workload('convvit_seg_train', f'ConvViT-{s} backbone, UperNet, train step', 'train',
                 SEGMENTATION_CONFIGS['convvit'], side='seg_size'),
        Workload('plainvit_seg_train', f'PlainViT-{s} backbone, UperNet, train step', 'train',
                 SEGMENTATION_CONFIGS['plainvit'], side='seg_size'),
    ]


@dataclass(frozen=True)
class Settings:
    """What every row runs on.

    Attributes:
        arch (str): 'base' (the configs' sizes) or 'tiny' (``tiny.ARCHS`` sizes).
        batch (int): pretraining batch of source images.
        img_size (int): pretraining image side (a multiple of 16).
        det_size (int): image side of the detection backbone rows (batch 1; 1024 in the
            recipes, 512 keeps a CPU run of the training steps to minutes).
        seg_size (int): image side of the segmentation backbone rows (batch 1; 512 in the
            recipes).
        device (str): 'cpu' or 'cuda'.
    """
    arch: str = 'base'
    batch: int = 8
    img_size: int = 224
    det_size: int = 1024
    seg_size: int = 512
    device: str = 'cpu'

    def __post_init__(self):
        if self.arch not in ('base', 'tiny'):
            raise ValueError(f"arch must be 'base' or 'tiny', got {self.arch!r}")
        for name in ('img_size', 'det_size', 'seg_size'):
            if getattr(self, name) % 16:
                raise ValueError(f'{name} must be a multiple of 16 (the patch size), got '
                                 f'{getattr(self, name)}')
        if self.batch % 4:
            raise ValueError(f'batch must be a multiple of 4 (MixedAE mixes groups of 4 '
                             f'images), got {self.batch}')

    def autocast(self):
        """bfloat16 autocast on CUDA, nothing on CPU."""
        if self.device == 'cuda':
            return torch.autocast('cuda', dtype=torch.bfloat16)
        return contextlib.nullcontext()


def resolve_device(device):
    """'auto' -> 'cuda' when available, else 'cpu'; raises for 'cuda' without a GPU."""
    if device == 'auto':
        return 'cuda' if torch.cuda.is_available() else 'cpu'
    if device == 'cuda' and not torch.cuda.is_available():
        raise ValueError('--device cuda, but torch sees no CUDA device; use --device cpu')
    return device


# ------------------------------------------------------------------------------- building
def model_config(workload, settings):
    """The model config of a row: the recipe's, with only the sizes changed for 'tiny'."""
    from mmengine.config import Config

    from .recipes import adapt_backbone
    from .tiny import ARCHS, shrink_pretrain, sync_bn_to_bn
    cfg = Config.fromfile(str(CONFIG_ROOT / workload.config))
    if workload.kind == 'pretrain':
        if settings.arch == 'tiny':
            cfg = shrink_pretrain(cfg, data_root='unused')
        model = cfg.model
        model.backbone.img_size = settings.img_size
        if model.type == 'MAE':  # mmpretrain's decoder has a fixed number of patches
            model.neck.num_patches = (settings.img_size // 16) ** 2
        model.pop('data_preprocessor', None)  # the benchmark feeds normalised tensors
        for name, value in workload.overrides:
            model[name] = value
        return model
    backbone = cfg.model.backbone
    backbone.pop('init_cfg', None)
    backbone.img_size = workload.image_side(settings)
    if settings.arch == 'tiny':
        adapt_backbone(backbone, ARCHS[backbone.type])
    if settings.device == 'cpu':
        sync_bn_to_bn(backbone)
    return backbone


def build(workload, settings):
    """A row's model on the device (eval mode for inference rows, train mode otherwise)."""
    import mmpretrain.models  # noqa: F401  (registers mmpretrain's MAE)
    from mmpretrain.registry import MODELS

    from mixedconv import register_all_modules
    register_all_modules()
    torch.manual_seed(0)
    model = MODELS.build(model_config(workload, settings)).to(settings.device)
    return model.train(workload.kind != 'inference')


def make_inputs(workload, settings):
    """Normalised random images: (batch, 3, img, img) for pretraining, else (1, 3, side, side)."""
    g = torch.Generator().manual_seed(0)
    side = workload.image_side(settings)
    shape = (settings.batch if workload.kind == 'pretrain' else 1, 3, side, side)
    return torch.randn(shape, generator=g).to(settings.device)


def conv_backward_flops(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding, _dilation,
                        transposed, _output_padding, _groups, output_mask, out_shape=None,
                        **kwargs):
    """FLOPs of ``aten.convolution_backward``: the input gradient and the weight gradient each
    cost one forward convolution (``w_shape`` already holds C_in / groups)."""
    forward = conv_flop_count(x_shape, w_shape, grad_out_shape, transposed=transposed)
    return forward * (int(output_mask[0]) + int(output_mask[1]))


def backbone_loss(outputs):
    """A scalar that depends on every output element of a backbone: the sum of the means of
    its output maps (its gradient reaches every output, as a detection or segmentation loss
    does)."""
    return sum(out.float().mean() for out in outputs)


class Runner:
    """One row, ready to run: ``step()`` = one training step or one inference forward."""

    def __init__(self, workload, settings):
        self.workload = workload
        self.settings = settings
        self.model = build(workload, settings)
        self.inputs = make_inputs(workload, settings)
        self.optimizer = None
        if workload.kind == 'pretrain':
            params = [p for p in self.model.parameters() if p.requires_grad]
            self.optimizer = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.95),
                                               weight_decay=0.05)

    @property
    def images(self):
        """Source images per step."""
        return self.inputs.shape[0]

    def forward_backward(self):
        """Forward (and backward but for inference rows); returns nothing."""
        if self.workload.kind == 'inference':
            with torch.no_grad(), self.settings.autocast():
                self.model(self.inputs)
            return
        if self.workload.kind == 'train':
            self.model.zero_grad(set_to_none=True)
            with self.settings.autocast():
                loss = backbone_loss(self.model(self.inputs))
            loss.backward()
            return
        self.optimizer.zero_grad(set_to_none=True)
        with self.settings.autocast():
            losses = self.model.loss(self.inputs, None)
        sum(v for k, v in losses.items() if 'loss' in k).backward()

    def step(self):
        """One timed unit: forward + backward (+ AdamW step for pretraining), or one inference
        forward."""
        self.forward_backward()
        if self.optimizer is not None:
            self.optimizer.step()

    def count_flops(self):
        """FLOPs of one forward + backward (one forward for inference)."""
        mapping = {torch.ops.aten.convolution_backward: conv_backward_flops}
        with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
            self.forward_backward()
        self.release_grads()
        return counter.get_total_flops()

    def release_grads(self):
        """Free the gradients, so that the memory held between steps is parameters, buffers
        and optimizer state only."""
        self.model.zero_grad(set_to_none=True)

    def grad_bytes(self):
        """Bytes of the gradients of one step (one per trainable parameter)."""
        if self.workload.kind == 'inference':
            return 0
        return sum(p.numel() * p.element_size() for p in self.model.parameters()
                   if p.requires_grad)

    def held_bytes(self):
        """Bytes held between steps: parameters, buffers and optimizer state."""
        tensors = list(self.model.parameters()) + list(self.model.buffers())
        if self.optimizer is not None:
            tensors += [t for state in self.optimizer.state.values()
                        for t in state.values() if torch.is_tensor(t)]
        return sum(t.numel() * t.element_size() for t in tensors)


# ------------------------------------------------------------------------------ measuring
def synchronize(device):
    if device == 'cuda':
        torch.cuda.synchronize()


def timed(fn, device):
    """Wall seconds of ``fn()`` (device work included)."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


class MatmulCeiling:
    """The machine's matmul rate: float32 4096^2 on CPU, bfloat16 8192^2 on CUDA (20 in a row,
    so that one timing is not dominated by launch latency)."""

    def __init__(self, device):
        self.device = device
        self.size = 4096 if device == 'cpu' else 8192
        dtype = torch.float32 if device == 'cpu' else torch.bfloat16
        g = torch.Generator().manual_seed(0)
        self.a = torch.randn(self.size, self.size, generator=g).to(device, dtype)
        self.b = torch.randn(self.size, self.size, generator=g).to(device, dtype)
        self.repeats = 1 if device == 'cpu' else 20
        self.dtype = str(dtype).replace('torch.', '')

    @property
    def flops(self):
        return 2 * self.size ** 3 * self.repeats

    def step(self):
        for _ in range(self.repeats):
            torch.mm(self.a, self.b)


def interleaved_times(steps, repeats, warmup, device, log=None):
    """Median-ready timings of several callables, interleaved.

    Args:
        steps (dict[str, callable]): name -> one unit of work.
        repeats (int): timed rounds.
        warmup (int): untimed rounds before.
        device (str): for synchronisation.
        log (callable | None): called after every timed round.

    Returns:
        dict[str, list[float]]: seconds per round, per name.
    """
    names = list(steps)
    for _ in range(warmup):
        for name in names:
            steps[name]()
    times = {name: [] for name in names}
    for r in range(repeats):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            times[name].append(timed(steps[name], device))
        if log is not None:
            log(f'round {r + 1}/{repeats}: ' + ', '.join(
                f'{name} {times[name][-1]:.2f}s' for name in names))
    return times


def cuda_step_peak(runner):
    """Peak CUDA bytes of one step above what is allocated before it (gradients freed)."""
    runner.release_grads()
    gc.collect()
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    runner.step()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base


def _proc_status_kib(field):
    text = Path('/proc/self/status').read_text()
    return int(re.search(rf'^{field}:\s+(\d+) kB', text, re.M).group(1))


def cpu_step_peak(runner):
    """Peak resident bytes of one step above the resident memory before it (see module
    docstring; needs the child started by :func:`cpu_peaks`). Gradients are freed first."""
    runner.release_grads()
    gc.collect()
    base = _proc_status_kib('VmRSS')
    Path('/proc/self/clear_refs').write_text('5')
    runner.step()
    return (_proc_status_kib('VmHWM') - base) * 1024


def memory_batches(workload, settings):
    """Batch sizes a row's peak is measured at: B and 2B for pretraining, 1 for the backbone
    rows."""
    return (settings.batch, 2 * settings.batch) if workload.kind == 'pretrain' else (1,)


def step_peaks(runner, measure):
    """Step peaks of a row at each of :func:`memory_batches` (one warm-up step each).

    Returns:
        list[int]: bytes, one per batch size.
    """
    peaks = []
    for batch in memory_batches(runner.workload, runner.settings):
        if runner.workload.kind == 'pretrain':
            runner.inputs = make_inputs(runner.workload, replace(runner.settings, batch=batch))
        runner.step()  # optimizer state allocated, lazy initialisations done
        peaks.append(measure(runner))
    return peaks


def per_image_peak(peaks, batches):
    """Memory per image: the slope of the peak over the batch size (the peak itself for one
    batch size)."""
    if len(batches) == 1:
        return peaks[0] / batches[0]
    return (peaks[-1] - peaks[0]) / (batches[-1] - batches[0])


def cpu_peaks(keys, settings):
    """Run :func:`memory_worker` in a child process with the malloc settings it needs.

    Returns:
        dict[str, list[int]]: step peak bytes per row key, one per :func:`memory_batches`.
    """
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_='65536')
    spec = json.dumps(dict(keys=list(keys), settings=settings.__dict__))
    proc = subprocess.run([sys.executable, '-m', 'mixedconv.benchmark.speed', spec], env=env,
                          capture_output=True, text=True, check=False)
    if proc.returncode:
        raise RuntimeError(f'the memory child process failed:\n{proc.stderr[-4000:]}')
    return json.loads(proc.stdout.strip().splitlines()[-1])


def memory_worker(spec):
    """Child-process entry: build each row in turn and measure its :func:`step_peaks`."""
    settings = Settings(**spec['settings'])
    by_key = {w.key: w for w in workloads(settings.arch)}
    peaks = {}
    for key in spec['keys']:
        runner = Runner(by_key[key], settings)
        peaks[key] = step_peaks(runner, cpu_step_peak)
        del runner
        gc.collect()
    return peaks


def machine_description(device):
    """A short description of the device the numbers come from."""
    if device == 'cuda':
        return f'{torch.cuda.get_device_name()} (CUDA {torch.version.cuda})'
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        match = re.search(r'^model name\s*:\s*(.+)$', Path('/proc/cpuinfo').read_text(), re.M)
        model = match.group(1) if match else model
    return f'{model}, {torch.get_num_threads()} threads'


# ------------------------------------------------------------------------------- the run
def run_benchmark(settings, repeats=3, warmup=3, keys=None, log=print):
    """Measure every row (or the rows in ``keys``) and return the result dict.

    Args:
        settings (Settings): sizes and device.
        repeats (int): timed rounds (median taken).
        warmup (int): untimed rounds first.
        keys (Sequence[str] | None): row keys to run; None runs all.
        log (callable): progress messages.

    Returns:
        dict: ``machine``, ``settings``, ``ceiling``, ``rows`` (one dict per row) and
        ``targets`` (the issue's ratio targets with the measured values).
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f'need repeats >= 1 and warmup >= 0, got {repeats} and {warmup}')
    chosen = workloads(settings.arch)
    if keys is not None:
        unknown = set(keys) - {w.key for w in chosen}
        if unknown:
            raise ValueError(f'unknown rows {sorted(unknown)}; choose from '
                             f'{[w.key for w in chosen]}')
        chosen = [w for w in chosen if w.key in keys]
    device = settings.device
    runners = {}
    for w in chosen:
        log(f'building {w.label}')
        runners[w.key] = Runner(w, settings)
    ceiling = MatmulCeiling(device)
    flops = {}
    for key, runner in runners.items():
        log(f'counting FLOPs of {runner.workload.label}')
        flops[key] = runner.count_flops()
    log(f'timing {len(runners)} rows and the matmul ceiling, {warmup} warm-up + {repeats} '
        f'interleaved rounds')
    steps = {key: r.step for key, r in runners.items()}
    steps['matmul'] = ceiling.step
    times = interleaved_times(steps, repeats, warmup, device, log)
    ceiling_rate = ceiling.flops / statistics.median(times['matmul'])

    log('measuring peak memory')
    held = {key: r.held_bytes() for key, r in runners.items()}
    grads = {key: r.grad_bytes() for key, r in runners.items()}
    if device == 'cuda':
        peaks = {key: step_peaks(r, cuda_step_peak) for key, r in runners.items()}
    else:
        runners.clear()  # free this process's models before the child builds its own
        gc.collect()
        peaks = cpu_peaks(list(held), settings)

    rows = []
    for w in chosen:
        median = statistics.median(times[w.key])
        images = settings.batch if w.kind == 'pretrain' else 1
        batches = memory_batches(w, settings)
        rows.append(dict(
            key=w.key, label=w.label, kind=w.kind, config=w.config,
            overrides=dict(w.overrides), images=images,
            img_size=w.image_side(settings),
            time_s=median, time_min_s=min(times[w.key]), times_s=times[w.key],
            ms_per_image=1e3 * median / images,
            flops=flops[w.key], achieved_flops_per_s=flops[w.key] / median,
            fraction_of_ceiling=flops[w.key] / median / ceiling_rate,
            held_mb=held[w.key] / 2 ** 20, grad_mb=grads[w.key] / 2 ** 20,
            peak_mb=peaks[w.key][0] / 2 ** 20,
            peaks_mb={str(n): p / 2 ** 20 for n, p in zip(batches, peaks[w.key])},
            peak_mb_per_image=per_image_peak(peaks[w.key], batches) / 2 ** 20))
    add_ratios(rows)
    return dict(
        machine=dict(device=device, description=machine_description(device),
                     torch=torch.__version__, threads=torch.get_num_threads(),
                     dtype='bfloat16 autocast' if device == 'cuda' else 'float32'),
        settings=dict(settings.__dict__, repeats=repeats, warmup=warmup),
        ceiling=dict(op=f'{ceiling.dtype} matmul {ceiling.size}x{ceiling.size}',
                     flops_per_s=ceiling_rate, times_s=times['matmul']),
        rows=rows, targets=check_targets(rows))


def add_ratios(rows):
    """Per-image time and peak-memory ratios to the MAE row (None without it)."""
    base = next((r for r in rows if r['key'] == BASELINE), None)
    for row in rows:
        usable = base is not None and row['kind'] == 'pretrain'
        row['time_vs_mae'] = row['ms_per_image'] / base['ms_per_image'] if usable else None
        row['mem_vs_mae'] = (row['peak_mb_per_image'] / base['peak_mb_per_image']
                             if usable and base['peak_mb_per_image'] > 0 else None)


# (description, numerator row, denominator row, quantity, limit, comparison)
TARGETS = (
    ('ConvMAE step time <= 1.2x MAE', 'convmae_skip', 'mae', 'ms_per_image', 1.2, 'le'),
    ('skip-masked path <= 0.75x dense path', 'convmae_skip', 'convmae_dense', 'ms_per_image',
     0.75, 'le'),
    ('MixedAE step time per source image <= 1.05x MAE', 'mixedae', 'mae', 'ms_per_image', 1.05,
     'le'),
    ('ConvMAE peak memory <= 1.3x MAE', 'convmae_skip', 'mae', 'peak_mb_per_image', 1.3, 'le'),
)


def check_targets(rows):
    """The issue's targets: ratios of the rows present, and >= 80 % of the ceiling for every
    pretraining row but the MAE baseline."""
    by_key = {r['key']: r for r in rows}
    results = []
    for text, num, den, quantity, limit, _ in TARGETS:
        if num in by_key and den in by_key and by_key[den][quantity] > 0:
            value = by_key[num][quantity] / by_key[den][quantity]
            results.append(dict(target=text, value=value, limit=limit, met=value <= limit))
    for row in rows:  # our pretraining steps (the baseline is mmpretrain's code)
        if row['kind'] == 'pretrain' and row['key'] != BASELINE:
            value = row['fraction_of_ceiling']
            results.append(dict(target=f'{row["label"]}: >= 80% of the matmul rate',
                                value=value, limit=0.8, met=value >= 0.8))
    return results


# -------------------------------------------------------------------------------- output
COLUMNS = (  # header, row key, format
    ('model', 'label', '{}'),
    ('images', 'images', '{}'),
    ('px', 'img_size', '{}'),
    ('time/step (s)', 'time_s', '{:.3f}'),
    ('min (s)', 'time_min_s', '{:.3f}'),
    ('ms/image', 'ms_per_image', '{:.1f}'),
    ('x MAE (time)', 'time_vs_mae', '{:.2f}'),
    ('GFLOP/step', 'flops', '{:.1f}'),
    ('GFLOP/s', 'achieved_flops_per_s', '{:.1f}'),
    ('% of matmul', 'fraction_of_ceiling', '{:.0%}'),
    ('step peak MiB', 'peak_mb', '{:.0f}'),
    ('peak MiB/image', 'peak_mb_per_image', '{:.1f}'),
    ('x MAE (memory)', 'mem_vs_mae', '{:.2f}'),
    ('params+state MiB', 'held_mb', '{:.0f}'),
)
GIGA = ('flops', 'achieved_flops_per_s')
TINY_TARGETS_NOTE = ('The targets are set for the Base sizes; tiny models are dominated by '
                     'per-operation overhead, so their ratios say nothing about them.')


def markdown(result):
    """The result as Markdown: settings line, the table, the targets."""
    m, s, c = result['machine'], result['settings'], result['ceiling']
    lines = [
        f"Device: {m['description']} ({m['dtype']}, torch {m['torch']}); "
        f"pretraining batch {s['batch']} at {s['img_size']} px, backbones batch 1, detection "
        f"at {s['det_size']} px, segmentation at {s['seg_size']} px; arch {s['arch']}; median "
        f"of {s['repeats']} interleaved repeats after {s['warmup']} warm-up.",
        f"Ceiling: {c['op']} at {c['flops_per_s'] / 1e9:.1f} GFLOP/s.",
        '',
        '| ' + ' | '.join(h for h, _, _ in COLUMNS) + ' |',
        '|' + '|'.join('---' if k == 'label' else '---:' for _, k, _ in COLUMNS) + '|',
    ]
    for row in result['rows']:
        cells = []
        for _, key, fmt in COLUMNS:
            value = row[key]
            if value is None:
                cells.append('-')
            else:
                cells.append(fmt.format(value / 1e9 if key in GIGA else value))
        lines.append('| ' + ' | '.join(cells) + ' |')
    if result['targets']:
        lines += ['', '| target | measured | met |', '|---|---:|:---:|']
        for t in result['targets']:
            fmt = '{:.0%}' if '%' in t['target'] else '{:.3f}x'
            lines.append(f"| {t['target']} | {fmt.format(t['value'])} | "
                         f"{'yes' if t['met'] else 'no'} |")
        if s['arch'] != 'base':
            lines += ['', TINY_TARGETS_NOTE]
    return '\n'.join(lines) + '\n'


def write_outputs(result, out_dir):
    """Write ``speed.json`` and ``speed.md`` into ``out_dir``; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / 'speed.json', out / 'speed.md'
    json_path.write_text(json.dumps(result, indent=2))
    md_path.write_text(markdown(result))
    return json_path, md_path


def profile_rows(settings, keys, out_dir, log=print, row_limit=40):
    """torch.profiler table (sorted by self CPU time) of one step per row, after a warm-up
    step; written to ``profile_<key>.txt`` in ``out_dir``."""
    from torch.profiler import ProfilerActivity, profile
    activities = [ProfilerActivity.CPU]
    if settings.device == 'cuda':
        activities.append(ProfilerActivity.CUDA)
    by_key = {w.key: w for w in workloads(settings.arch)}
    paths = []
    for key in keys:
        runner = Runner(by_key[key], settings)
        runner.step()
        with profile(activities=activities) as prof:
            runner.step()
        sort = 'self_cuda_time_total' if settings.device == 'cuda' else 'self_cpu_time_total'
        path = Path(out_dir) / f'profile_{key}.txt'
        path.write_text(prof.key_averages().table(sort_by=sort, row_limit=row_limit))
        log(f'wrote {path}')
        paths.append(path)
        del runner
        gc.collect()
    return paths


if __name__ == '__main__':  # the CPU memory child process (see cpu_peaks)
    print(json.dumps(memory_worker(json.loads(sys.argv[1]))))
