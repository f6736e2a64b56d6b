"""How the benchmark starts its training and evaluation processes, follows their output and
makes sure none outlives it."""
import contextlib
import os
import re
import signal
import subprocess
import sys
from collections import deque
from dataclasses import dataclass
from typing import Optional

from ..launch import DIE_WITH_PARENT_ENV, check_process_count, die_with_parent
from .recipes import REPO

PROGRESS = re.compile(r'(Epoch|Iter)\((train|val|test)\)|mmengine - ERROR|Error|Traceback')


@dataclass
class Launch:
    """How training processes start: ``'none'`` (one process), ``'pytorch'`` (torchrun with
    ``gpus`` processes) or ``'slurm'`` (:mod:`mixedconv.slurm`: ``srun`` with ``gpus``
    tasks on ``partition``)."""
    launcher: str = 'none'
    gpus: int = 1
    partition: Optional[str] = None

    def __post_init__(self):
        if self.launcher not in ('none', 'pytorch', 'slurm'):
            raise ValueError(f'unknown launcher {self.launcher!r}; valid: none, pytorch, slurm')
        if self.launcher == 'slurm' and not self.partition:
            raise ValueError('--launcher slurm needs --partition')
        check_process_count(self.launcher, self.gpus)

    @property
    def local(self):
        """Whether the processes run on this machine (not through Slurm)."""
        return self.launcher != 'slurm'

    def command(self, config, work_dir, resume, job_name='mixedconv'):
        """The command line that trains ``config`` into ``work_dir``."""
        extra = ['--resume'] if resume else []
        if self.launcher == 'slurm':
            return [sys.executable, '-m', 'mixedconv.slurm', self.partition, job_name, config,
                    work_dir, *extra]
        args = ['-m', 'mixedconv.train', config, '--work-dir', work_dir, *extra]
        if self.launcher == 'pytorch':
            return [sys.executable, '-m', 'torch.distributed.run',
                    f'--nproc_per_node={self.gpus}', *args, '--launcher', 'pytorch']
        return [sys.executable, *args]

    def test_command(self, config, work_dir, checkpoint):
        """The command line that evaluates ``checkpoint`` with ``config``'s test loop into
        ``work_dir``; None for Slurm (:mod:`mixedconv.slurm` launches training only)."""
        if self.launcher == 'slurm':
            return None
        args = ['-m', 'mixedconv.test', config, checkpoint, '--work-dir', work_dir]
        if self.launcher == 'pytorch':
            return [sys.executable, '-m', 'torch.distributed.run',
                    f'--nproc_per_node={self.gpus}', *args, '--launcher', 'pytorch']
        return [sys.executable, *args]

    def env(self):
        env = dict(os.environ, PYTHON=sys.executable, **{DIE_WITH_PARENT_ENV: '1'})
        if self.launcher == 'slurm':
            env['GPUS'] = str(self.gpus)
        return env


def run_logged(cmd, log_path, label, env=None):
    """Run ``cmd``, append its output to ``log_path`` and echo progress lines.

    The child runs in its own process group, which is killed when the benchmark stops on
    an exception or a signal, and it gets SIGKILL from the kernel if the benchmark is
    killed outright. ``tools/train.py`` asks the same for its own children (torchrun's
    workers), so no trainer outlives the benchmark.

    Returns:
        tuple[int, list[str]]: exit code and the last output lines.
    """
    tail = deque(maxlen=200)
    with open(log_path, 'a') as log, subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
            cwd=REPO, start_new_session=True, preexec_fn=die_with_parent) as proc:
        try:
            for line in proc.stdout:
                log.write(line)
                tail.append(line.rstrip())
                if PROGRESS.search(line):
                    print(f'[{label}] {line.rstrip()[-160:]}', flush=True)
        except BaseException:
            _kill_group(proc)
            raise
        return proc.wait(), list(tail)


def _kill_group(proc, grace_s=10):
    """SIGTERM the child's process group, SIGKILL what is left after ``grace_s``."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=grace_s)
            return
        except subprocess.TimeoutExpired:
            continue


def error_of(tail):
    """The reason a child failed, whole: our tools print ``error: ...`` (possibly several
    lines) for user errors; otherwise the last exception of a traceback."""
    starts = [i for i, line in enumerate(tail) if line.startswith('error: ')]
    if not starts:
        starts = [i for i, line in enumerate(tail) if line.startswith('Traceback')]
        if starts:
            lines = tail[starts[-1]:]
            ends = [i for i, line in enumerate(lines)
                    if re.match(r'[\w.]+(Error|Exception|Interrupt)\b', line)]
            return '\n'.join(lines[ends[-1]:] if ends else lines[-3:])
    if starts:
        return '\n'.join(tail[starts[-1]:])
    errors = [line for line in tail if re.search(r'Error|error:', line)]
    return errors[-1] if errors else '\n'.join(tail[-3:])
