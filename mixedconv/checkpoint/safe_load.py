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


def _short(obj, limit=60):
    text = repr(obj)
    return text if len(text) <= limit else text[:limit] + '...'


def _numpy_entries():
    """numpy's array, scalar and dtype reconstructors under the names numpy 2 (``numpy._core``)
    and numpy 1 (``numpy.core``) pickles write; numpy 2 keeps ``numpy.core`` only as an alias,
    so both names map to the same function."""
    core = getattr(np, '_core', None) or np.core
    entries = []
    for func, why in (
            (core.multiarray._reconstruct,
             '_reconstruct(subtype, shape, dtype) is ndarray.__new__ of an ndarray subtype (only '
             'numpy.ndarray is allowed): an empty array, filled by ndarray.__setstate__ from raw '
             'bytes, or, for object arrays, from a list of already-unpickled objects (numpy '
             'refuses raw bytes for object arrays)'),
            (core.multiarray.scalar,
             'scalar(dtype, raw bytes) builds a numpy scalar from its bytes; for the object '
             'dtype it returns the (already unpickled) object')):
        for module in ('numpy._core.multiarray', 'numpy.core.multiarray'):
            entries.append(AllowedGlobal(f'{module}.{func.__name__}', func, why))
    entries.append(AllowedGlobal(
        'numpy.ndarray', np.ndarray, 'the array class: __new__ allocates an array of a given '
        'shape and dtype, __setstate__ copies raw bytes into it'))
    entries.append(AllowedGlobal(
        'numpy.dtype', np.dtype, 'dtype(spec, align, copy) parses a type description (a '
        'string, a tuple or a dict of field names and formats); __setstate__ sets byte order '
        'and fields'))
    dtype_classes = {type(np.dtype(t)) for t in np.sctypeDict.values()}
    for cls in sorted(dtype_classes, key=lambda c: c.__qualname__):
        entries.append(AllowedGlobal(
            f'{cls.__module__}.{cls.__qualname__}', cls,
            'a numpy DType class (numpy.dtypes): calling it returns that dtype'))
    scalar_types = set(np.sctypeDict.values())
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
    ``bytearray``, ``_codecs.encode``), each with the reason it only builds data.

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


def safe_globals():
    """The allow-list as ``torch.serialization.safe_globals`` takes it: ``(obj, 'name')``
    tuples, so that an object is found under the name the pickle writes (``numpy.core.*``
    for numpy 1 pickles) and stand-ins under the builtin's name."""
    return [(entry.obj, entry.name) for entry in allow_list()]


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


def safe_load(filename, map_location='cpu'):
    """``torch.load(filename, weights_only=True)`` with the allow-list (:func:`allow_list`).

    Raises:
        FileNotFoundError: the file does not exist.
        CheckpointRefused: the pickle names a global outside the allow-list, or asks for a
            call or an opcode the weights-only unpickler does not allow, or the file is a
            TorchScript archive or a zip with paths outside its folder; the message names
            what was asked for. Nothing from the file has been run.
        CheckpointError: the file is truncated or not a checkpoint.
    """
    filename = osp.expanduser(str(filename))
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint file not found: {filename}')
    _check_archive_names(filename)
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
    except (EOFError, zipfile.BadZipFile, ValueError, KeyError, TypeError, IndexError) as err:
        raise CheckpointError(f'checkpoint {filename} is truncated or corrupt '
                              f'({type(err).__name__}: {_first_line(err)}); use an intact '
                              'copy') from None


def install_safe_loader():
    """Make :func:`safe_load` mmengine's loader for paths without a URL scheme, which every
    runner (``resume``, ``load_from``) and ``init_cfg=Pretrained`` go through (idempotent)."""
    CheckpointLoader.register_scheme(prefixes='', force=True)(safe_load)
