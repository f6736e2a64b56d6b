"""Hostile checkpoints are refused and nothing in them runs.

Each payload is a real torch file (zip or legacy format) whose pickle, unpickled without
restriction, creates a marker file: the control half of every test loads a copy with
``torch.load(weights_only=False)`` and sees the marker appear, so the payload is proven to
work; then the same payload aimed at another marker goes through our loaders, which must
refuse it with a message naming what it asked for, and that marker must not exist.
"""
import argparse
import os
import os.path as osp
import pickle
import subprocess
import sys
import time
import types
import zipfile

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader

from layouts import TINY_VIT
from mixedconv.benchmark import describe_checkpoint, stage_checkpoint
from mixedconv.checkpoint import (CheckpointError, CheckpointRefused, allow_list,
                                  convert_checkpoint, export_encoder, load_whole, safe_load)
from mixedconv.models.backbones import PlainViT

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


# ----------------------------------------------------------------------------------------
# writing payloads: globals named exactly as an attacker writes them


class Global:
    """Pickles as ``GLOBAL module name``, whatever object that name would be."""

    def __init__(self, module, name):
        self.module, self.name = module, name

    def __call__(self, *args):  # pickle only accepts callables as reduce functions
        raise TypeError('a placeholder')


class Call:
    """Pickles as ``REDUCE``: ``func(*args)`` at unpickling; ``func`` may be a Global or the
    result of another Call."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __call__(self, *args):
        raise TypeError('a placeholder')

    def __reduce__(self):
        return self.func, self.args


class PayloadPickler(pickle._Pickler):
    def save(self, obj, save_persistent_id=True):
        if isinstance(obj, Global):
            self.write(pickle.GLOBAL + f'{obj.module}\n{obj.name}\n'.encode('utf-8'))
            return
        super().save(obj, save_persistent_id)


def _dump(obj, f, protocol=2):
    PayloadPickler(f, protocol=protocol).dump(obj)


PAYLOAD_PICKLE = types.SimpleNamespace(__name__='payload_pickle', Pickler=PayloadPickler,
                                       dump=_dump)


def write_payload(path, payload, legacy=False):
    """A checkpoint with real weights and ``payload`` next to them."""
    weights = {'patch_embed.proj.weight': torch.zeros(32, 3, 16, 16)}
    torch.save({'state_dict': weights, 'meta': {'note': payload}}, path,
               pickle_module=PAYLOAD_PICKLE, _use_new_zipfile_serialization=not legacy)
    return str(path)


def _open_marker(marker):
    return Call(Global('builtins', 'open'), str(marker), 'w')


class _OpenOnUnpickle:
    """An object array element that opens the marker when unpickled."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, 'w')


def _getattr(obj, name):
    return Call(Global('builtins', 'getattr'), obj, name)


def _eval_via_globals(code):
    init = _getattr(Global('mmengine.logging.history_buffer', 'HistoryBuffer'), '__init__')
    module_globals = _getattr(init, '__globals__')
    builtins_dict = Call(_getattr(module_globals, 'get'), '__builtins__')
    return Call(Call(_getattr(builtins_dict, 'get'), 'eval'), code)


def _array():
    return np.arange(4, dtype=np.uint8)


PAYLOADS = {
    'os.system': (lambda m, d: Call(Global('os', 'system'), f'touch {m}'), 'os.system'),
    'posix.system': (lambda m, d: Call(Global('posix', 'system'), f'touch {m}'),
                     'posix.system'),
    'eval': (lambda m, d: Call(Global('builtins', 'eval'), f"open({str(m)!r}, 'w').close()"),
             'builtins.eval'),
    'exec': (lambda m, d: Call(Global('builtins', 'exec'), f"open({str(m)!r}, 'w').close()"),
             'builtins.exec'),
    'open': (lambda m, d: _open_marker(m), 'builtins.open'),
    # getattr(builtins, 'eval')(code): the module comes from __import__
    'getattr_builtins_eval': (
        lambda m, d: Call(_getattr(Call(Global('builtins', '__import__'), 'builtins'), 'eval'),
                          f"open({str(m)!r}, 'w').close()"),
        'builtins.__import__'),
    # through an allow-listed class: HistoryBuffer.__init__.__globals__['__builtins__']['eval']
    'getattr_allowed_class_globals': (
        lambda m, d: _eval_via_globals(f"open({str(m)!r}, 'w').close()"),
        "builtins.getattr(<class 'mmengine.logging.history_buffer.HistoryBuffer'>, '__init__')"),
    'subprocess.Popen': (lambda m, d: Call(Global('subprocess', 'Popen'), ['touch', str(m)]),
                         'subprocess.Popen'),
    'subprocess.check_output': (
        lambda m, d: Call(Global('subprocess', 'check_output'), ['touch', str(m)]),
        'subprocess.check_output'),
    # torch.load(inner, None, pickle): a pickle module turns weights_only off in the inner load
    'nested_torch_load': (
        lambda m, d: Call(Global('torch.serialization', 'load'),
                          write_payload(osp.join(d, f'inner_{osp.basename(m)}.pth'),
                                        _open_marker(m)),
                          None, Call(Global('importlib', 'import_module'), 'pickle')),
        'torch.serialization.load'),
    # numpy.load(npy, None, True): an object array whose element opens the marker
    'numpy.load': (lambda m, d: Call(Global('numpy', 'load'), _npy_payload(m, d), None, True),
                   'numpy.load'),
    # frombuffer(...).tofile(marker)
    'numpy.frombuffer_tofile': (
        lambda m, d: Call(_getattr(Call(Global('numpy', 'frombuffer'), b'pwned', 'uint8'),
                                   'tofile'), str(m)),
        'numpy.frombuffer'),
    # getattr(numpy.ndarray, 'tofile')(array, marker): ndarray itself is allow-listed
    'ndarray.tofile_via_getattr': (
        lambda m, d: Call(_getattr(Global('numpy', 'ndarray'), 'tofile'), _array(), str(m)),
        "builtins.getattr(<class 'numpy.ndarray'>, 'tofile')"),
    # the same on an array instance
    'array.tofile_via_getattr': (
        lambda m, d: Call(_getattr(_array(), 'tofile'), str(m)), 'builtins.getattr(array('),
    # operator.attrgetter('tofile')(array)(marker)
    'operator.attrgetter': (
        lambda m, d: Call(Call(Call(Global('operator', 'attrgetter'), 'tofile'), _array()),
                          str(m)),
        'operator.attrgetter'),
    # functools.partial(open, marker, 'w')()
    'functools.partial': (
        lambda m, d: Call(Call(Global('functools', 'partial'), Global('builtins', 'open'),
                               str(m), 'w')),
        'functools.partial'),
}


def _npy_payload(marker, directory):
    path = osp.join(directory, f'payload_{osp.basename(marker)}.npy')
    array = np.empty(1, dtype=object)
    array[0] = _OpenOnUnpickle(marker)
    np.save(path, array, allow_pickle=True)
    return path


def _wait_for(path, seconds=10.):
    end = time.monotonic() + seconds
    while not osp.exists(path) and time.monotonic() < end:
        time.sleep(0.05)
    return osp.exists(path)


def assert_refusal(message, named):
    assert 'refused to load' in message and named in message, message
    assert 'could run code' in message and 'nothing from the file was run' in message
    assert "torch.save(model.state_dict(), PATH)" in message  # the safe fix
    # torch's own advice is never relayed
    for advice in ('Re-running `torch.load`', 'add_safe_globals', 'safe_globals(',
                   'if you trust'):
        assert advice not in message, message
    assert '\n' not in message


def prove_payload(build, directory):
    """The control: unrestricted unpickling of this payload creates its marker."""
    marker = osp.join(directory, 'control_marker')
    path = write_payload(osp.join(directory, 'control.pth'), build(marker, directory))
    try:
        torch.load(path, weights_only=False)  # the payload's own test copy, in a tmp dir
    except Exception:  # noqa: BLE001  (a payload may fail after it ran)
        pass
    assert _wait_for(marker), 'the payload does not work: the test would prove nothing'


@pytest.mark.parametrize('name', sorted(PAYLOADS))
@pytest.mark.parametrize('legacy', [False, True], ids=['zip', 'legacy'])
def test_payload_refused_and_not_run(name, legacy, tmp_path):
    build, named = PAYLOADS[name]
    prove_payload(build, str(tmp_path))
    marker = tmp_path / 'marker'
    path = write_payload(tmp_path / f'{name}.pth', build(str(marker), str(tmp_path)), legacy)
    with pytest.raises(CheckpointRefused) as err:
        safe_load(path)
    assert_refusal(str(err.value), named)
    assert str(path) in str(err.value)
    time.sleep(0.2 if 'subprocess' in name else 0)  # a Popen would need a moment
    assert not marker.exists()


ENTRY_POINTS = {
    'mmengine_loader': lambda path, tmp: CheckpointLoader.load_checkpoint(path,
                                                                          map_location='cpu'),
    'init_cfg_pretrained': lambda path, tmp: PlainViT(
        TINY_VIT, img_size=64, init_cfg=dict(type='Pretrained', checkpoint=path)).init_weights(),
    'export_encoder': lambda path, tmp: export_encoder(path, tmp / 'out.pth'),
    'convert_checkpoint': lambda path, tmp: convert_checkpoint(path, tmp / 'out.pth'),
    'load_whole': lambda path, tmp: load_whole(torch.nn.Linear(1, 1), path),
    'benchmark_describe': lambda path, tmp: describe_checkpoint(path),
    'benchmark_stage': lambda path, tmp: stage_checkpoint(path, str(tmp / 'work')),
}


@pytest.mark.parametrize('entry', sorted(ENTRY_POINTS))
def test_every_loader_refuses(entry, tmp_path):
    marker = tmp_path / 'marker'
    path = write_payload(tmp_path / 'evil.pth', Call(Global('os', 'system'), f'touch {marker}'))
    with pytest.raises(CheckpointRefused) as err:
        ENTRY_POINTS[entry](str(path), tmp_path)
    assert_refusal(str(err.value), 'os.system')
    assert not marker.exists() and not (tmp_path / 'out.pth').exists()


@pytest.mark.parametrize('tool', ['export_encoder.py', 'convert_checkpoint.py'])
def test_tools_print_one_line_and_exit_2(tool, tmp_path):
    marker = tmp_path / 'marker'
    path = write_payload(tmp_path / 'evil.pth', Call(Global('os', 'system'), f'touch {marker}'))
    out = subprocess.run([sys.executable, osp.join(ROOT, 'tools', tool), path,
                          str(tmp_path / 'out.pth')], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: refused to load'), out.stderr
    assert 'Traceback' not in out.stderr and 'os.system' in lines[0]
    assert not marker.exists() and not (tmp_path / 'out.pth').exists()


# ----------------------------------------------------------------------------------------
# allowed classes used to reach something else


class EvilNamespace(argparse.Namespace):
    """An allow-listed class whose __reduce__ calls something else."""

    def __init__(self, marker):
        super().__init__()
        self.marker = marker

    def __reduce__(self):
        return subprocess.check_output, (['touch', self.marker],)


class BufferSubclass(HistoryBuffer):
    """A subclass of an allowed class is another class (named by its own module)."""

    def __init__(self, marker):
        super().__init__()
        self.marker = marker

    def __reduce__(self):
        return open, (self.marker, 'w')


@pytest.mark.parametrize('cls, named', [(EvilNamespace, 'subprocess.check_output'),
                                        (BufferSubclass, 'io.open')])
def test_reduce_of_an_allowed_class_calling_something_else(cls, named, tmp_path):
    control = tmp_path / 'control'
    torch.save({'args': cls(str(control))}, tmp_path / 'control.pth')
    torch.load(tmp_path / 'control.pth', weights_only=False)  # the test's own payload
    assert control.exists()
    marker = tmp_path / 'marker'
    torch.save({'model': {}, 'args': cls(str(marker))}, tmp_path / 'evil.pth')
    with pytest.raises(CheckpointRefused) as err:
        safe_load(tmp_path / 'evil.pth')
    assert_refusal(str(err.value), named)
    assert not marker.exists()


def test_setstate_planted_on_an_allowed_instance_is_refused(tmp_path):
    """BUILD a Namespace with ``__setstate__`` in its state, then BUILD it again: the second
    BUILD would call the planted attribute. What can be planted is only what the pickle can
    name, and ``os.system`` is refused when named."""
    marker = tmp_path / 'marker'
    body = (pickle.PROTO + b'\x02' + b'cargparse\nNamespace\n' + pickle.EMPTY_TUPLE
            + pickle.NEWOBJ + pickle.EMPTY_DICT + pickle.MARK + b'X\x0c\x00\x00\x00__setstate__'
            + b'cos\nsystem\n' + pickle.DICT + pickle.TUPLE2 + pickle.BUILD
            + b'X' + len(f'touch {marker}').to_bytes(4, 'little') + f'touch {marker}'.encode()
            + pickle.BUILD + pickle.STOP)
    # the control: plain pickle runs os.system through the planted __setstate__
    control_marker = tmp_path / 'control'
    control = body.replace(str(marker).encode(), str(control_marker).encode())
    control = control.replace(len(f'touch {marker}').to_bytes(4, 'little'),
                              len(f'touch {control_marker}').to_bytes(4, 'little'))
    pickle.loads(control)
    assert _wait_for(control_marker)
    path = _zip_with_pickle(tmp_path / 'evil.pth', body)
    with pytest.raises(CheckpointRefused) as err:
        safe_load(path)
    assert_refusal(str(err.value), 'os.system')
    assert not marker.exists()


def _zip_with_pickle(path, data, extra=()):
    """A torch zip checkpoint whose data.pkl is ``data`` (plus ``extra`` entries)."""
    good = path.with_suffix('.good')
    torch.save({}, good)
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(path, 'w', zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            content = data if info.filename.endswith('/data.pkl') else src.read(info.filename)
            dst.writestr(info.filename, content)
        for name, content in extra:
            dst.writestr(name, content)
    return str(path)


def test_stack_global_opcode_of_protocol_4_is_refused(tmp_path):
    """A pickle written with protocol 4 names globals with STACK_GLOBAL, which torch.save
    never writes and the weights-only unpickler does not accept."""
    marker = tmp_path / 'marker'
    data = pickle.dumps(_OpenOnUnpickle(str(marker)), protocol=4)
    pickle.loads(data.replace(b'marker', b'contrl'))  # the control
    assert (tmp_path / 'contrl').exists()
    path = _zip_with_pickle(tmp_path / 'evil.pth', data)
    with pytest.raises(CheckpointRefused) as err:
        safe_load(path)
    assert_refusal(str(err.value), 'pickle opcode')
    assert not marker.exists()


@pytest.mark.parametrize('entry', ['../{marker}', '/{abs_marker}', 'archive/../../{marker}',
                                   'C:/{marker}'])
def test_zip_entries_outside_the_archive_are_refused(entry, tmp_path):
    marker = tmp_path / 'marker'
    name = entry.format(marker=marker.name, abs_marker=str(marker).lstrip('/'))
    path = tmp_path / 'sub' / 'evil.pth'
    path.parent.mkdir()
    torch.save({'state_dict': {'w': torch.zeros(2)}}, path.with_suffix('.good'))
    with zipfile.ZipFile(path.with_suffix('.good')) as src, \
            zipfile.ZipFile(path, 'w', zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info.filename))
        dst.writestr(name, b'written outside the archive if extracted')
    with zipfile.ZipFile(path) as archive:
        assert name in archive.namelist()
    with pytest.raises(CheckpointRefused) as err:
        safe_load(path)
    message = str(err.value)
    assert 'refused to load' in message and repr(name) in message and 'outside' in message
    assert not marker.exists() and not (tmp_path / 'sub' / marker.name).exists()


def test_torchscript_archive_is_refused(tmp_path):
    path = tmp_path / 'scripted.pt'
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(path))
    with pytest.raises(CheckpointRefused) as err:
        safe_load(path)
    message = str(err.value)
    assert 'TorchScript' in message and 'refused' in message
    assert 'weights_only` set to `False`' not in message and 'Re-running' not in message


def test_bytes_stand_in_refuses_an_allocation(tmp_path):
    """``bytes(n)`` would allocate n bytes: only bytes() and bytes(<bytes>) are accepted."""
    path = write_payload(tmp_path / 'alloc.pth', Call(Global('builtins', 'bytes'), 10 ** 12))
    with pytest.raises(CheckpointRefused) as err:
        safe_load(path)
    assert_refusal(str(err.value), 'builtins.bytes(1000000000000,)')


def test_getattr_stand_in_still_resolves_history_buffer_statistics(tmp_path):
    """The one getattr mmengine pickles keeps working (a real statistics method comes back)."""
    path = write_payload(tmp_path / 'stat.pth', _getattr(
        Global('mmengine.logging.history_buffer', 'HistoryBuffer'), 'mean'))
    assert safe_load(path)['meta']['note'] is HistoryBuffer.mean


def test_nothing_on_the_allow_list_acts_on_the_world():
    """Guards the allow-list itself: no entry comes from a module that reaches the system,
    and each says why it only builds data."""
    forbidden = ('os', 'posix', 'nt', 'sys', 'subprocess', 'shutil', 'importlib', 'io',
                 'pickle', 'builtins.eval', 'builtins.exec', 'builtins.open',
                 'builtins.__import__', 'builtins.compile', 'functools', 'operator',
                 'numpy.load', 'numpy.fromfile', 'numpy.frombuffer', 'numpy.save',
                 'torch.load', 'torch.serialization')
    for entry in allow_list():
        assert not any(entry.name == f or entry.name.startswith(f + '.') for f in forbidden), \
            entry.name
        assert len(entry.why) > 20
    names = [e.name for e in allow_list()]
    assert len(names) == len(set(names))


def test_refusal_is_a_checkpoint_error_for_callers(tmp_path):
    """Callers that catch CheckpointError (the tools, the benchmark) see refusals too."""
    path = write_payload(tmp_path / 'evil.pth', Call(Global('os', 'system'), 'true'))
    with pytest.raises(CheckpointError):
        safe_load(path)
    assert os.path.exists(path)



def test_docs_give_the_reason_of_every_allowed_global():
    with open(osp.join(ROOT, 'docs', 'checkpoints.md')) as f:
        docs = f.read()
    scalar_types = {f'numpy.{t.__name__}' for t in np.sctypeDict.values()} | {'numpy.bool_'}
    for entry in allow_list():
        if entry.name.startswith('numpy.dtypes.') or entry.name in scalar_types:
            continue  # documented as families: numpy.dtypes.*DType, every scalar type
        assert f'`{entry.name}`' in docs, f'{entry.name} is allowed but not in the docs table'


# ----------------------------------------------------------------------------------------
# allocations: no allow-listed constructor allocates more than the file holds


def _reconstruct(shape):
    return Call(Global('numpy.core.multiarray', '_reconstruct'), Global('numpy', 'ndarray'),
                shape, b'b')


ALLOCATIONS = {
    # in torch's own weights-only set, resolved before ours
    'bytearray': (lambda: Call(Global('builtins', 'bytearray'), 10 ** 9),
                  'builtins.bytearray(1000000000)'),
    'ndarray_call': (lambda: Call(Global('numpy', 'ndarray'), (10 ** 9,), 'uint8'),
                     'numpy.ndarray((1000000000,)'),
    'reconstruct_huge': (lambda: _reconstruct((2 ** 62,)), '_reconstruct(shape=(4611686018427387904,)'),
    'reconstruct_large': (lambda: _reconstruct((10 ** 9,)), '_reconstruct(shape=(1000000000,)'),
}


@pytest.mark.parametrize('name', sorted(ALLOCATIONS))
@pytest.mark.parametrize('legacy', [False, True], ids=['zip', 'legacy'])
def test_allocation_beyond_the_file_is_refused(name, legacy, tmp_path):
    build, named = ALLOCATIONS[name]
    path = write_payload(tmp_path / f'{name}.pth', build(), legacy)
    assert osp.getsize(path) < 10 ** 6
    with pytest.raises(CheckpointRefused) as err:
        safe_load(path)
    message = str(err.value)
    assert 'refused to load' in message and named in message and 'allocates' in message, message
    assert 'nothing was allocated or run' in message and '\n' not in message


@pytest.mark.parametrize('scalar_type', ['void', 'bytes_'])
def test_scalar_types_that_allocate_are_not_allowed(scalar_type, tmp_path):
    """``numpy.void(n)`` and ``numpy.bytes_(n)`` allocate n bytes."""
    path = write_payload(tmp_path / 'alloc.pth',
                         Call(Global('numpy', scalar_type), 10 ** 9))
    with pytest.raises(CheckpointRefused) as err:
        safe_load(path)
    assert_refusal(str(err.value), f'numpy.{scalar_type}')


def test_arrays_within_the_file_still_load(tmp_path):
    """The bounds leave real arrays alone: numpy arrays of every kind, a bytearray, and an
    mmengine message hub round-trip."""
    arrays = {'f': np.arange(1000, dtype=np.float32).reshape(10, 100), 'o': np.array([1, 'a'],
              dtype=object), 'e': np.zeros((0, 3)), 'b': bytearray(b'abc'),
              's': np.float64(2.5)}
    torch.save(arrays, tmp_path / 'arrays.pth')
    loaded = safe_load(tmp_path / 'arrays.pth')
    for key, value in arrays.items():
        if isinstance(value, np.ndarray):
            assert type(loaded[key]) is np.ndarray and (loaded[key] == value).all()
        else:
            assert loaded[key] == value


def test_a_history_buffer_cannot_rebind_statistics_for_the_process(tmp_path):
    """mmengine's HistoryBuffer.__setstate__ updates a class-level table: a state mapping
    'mean' to HistoryBuffer.max would change every buffer's mean in the process."""
    evil = HistoryBuffer([1, 2, 3], [1, 1, 1])
    state = evil.__getstate__()
    state['statistics_methods'] = {'mean': HistoryBuffer.max}

    class Rebinding:
        def __reduce__(self):
            return HistoryBuffer, (), state

    torch.save({'meta': {'buffer': Rebinding()}}, tmp_path / 'rebind.pth')
    try:
        safe_load(tmp_path / 'rebind.pth')
    except CheckpointError:
        pass
    assert HistoryBuffer([1, 2, 3], [1, 1, 1]).statistics('mean') == 2


# ----------------------------------------------------------------------------------------
# paths that are not checkpoints


def test_a_text_file_is_not_a_checkpoint_not_a_refused_pickle(tmp_path):
    path = tmp_path / 'notes.pth'
    path.write_text('model weights are on the shared drive\n')
    with pytest.raises(CheckpointError) as err:
        safe_load(path)
    message = str(err.value)
    assert 'not a checkpoint' in message and str(path) in message
    assert not isinstance(err.value, CheckpointRefused) and 'could run code' not in message


def test_an_empty_file_is_named(tmp_path):
    (tmp_path / 'empty.pth').write_bytes(b'')
    with pytest.raises(CheckpointError, match='empty.pth is empty'):
        safe_load(tmp_path / 'empty.pth')


def test_a_directory_is_named_as_a_directory(tmp_path):
    run = tmp_path / 'run'
    run.mkdir()
    torch.save({}, run / 'iter_2.pth')
    with pytest.raises(IsADirectoryError) as err:
        safe_load(run)
    assert 'is a directory' in str(err.value) and 'iter_2.pth' in str(err.value)
    assert 'not found' not in str(err.value)
