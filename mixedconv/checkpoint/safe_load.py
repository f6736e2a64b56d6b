"""Reading a checkpoint without running anything from it.

:func:`safe_load` reads a checkpoint with ``torch.load(weights_only=True)`` and an allow-list
of the few non-tensor globals that the checkpoints people hand us contain besides tensors
(:func:`allow_list`: mmengine's ``HistoryBuffer``, numpy arrays and scalars under their numpy
1 and numpy 2 names, the ``argparse.Namespace`` the official MAE/ConvMAE ``save_model``
stores, a few builtins). Every entry only builds data when unpickled; the reasons are in
:func:`allow_list` and docs/checkpoints.md. :func:`install_safe_loader` makes it mmengine's
loader for local files, so that every runner (``resume``, ``load_from``,
``init_cfg=Pretrained``) uses it. ``weights_only`` is never switched off: a checkpoint is a
pickle, and an unrestricted unpickler runs whatever code the file asks it to.
"""
import _compat_pickle
import argparse
import contextvars
import glob
import math
import os.path as osp
import pickle
import pickletools
import re
import zipfile
from dataclasses import dataclass

import numpy as np
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader

from .errors import CheckpointError, CheckpointRefused


# ----------------------------------------------------------------------------------------
# the allow-list


@dataclass(frozen=True)
class AllowedGlobal:
    """One global a checkpoint's pickle may name.

    ``name`` is the dotted name as the pickle writes it, ``obj`` what the unpickler gets for
    it (the real object, or a stand-in that accepts only the data-building calls), ``why``
    what the weights-only unpickler can do with it: ``NEWOBJ`` calls ``obj.__new__``,
    ``BUILD`` calls ``__setstate__`` or updates ``__dict__``, ``REDUCE`` calls ``obj(*args)``
    with arguments that are themselves unpickled data.
    """
    name: str
    obj: object
    why: str


HISTORY_BUFFER_STATISTICS = ('min', 'max', 'current', 'mean')


def _history_buffer_statistic(owner, name):
    """Stands in for ``builtins.getattr`` while unpickling.

    A ``HistoryBuffer`` pickles its statistics methods as ``getattr(HistoryBuffer, 'min')``
    etc.; only those resolve, any other ``getattr`` in a pickle is refused.
    """
    if owner is HistoryBuffer and name in HISTORY_BUFFER_STATISTICS:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f'mixedconv refused: builtins.getattr({_short(owner)}, {_short(name)})')


def _pickled_bytes(*args):
    """Stands in for ``builtins.bytes`` while unpickling.

    Pickle protocol 2 (``torch.save``'s) writes an empty ``bytes`` as ``bytes()`` (numpy's
    empty arrays, an empty ``HistoryBuffer``); non-empty ones go through ``_codecs.encode``.
    Only ``bytes()`` and a copy of a bytes-like argument are accepted, not ``bytes(n)``, which
    would allocate n bytes.
    """
    if not args:
        return b''
    if len(args) == 1 and isinstance(args[0], (bytes, bytearray)):
        return bytes(args[0])
    raise pickle.UnpicklingError(f'mixedconv refused: builtins.bytes{_short(args)}')


# the size of the file being read: no allow-listed constructor may allocate more
_ALLOCATION_LIMIT = contextvars.ContextVar('mixedconv_allocation_limit', default=None)


def _check_allocation(what, nbytes):
    """Refuse an allocation of ``nbytes`` larger than the file being read (a pickle of a few
    hundred bytes must not make the loader allocate gigabytes)."""
    limit = _ALLOCATION_LIMIT.get()
    if limit is not None and nbytes > limit:
        raise pickle.UnpicklingError(
            f'mixedconv refused allocation: {what} allocates {nbytes} bytes, more than the '
            f'{limit} bytes of the file')


def _nbytes(shape, dtype):
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    return math.prod(int(n) for n in shape) * np.dtype(dtype).itemsize


def _bounded_bytearray(*args):
    """Stands in for ``builtins.bytearray`` (in torch's own weights-only set) while
    :func:`safe_load` reads a file: ``bytearray(n)`` allocates ``n`` bytes and is bounded
    by the file's size; ``bytearray(text, encoding)`` and copies are as they are."""
    if len(args) == 1 and isinstance(args[0], int) and not isinstance(args[0], bool):
        _check_allocation(f'builtins.bytearray({args[0]})', args[0])
    return bytearray(*args)


class _BoundedNdarray(np.ndarray):
    """Stands in for ``numpy.ndarray``: calling it (or ``NEWOBJ``) allocates an array of
    the given shape, bounded by the file's size; the result is a plain ``numpy.ndarray``.
    numpy's own pickles name the class only as ``_reconstruct``'s subtype. It is named as
    the class it stands for, so that messages show ``numpy.ndarray``."""
    __module__ = 'numpy'
    __qualname__ = 'ndarray'

    def __new__(cls, shape, dtype=float, buffer=None, *args, **kwargs):
        if buffer is None:
            _check_allocation(f'numpy.ndarray({shape!r}, {dtype!r})', _nbytes(shape, dtype))
        return np.ndarray.__new__(np.ndarray, shape, dtype, buffer, *args, **kwargs)


def _short(obj, limit=60):
    text = repr(obj)
    return text if len(text) <= limit else text[:limit] + '...'


def _numpy_entries():
    """numpy's array, scalar and dtype reconstructors under the names numpy 2 (``numpy._core``)
    and numpy 1 (``numpy.core``) pickles write; numpy 2 keeps ``numpy.core`` only as an alias,
    so both names map to the same function. The constructors that allocate take stand-ins
    that bound the allocation by the file's size."""
    core = getattr(np, '_core', None) or np.core

    def reconstruct(subtype, shape, dtype):
        if subtype is _BoundedNdarray:
            subtype = np.ndarray
        _check_allocation(f'_reconstruct(shape={shape!r}, dtype={dtype!r})',
                          _nbytes(shape, dtype))
        return core.multiarray._reconstruct(subtype, shape, dtype)

    def scalar(dtype, *args):
        _check_allocation(f'scalar({dtype!r})', np.dtype(dtype).itemsize)
        return core.multiarray.scalar(dtype, *args)

    entries = []
    for name, func, why in (
            ('_reconstruct', reconstruct,
             'a stand-in for _reconstruct(subtype, shape, dtype), ndarray.__new__ of an ndarray '
             'subtype (only numpy.ndarray is allowed): an empty array (numpy pickles shape '
             '(0,); a larger one is bounded by the file\'s size), filled by '
             'ndarray.__setstate__ from raw bytes, or, for object arrays, from a list of '
             'already-unpickled objects (numpy refuses raw bytes for object arrays)'),
            ('scalar', scalar,
             'a stand-in for scalar(dtype, raw bytes), which builds a numpy scalar from its '
             'bytes (its size bounded by the file\'s); for the object dtype it returns the '
             '(already unpickled) object')):
        for module in ('numpy._core.multiarray', 'numpy.core.multiarray'):
            entries.append(AllowedGlobal(f'{module}.{name}', func, why))
    entries.append(AllowedGlobal(
        'numpy.ndarray', _BoundedNdarray, 'a stand-in for the array class: __new__ allocates '
        "an array of a given shape and dtype, bounded by the file's size; __setstate__ "
        'copies raw bytes into it'))
    entries.append(AllowedGlobal(
        'numpy.dtype', np.dtype, 'dtype(spec, align, copy) parses a type description (a '
        'string, a tuple or a dict of field names and formats); __setstate__ sets byte order '
        'and fields'))
    dtype_classes = {type(np.dtype(t)) for t in np.sctypeDict.values()}
    for cls in sorted(dtype_classes, key=lambda c: c.__qualname__):
        entries.append(AllowedGlobal(
            f'{cls.__module__}.{cls.__qualname__}', cls,
            'a numpy DType class (numpy.dtypes): calling it returns that dtype'))
    # numpy.void(n) and numpy.bytes_(n) allocate n bytes: not on the list
    scalar_types = set(np.sctypeDict.values()) - {np.void, np.bytes_}
    for cls in sorted(scalar_types, key=lambda c: c.__name__):
        names = {f'numpy.{cls.__name__}'}
        if cls is np.bool_:
            names.add('numpy.bool_')  # numpy 1 name of numpy.bool
        for name in sorted(names):
            entries.append(AllowedGlobal(
                name, cls, 'a numpy scalar type (a dtype given as a class, in a config or '
                'args): calling it converts a value to that scalar'))
    return entries


def allow_list():
    """Every global a checkpoint may name beyond torch's own weights-only set (tensors,
    storages, dtypes, ``collections.OrderedDict``/``Counter``, ``builtins.set``/``complex``/
    ``bytearray``, ``_codecs.encode``), each with the reason it only builds data. torch's
    ``bytearray`` is bounded by the file's size while :func:`safe_load` reads
    (:func:`_bounded_bytearray`).

    Callables that act on the world (``os.system``, ``eval``, ``subprocess.*``,
    ``torch.load``, ``numpy.load``/``fromfile``/``frombuffer``, ``operator.attrgetter``,
    ``functools.partial``, ``getattr`` in general, ...) are not on it and a pickle naming one
    is refused.

    Returns:
        list[AllowedGlobal]
    """
    return [
        AllowedGlobal(
            'mmengine.logging.history_buffer.HistoryBuffer', HistoryBuffer,
            "mmengine's message hub scalars. NEWOBJ is object.__new__; BUILD is its "
            '__setstate__, which updates __dict__ and registers the statistics methods the '
            'state names, objects the allow-list itself resolved (the getattr stand-in gives '
            "only HistoryBuffer's own); calling it turns two lists into numpy arrays"),
        AllowedGlobal(
            'builtins.getattr', _history_buffer_statistic,
            'a stand-in, not the real getattr: it resolves only HistoryBuffer.min/max/current/'
            'mean, the statistics methods a HistoryBuffer pickles by name, and refuses any '
            'other attribute of any other object'),
        AllowedGlobal(
            'builtins.bytes', _pickled_bytes,
            'a stand-in for bytes: protocol 2 pickles b"" as bytes() (empty numpy arrays, an '
            'empty HistoryBuffer); it accepts bytes() and bytes(<bytes>) only, not bytes(n)'),
        AllowedGlobal(
            'argparse.Namespace', argparse.Namespace,
            "the 'args' of the official MAE/ConvMAE util/misc.py save_model. An attribute bag "
            'without __reduce__ or __setstate__: NEWOBJ is object.__new__, BUILD updates its '
            '__dict__; calling it takes keyword arguments only'),
        AllowedGlobal('builtins.slice', slice,
                      'slice(start, stop, step) stores three objects'),
        AllowedGlobal('builtins.frozenset', frozenset,
                      'frozenset(items) stores already-unpickled objects, as the set torch '
                      'allows'),
        AllowedGlobal('builtins.range', range,
                      'range(start, stop, step) of integers; nothing is computed'),
        *_numpy_entries(),
    ]


# the real array class, under a name no pickle can write (GLOBAL names end at a newline): the
# weights-only unpickler runs BUILD (ndarray.__setstate__, a copy of raw bytes) only on
# instances of allowed types, and the arrays _reconstruct returns are numpy.ndarray; a pickle
# that names numpy.ndarray gets the bounded stand-in
_ARRAY_TYPE = (np.ndarray, 'numpy.ndarray\n(the type of unpickled arrays)')


def safe_globals():
    """The allow-list as ``torch.serialization.safe_globals`` takes it: ``(obj, 'name')``
    tuples, so that an object is found under the name the pickle writes (``numpy.core.*``
    for numpy 1 pickles) and stand-ins under the builtin's name; plus the array type, which
    no pickle can name."""
    return [(entry.obj, entry.name) for entry in allow_list()] + [_ARRAY_TYPE]


# ----------------------------------------------------------------------------------------
# loading

REFUSAL_FIX = (
    'mixedconv never unpickles checkpoints with weights_only=False. If the file should hold '
    'only weights, download it again from its publisher (it may have been altered) or, where '
    'it was made, re-save only its tensors (torch.save(model.state_dict(), PATH)); if this '
    'global is plain data a known trainer writes, it belongs on the allow-list in '
    'docs/checkpoints.md')

# what torch's weights-only unpickler says, without the advice around it
_REFUSALS = (
    (re.compile(r'GLOBAL (\S+) was not an allowed global'), 'the global {}'),
    (re.compile(r'unsupported GLOBAL (\S+) whose module \S+ is blocked'), 'the global {}'),
    (re.compile(r'mixedconv refused: (.+)'), 'the call {}'),
    (re.compile(r'Trying to call reduce for unrecognized function (.+)'), 'a call of {}'),
    (re.compile(r'Can only create new object for .* but got (.+)'), 'a new object of {}'),
    (re.compile(r'Can only build .* but got (.+)'), 'setting the state of {}'),
    (re.compile(r'Unsupported operand (\d+)'), 'pickle opcode {}'),
    (re.compile(r'(Can only \w+ (?:to|for) .+)'), '{}'),
    (re.compile(r'(persistent_load .+|Only persistent_load .+)'), '{}'),
)


def _refusal(filename, text):
    """One line: what the pickle asked for, that it was refused, and the fix."""
    allocation = re.search(r'mixedconv refused allocation: (.+)', text)
    if allocation:
        return (f'refused to load checkpoint {filename}: its pickle asks for '
                f'{allocation.group(1).strip()}; the arrays of a checkpoint are stored in it, '
                'so the file is crafted or corrupt, and nothing was allocated or run. Download '
                'it again from its publisher or, where it was made, re-save its tensors '
                '(torch.save(model.state_dict(), PATH))')
    for pattern, template in _REFUSALS:
        match = pattern.search(text)
        if match:
            found = match.group(1).strip().rstrip('.')
            if template == 'the global {}':
                found = _python3_name(found)
            if template == 'pickle opcode {}':
                found = _opcode_name(int(found))
            what = template.format(found)
            break
    else:
        what = 'an object outside the allow-list'
    return (f'refused to load checkpoint {filename}: its pickle asks for {what}, which is not '
            'on the allow-list of data-only objects; unpickling it could run code, so loading '
            f'was refused and nothing from the file was run. {REFUSAL_FIX}')


def _python3_name(name):
    """A global as Python 3 names it: torch drops the ``builtins.`` of builtins, and protocol
    2 pickles write Python 2 names (``commands.check_output`` is ``subprocess.check_output``,
    ``__builtin__.eval`` is ``builtins.eval``)."""
    if '.' not in name:
        return f'builtins.{name}'
    module, _, attr = name.rpartition('.')
    mapped = _compat_pickle.NAME_MAPPING.get((module, attr))
    if mapped is None and module in _compat_pickle.IMPORT_MAPPING:
        mapped = (_compat_pickle.IMPORT_MAPPING[module], attr)
    if mapped is None or '.'.join(mapped) == name:
        return name
    return f'{name} (Python 3: {".".join(mapped)})'


def _opcode_name(code):
    names = {op.code.encode('latin-1')[0]: op.name for op in pickletools.opcodes}
    return f'{names.get(code, "?")} (0x{code:02x}, not in torch.save\'s protocol 2)'


def _check_archive_names(filename):
    """Refuse a zip checkpoint with an entry outside its archive folder: ``torch.save``
    writes ``<name>/data.pkl``, ``<name>/data/0``, ...; ``..``, absolute or drive paths are
    what a path-traversal archive carries (torch reads entries by name and never extracts
    them, but such a file is not one torch wrote)."""
    if not zipfile.is_zipfile(filename):
        return
    try:
        with zipfile.ZipFile(filename) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError) as err:
        raise CheckpointError(f'checkpoint {filename} is truncated or corrupt ({err}); use an '
                              'intact copy') from None
    for name in names:
        parts = name.replace('\\', '/').split('/')
        if name.startswith(('/', '\\')) or '..' in parts or re.match(r'[A-Za-z]:([/\\]|$)', name) \
                or '\0' in name:
            raise CheckpointRefused(
                f'refused to load checkpoint {filename}: its zip archive has an entry named '
                f'{name!r}, outside the archive folder, which torch.save never writes (a '
                f'path-traversal archive); nothing was read or extracted. {REFUSAL_FIX}')


def _first_line(err):
    """The first line of an error from torch, without torch's weights_only advice."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return re.split(r'\s*(?:In PyTorch 2\.6|Re-running `torch\.load`|Weights only load)',
                    text)[0].strip() or type(err).__name__


def _check_is_checkpoint_file(filename):
    """Name a path that cannot be a checkpoint before torch reads it: a missing path, a
    directory, an empty file, a file that is neither a zip archive (``torch.save``) nor a
    pickle (the legacy format)."""
    if osp.isdir(filename):
        found = sorted(glob.glob(osp.join(glob.escape(filename), '*.pth')))
        hint = f' (it holds {", ".join(osp.basename(f) for f in found[-3:])})' if found else ''
        raise IsADirectoryError(f'{filename} is a directory, not a checkpoint file; pass one '
                                f'of its checkpoint files{hint}')
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint file not found: {filename}')
    with open(filename, 'rb') as f:
        head = f.read(4)
    if not head:
        raise CheckpointError(f'{filename} is empty, not a checkpoint; use an intact copy')
    if head[:2] != b'PK' and head[:1] != b'\x80':
        raise CheckpointError(
            f'{filename} is not a checkpoint: it is neither a torch.save zip archive nor a '
            f'pickle (it starts with {head!r}); pass the .pth file torch.save wrote')


def _install_bounded_bytearray():
    """torch's weights-only unpickler resolves ``builtins.bytearray`` from its own table
    before the user's allow-list; give that entry the bounded stand-in (it bounds only while
    :func:`safe_load` reads, elsewhere it is ``bytearray``)."""
    from torch import _weights_only_unpickler
    _weights_only_unpickler._get_allowed_globals()['builtins.bytearray'] = _bounded_bytearray


def safe_load(filename, map_location='cpu'):
    """``torch.load(filename, weights_only=True)`` with the allow-list (:func:`allow_list`).

    While it reads, no allow-listed constructor may allocate more than the file's size, and
    mmengine's ``HistoryBuffer`` statistics methods (a class-level table its
    ``__setstate__`` updates) are restored afterwards: a file cannot rebind them for the
    process.

    Raises:
        FileNotFoundError: the file does not exist.
        IsADirectoryError: the path is a directory.
        CheckpointRefused: the pickle names a global outside the allow-list, or asks for a
            call, an allocation or an opcode the weights-only unpickler does not allow, or the
            file is a TorchScript archive or a zip with paths outside its folder; the message
            names what was asked for. Nothing from the file has been run.
        CheckpointError: the file is empty, truncated or not a checkpoint.
    """
    filename = osp.expanduser(str(filename))
    _check_is_checkpoint_file(filename)
    _check_archive_names(filename)
    _install_bounded_bytearray()
    statistics = dict(HistoryBuffer._statistics_methods)
    limit = _ALLOCATION_LIMIT.set(osp.getsize(filename))
    try:
        with torch.serialization.safe_globals(safe_globals()):
            return torch.load(filename, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointRefused(_refusal(filename, str(err))) from None
    except RuntimeError as err:
        if 'TorchScript' in str(err):
            raise CheckpointRefused(
                f'refused to load checkpoint {filename}: it is a TorchScript archive '
                '(torch.jit.save), which holds a program, not only weights. Where the model '
                'was made, save its weights with torch.save(model.state_dict(), PATH)'
            ) from None
        raise CheckpointError(f'checkpoint {filename} is truncated or corrupt '
                              f'({_first_line(err)}); use an intact copy') from None
    except (EOFError, zipfile.BadZipFile, ValueError, KeyError, TypeError, IndexError,
            OverflowError, MemoryError) as err:
        raise CheckpointError(f'checkpoint {filename} is truncated or corrupt '
                              f'({type(err).__name__}: {_first_line(err)}); use an intact '
                              'copy') from None
    finally:
        _ALLOCATION_LIMIT.reset(limit)
        HistoryBuffer._statistics_methods.clear()
        HistoryBuffer._statistics_methods.update(statistics)


def install_safe_loader():
    """Make :func:`safe_load` mmengine's loader for paths without a URL scheme, which every
    runner (``resume``, ``load_from``) and ``init_cfg=Pretrained`` go through (idempotent)."""
    CheckpointLoader.register_scheme(prefixes='', force=True)(safe_load)
