"""One speed run: build every row, count FLOPs, time all rows and the matmul ceiling
interleaved, measure peak memory, and the optional profile."""
import gc
import statistics
from pathlib import Path

import torch

from .memory import cpu_peaks, cuda_step_peak, memory_batches, per_image_peak, step_peaks
from .report import add_ratios, check_targets, machine_description
from .timing import MatmulCeiling, interleaved_times
from .workloads import RowStep, workloads


def measure_speed(settings, repeats=3, warmup=3, keys=None, log=print):
    """Measure every row (or the rows in ``keys``) and return the result dict.

    Args:
        settings (Settings): sizes and device.
        repeats (int): timed rounds (median taken).
        warmup (int): untimed rounds first.
        keys (Sequence[str] | None): row keys to run; None runs all.
        log (callable): progress messages.

    Returns:
        dict: ``machine``, ``settings``, ``ceiling``, ``rows`` (one dict per row) and
        ``targets`` (the ratio targets of :mod:`.report` with the measured values).
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
        runners[w.key] = RowStep(w, settings)
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
        runner = RowStep(by_key[key], settings)
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


