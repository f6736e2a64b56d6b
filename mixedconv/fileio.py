"""Atomic writes for everything mmengine saves to local disk, checkpoints first.

mmengine serialises a checkpoint to bytes and hands them to the file backend registered for
plain paths (``LocalBackend.put``), which opens the final name and writes into it: a crash, a
full disk or a SIGKILL in the middle leaves a truncated ``iter_N.pth`` that a later
``--resume`` picks up. :class:`AtomicLocalBackend` replaces that backend
(:func:`install_atomic_writes`, which registering mixedconv calls): it writes to a
temporary file in the same directory, flushes and fsyncs it, and renames it over the final
name, so the name holds either the previous
complete file or the new complete one. mmengine writes ``last_checkpoint`` only after
``put`` returned, so it never names a checkpoint that was not fully written.
"""
import os
import os.path as osp
import re
import secrets

from mmengine.fileio import LocalBackend, register_backend


def _current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_current_umask()  # what open(path, 'w') would give a new file


class WriteFailed(OSError):
    """A write that failed part-way; its message names the destination, not the temporary,
    and the fix."""

    def __str__(self):
        return self.strerror


def atomic_write(path, data):
    """Write ``data`` to ``path`` so that readers see the old file or all of the new one.

    Args:
        path (str | os.PathLike): destination; missing parent directories are created.
        data (bytes): the file's new content.

    Raises:
        WriteFailed: (an ``OSError``) the write failed (disk full, file size limit, ...).
            ``path`` is then unchanged and the temporary file is removed.
    """
    path = osp.abspath(os.fspath(path))
    directory = osp.dirname(path)
    os.makedirs(directory, exist_ok=True)
    fd, tmp = create_temporary(path)
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException as err:
        if osp.exists(tmp):
            os.unlink(tmp)
        if isinstance(err, OSError):
            raise WriteFailed(err.errno, f'could not write {path} ({err.strerror or err}); '
                              'the previous file is unchanged: free disk space (or raise the '
                              'file size limit) and run again') from err
        raise
    _fsync_directory(directory)


_TEMPORARY_TAG = 'mixedconv-tmp'
TEMPORARY = re.compile(r'^\..+\.' + _TEMPORARY_TAG + r'-[0-9a-f]{8}\.part$')
"""The names :func:`create_temporary` gives, and only those: a user's ``.draft.part`` never
matches, so :func:`remove_stale_temporaries` never deletes it."""


def create_temporary(path):
    """Create an empty temporary file beside ``path`` (mode 0600, opened for writing),
    named ``.<name>.mixedconv-tmp-<8 hex digits>.part`` so that :data:`TEMPORARY` matches
    it and nothing a user names.

    Returns:
        tuple[int, str]: the open file descriptor and the temporary's path.
    """
    path = osp.abspath(os.fspath(path))
    directory, name = osp.split(path)
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, 'O_NOFOLLOW', 0) \
        | getattr(os, 'O_BINARY', 0)
    while True:
        tmp = osp.join(directory, f'.{name}.{_TEMPORARY_TAG}-{secrets.token_hex(4)}.part')
        try:
            return os.open(tmp, flags, 0o600), tmp
        except FileExistsError:
            continue


def remove_stale_temporaries(directory, recursive=True):
    """Delete the temporaries that :func:`atomic_write` leaves when its process is killed
    mid-write (names :data:`TEMPORARY` matches), under ``directory``.

    Call it only where no write can be in progress: at the start of a run, by the one
    process that writes there.

    Returns:
        list[str]: the removed paths.
    """
    removed = []
    if not osp.isdir(directory):
        return removed
    walk = os.walk(directory) if recursive else [(directory, [], os.listdir(directory))]
    for root, _, names in walk:
        for name in names:
            path = osp.join(root, name)
            if TEMPORARY.match(name) and osp.isfile(path) and not osp.islink(path):
                os.unlink(path)
                removed.append(path)
    return sorted(removed)


def _fsync_directory(directory):
    """Make the rename itself durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class AtomicLocalBackend(LocalBackend):
    """mmengine's local file backend with atomic :meth:`put` and :meth:`put_text`."""

    def put(self, obj, filepath):
        """Write bytes ``obj`` to ``filepath`` atomically (see :func:`atomic_write`)."""
        atomic_write(filepath, obj)

    def put_text(self, obj, filepath, encoding='utf-8'):
        """Write text ``obj`` to ``filepath`` atomically (see :func:`atomic_write`)."""
        atomic_write(filepath, obj.encode(encoding))


def install_atomic_writes():
    """Make :class:`AtomicLocalBackend` mmengine's backend for plain paths (no URL scheme),
    which ``mmengine.fileio.get_file_backend`` gives ``save_checkpoint`` for every checkpoint
    (idempotent)."""
    register_backend('local', AtomicLocalBackend, force=True, prefixes='')
