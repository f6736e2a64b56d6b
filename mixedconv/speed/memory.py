"""Peak memory of a step above what is held before it: CUDA allocator statistics, or on CPU
the resident high-water mark of a child process (this module run with ``-m``)."""
import gc
import json
import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import torch

from .workloads import RowStep, Settings, make_inputs, workloads


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
    proc = subprocess.run([sys.executable, '-m', 'mixedconv.speed.memory', spec], env=env,
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
        runner = RowStep(by_key[key], settings)
        peaks[key] = step_peaks(runner, cpu_step_peak)
        del runner
        gc.collect()
    return peaks




if __name__ == '__main__':  # the CPU memory child process (see cpu_peaks)
    print(json.dumps(memory_worker(json.loads(sys.argv[1]))))
