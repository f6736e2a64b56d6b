"""The benchmark work directory: its layout, its lock, and the checkpoint copies tasks load.

Layout::

    <work_dir>/.benchmark.lock               held while a benchmark works here
    <work_dir>/data/                         generated data (runs without --data-root)
    <work_dir>/pretrain/<method>/            pretraining runs (``--pretrain``)
    <work_dir>/transfer/.staging/            checkpoints being copied in
    <work_dir>/transfer/<run>/pretrained.pth the copy of the checkpoint the run's tasks load
    <work_dir>/transfer/<run>/<task>/        one mmengine work dir per task, with
                                             benchmark_config.py, train.log, summary.json
    <work_dir>/leaderboard/                  leaderboard.md/.csv/.html/.png

``<run>`` is named after the method, backbone and file name of the checkpoint and the first 12
hex digits of the sha256 of its bytes; a checkpoint whose bytes a run already has (the same
file under another name) joins that run instead of being trained again.

One benchmark at a time works in a work directory (an ``flock`` the kernel releases when the
process dies). At the start, the summaries a killed run left at ``running`` become
``interrupted``, and the temporaries it left half-written are removed: only in the folders
above where the benchmark and its trainers write, never elsewhere under the work directory.
"""
import contextlib
import fcntl
import glob
import os
import os.path as osp
import re
import shutil
from dataclasses import dataclass, replace

from ..fileio import remove_stale_temporaries
from ..results import (SUMMARY_NAME, copy_and_hash, read_summary, short_sha, utc_now,
                       write_summary)
from .checkpoints import CheckpointError, CheckpointInfo, describe_checkpoint

LOCK_NAME = '.benchmark.lock'
STAGING = '.staging'
WEIGHTS = 'pretrained.pth'


class BenchmarkBusy(RuntimeError):
    """Another benchmark works in the same work directory."""


@dataclass
class Staged:
    """A checkpoint copied into a benchmark work directory.

    Attributes:
        info: What the checkpoint is (:func:`describe_checkpoint` of the copy), with the
            path the user gave.
        sha256: The sha256 of the copy's bytes, which the tasks load.
        run_dir: ``<work_dir>/transfer/<run>``.
        weights: The copy, ``<run_dir>/pretrained.pth``.
    """
    info: CheckpointInfo
    sha256: str
    run_dir: str
    weights: str


def transfer_dir(work_dir):
    return osp.join(work_dir, 'transfer')


def run_name(info, sha256):
    """``<method>_<backbone>_<file stem>-<short sha256>``: different bytes never share it."""
    stem = re.sub(r'[^\w.-]+', '-', osp.splitext(osp.basename(info.path))[0])
    return f'{info.method.lower()}_{info.backbone_label.lower()}_{stem}-{short_sha(sha256)}'


def stage_checkpoint(path, work_dir, method=None, arch=None):
    """Copy the checkpoint ``path`` into ``work_dir``, hash the copied bytes and tell what
    they are; returns a :class:`Staged`.

    The copy is described (:func:`describe_checkpoint`), not the file, so the arch, method
    and sha256 are those of the bytes the tasks will load. A run directory that already holds
    these bytes (found by their sha256) is reused.

    Raises:
        CheckpointError, ValueError: as :func:`describe_checkpoint`, naming ``path``.
        OSError: ``path`` cannot be read or the work directory written.
    """
    path = osp.abspath(path)
    staging = osp.join(transfer_dir(work_dir), STAGING)
    copy = osp.join(staging, osp.basename(path))
    sha = copy_and_hash(path, copy)
    try:
        info = describe_checkpoint(copy, method, arch)
    except (CheckpointError, ValueError) as err:
        os.unlink(copy)
        with contextlib.suppress(OSError):
            os.rmdir(staging)
        raise type(err)(str(err).replace(copy, path)) from None
    info.path = path
    run_dir = existing_run_dir(work_dir, sha) or osp.join(transfer_dir(work_dir),
                                                         run_name(info, sha))
    os.makedirs(run_dir, exist_ok=True)
    weights = osp.join(run_dir, WEIGHTS)
    os.replace(copy, weights)
    with contextlib.suppress(OSError):
        os.rmdir(staging)
    return Staged(info, sha, run_dir, weights)


def existing_run_dir(work_dir, sha256):
    """The run directory whose name ends in the short sha256 and whose summaries record
    exactly ``sha256`` (or that has none yet), or None."""
    for run_dir in sorted(glob.glob(osp.join(transfer_dir(work_dir), f'*-{short_sha(sha256)}'))):
        recorded = {_recorded_sha(path)
                    for path in glob.glob(osp.join(run_dir, '*', SUMMARY_NAME))}
        if not recorded - {None} or recorded == {sha256}:
            return run_dir
    return None


def _recorded_sha(path):
    try:
        return read_summary(path).checkpoint_sha256
    except Exception:  # a malformed summary is reported where it is read
        return None


def release_weights(staged):
    """Remove the run's checkpoint copy (once every task of the run is done)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(staged.weights)


@contextlib.contextmanager
def benchmark_lock(work_dir):
    """Hold ``<work_dir>/.benchmark.lock`` for the benchmark's lifetime (re-entrant within
    one process), and tidy what a killed run left (see the module docstring).

    Raises:
        BenchmarkBusy: another live process holds the lock.
        NotADirectoryError: ``work_dir`` is a file.
    """
    work_dir = osp.abspath(work_dir)
    if work_dir in _HELD_LOCKS:
        yield
        return
    if osp.exists(work_dir) and not osp.isdir(work_dir):
        raise NotADirectoryError(f'--work-dir {work_dir} is a file; give a folder (it is '
                                 'created when missing)')
    os.makedirs(work_dir, exist_ok=True)
    path = osp.join(work_dir, LOCK_NAME)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors='replace').strip() or 'unknown'
            raise BenchmarkBusy(
                f'another benchmark (pid {holder}) is running in {work_dir}; wait for it to '
                'finish, or give this one another --work-dir') from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f'{os.getpid()}\n'.encode(), 0)
        _tidy_after_kill(work_dir)
        _HELD_LOCKS.add(work_dir)
        try:
            yield
        finally:
            _HELD_LOCKS.discard(work_dir)
    finally:
        os.close(fd)


_HELD_LOCKS = set()


def _written_dirs(work_dir):
    """The folders the benchmark and its trainers write into (see the module docstring)."""
    transfer = transfer_dir(work_dir)
    return [osp.join(work_dir, 'leaderboard'), transfer,
            *glob.glob(osp.join(work_dir, 'pretrain', '*', '')),
            *glob.glob(osp.join(transfer, '*', '')),
            *glob.glob(osp.join(transfer, '*', '*', ''))]


def _tidy_after_kill(work_dir):
    for path in glob.glob(osp.join(transfer_dir(work_dir), '*', '*', SUMMARY_NAME)):
        try:
            record = read_summary(path)
        except Exception:  # a malformed summary is reported where it is read
            continue
        if record.status == 'running':
            write_summary(path, replace(record, status='interrupted', finished=utc_now(),
                                        error='the benchmark was stopped before the task '
                                              'finished'))
    shutil.rmtree(osp.join(transfer_dir(work_dir), STAGING), ignore_errors=True)
    for directory in _written_dirs(work_dir):
        for removed in remove_stale_temporaries(osp.normpath(directory), recursive=False):
            print(f'removed a temporary left by a killed run: {removed}', flush=True)
