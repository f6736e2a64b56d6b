"""Checkpoint identity: the sha256 of a checkpoint's bytes, and its short form in names.

A result is recorded under the checkpoint that produced it, so the hash the benchmark records
must be the hash of the bytes the task loaded: :func:`copy_and_hash` copies a checkpoint into
the benchmark's work directory and hashes the bytes it writes, and the task loads that copy.
A file swapped or rewritten while the task runs then changes nothing the task sees.

The leaderboard also names the checkpoints of plain mmengine work directories, read from
configs that someone else wrote. :func:`checkpoint_sha256` hashes such a path only when it is
a regular file that starts like a torch checkpoint and is at most :data:`MAX_HASH_BYTES`
long (a device such as ``/proc/kmsg`` or a FIFO would block the read, a data archive would
take minutes), and only once per file and process.
"""
import hashlib
import os
import os.path as osp
import stat
import struct
import warnings

SHORT_SHA = 12  # hex digits of a checkpoint's sha256 that name its runs and rows
CHUNK = 1 << 20
MAX_HASH_BYTES = 16 << 30  # a ViT-H pretraining checkpoint with its optimizer state: ~8 GB


def short_sha(sha256):
    """The first :data:`SHORT_SHA` hex digits of a sha256."""
    return sha256[:SHORT_SHA]


def sha256_of(path, chunk_size=CHUNK):
    """Hex SHA-256 digest of the file at ``path``, read in ``chunk_size`` byte chunks."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(chunk_size), b''):
            digest.update(chunk)
    return digest.hexdigest()


def copy_and_hash(src, dst):
    """Copy ``src`` to ``dst`` and return the sha256 of the bytes written.

    The copy goes to a temporary file beside ``dst``
    (:func:`~mixedconv.fileio.create_temporary`, whose names
    :func:`~mixedconv.fileio.remove_stale_temporaries` tidies after a kill), is
    fsynced and renamed over ``dst``, and is made read-only: ``dst`` holds exactly the bytes
    hashed, whatever happens to ``src`` later.

    Raises:
        OSError: ``src`` cannot be read or ``dst`` written; nothing is left at ``dst``.
    """
    from ..fileio import create_temporary  # imports mmengine, which reading results needs not
    directory = osp.dirname(osp.abspath(dst))
    os.makedirs(directory, exist_ok=True)
    digest = hashlib.sha256()
    fd, tmp = create_temporary(dst)
    try:
        with open(src, 'rb') as source, os.fdopen(fd, 'wb') as out:
            for chunk in iter(lambda: source.read(CHUNK), b''):
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o444)
        os.replace(tmp, dst)
    except BaseException:
        if osp.lexists(tmp):
            os.unlink(tmp)
        raise
    return digest.hexdigest()


def _looks_like_checkpoint(head):
    """Whether the first bytes of a file are those of ``torch.save`` output: a zip archive
    whose first entry is ``<archive>/data.pkl`` (the zip format), or a pickle (the legacy
    format, protocol 2 and later)."""
    if head[:4] == b'PK\x03\x04' and len(head) >= 30:
        name_length = struct.unpack('<H', head[26:28])[0]
        name = head[30:30 + name_length]
        return name.endswith(b'/data.pkl') or name == b'data.pkl'
    return len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5


_HASHED = {}  # (device, inode, size, mtime_ns) -> sha256 or None


def checkpoint_sha256(path, limit=MAX_HASH_BYTES):
    """The sha256 of ``path`` when it is a checkpoint on this machine, else None.

    Hashed only when the path is a regular file (after symlinks), at most ``limit`` bytes,
    starting like a torch checkpoint; each file once per process. The file is opened without
    blocking and checked again after opening, so a path that turns into a FIFO or a device
    in between is not read. A file passed over for its size is named in a warning.
    """
    try:
        info = os.stat(path)
    except (OSError, ValueError):
        return None
    if not stat.S_ISREG(info.st_mode):
        return None
    key = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)
    if key in _HASHED:
        return _HASHED[key]
    _HASHED[key] = None
    if info.st_size > limit:
        warnings.warn(f'{path} ({info.st_size} bytes) is larger than the {limit} bytes the '
                      'leaderboard hashes; its rows are matched by path, not by content')
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, 'rb') as f:
        opened = os.fstat(f.fileno())
        if not stat.S_ISREG(opened.st_mode) or opened.st_size > limit:
            return None
        head = f.read(256)
        if not _looks_like_checkpoint(head):
            return None
        digest = hashlib.sha256(head)
        left = opened.st_size - len(head)
        while left > 0:  # at most the size it had when opened: a growing file ends too
            chunk = f.read(min(CHUNK, left))
            if not chunk:
                break
            digest.update(chunk)
            left -= len(chunk)
    _HASHED[key] = digest.hexdigest()
    return _HASHED[key]
