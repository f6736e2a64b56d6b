"""Speed and memory of the pretraining steps and of the transfer backbones
(``tools/analysis/speed.py``).

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
from .report import markdown, write_outputs
from .run import measure_speed, profile_rows
from .workloads import Settings, Workload, resolve_device, workloads

__all__ = ['Settings', 'Workload', 'markdown', 'measure_speed', 'profile_rows',
           'resolve_device', 'workloads', 'write_outputs']
