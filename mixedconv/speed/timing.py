"""Timing and FLOP counting: interleaved rounds, the matmul ceiling, the convolution
backward FLOP formula."""
import time

import torch
from torch.utils.flop_counter import conv_flop_count


def conv_backward_flops(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding, _dilation,
                        transposed, _output_padding, _groups, output_mask, out_shape=None,
                        **kwargs):
    """FLOPs of ``aten.convolution_backward``: the input gradient and the weight gradient each
    cost one forward convolution (``w_shape`` already holds C_in / groups)."""
    forward = conv_flop_count(x_shape, w_shape, grad_out_shape, transposed=transposed)
    return forward * (int(output_mask[0]) + int(output_mask[1]))


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


