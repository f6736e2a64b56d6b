"""Every checkpoint layout people hand us loads weights-only: through
``init_cfg=dict(type='Pretrained')``, tools/export_encoder.py and tools/convert_checkpoint.py,
with the load report's counts and the tensors' values checked (layouts built by
tests/layouts.py)."""
import argparse
import importlib.util
import os
import os.path as osp
import subprocess
import sys
import types

import pytest
import torch
from mmengine.logging import HistoryBuffer, MessageHub
from mmengine.runner.checkpoint import _load_checkpoint

import layouts as L
from mixedconv.checkpoint import (CheckpointError, convert_checkpoint, export_encoder,
                                  safe_load)

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
WRITERS = {'zip': L.save, 'legacy': L.save_legacy, 'arrays': L.save_as_arrays}
STATIC = [(name, writer) for name in L.LAYOUTS for writer in WRITERS]
RUNS = ['mmengine_convmae', 'mmengine_convmae_empty_buffer', 'mmengine_convmae_weights',
        'mmengine_mmpretrain_mae']
REWRITES = {'as_written': None, 'legacy': L.save_legacy, 'numpy1': L.save_as_numpy1}


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    return L.mmengine_runs(str(tmp_path_factory.mktemp('runs')))


@pytest.fixture(params=[f'{n}-{w}' for n, w in STATIC] +
                [f'{n}-{r}' for n in RUNS for r in REWRITES])
def layout(request, tmp_path):
    name, _, how = request.param.rpartition('-')
    if name in L.LAYOUTS:
        return L.LAYOUTS[name](str(tmp_path), WRITERS[how])
    runs = request.getfixturevalue('runs')
    layout = runs[name]
    return layout if how == 'as_written' else L.rewritten(layout, str(tmp_path), REWRITES[how],
                                                          how)


def check_load(layout, path, skipped):
    model = L.build_backbone(layout, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    report = model.load_report
    assert (len(report.matched), len(report.missing), len(report.unexpected),
            len(report.mismatched), len(report.fresh), report.skipped) == \
        (layout.matched, layout.missing, layout.unexpected, 0, layout.fresh, skipped), \
        report.summary()
    own = model.state_dict()
    for name, value in layout.weights.items():
        torch.testing.assert_close(own[name], value.to(own[name].dtype), rtol=0, atol=0,
                                   msg=name)
    return report


def test_pretrained_init_cfg_loads_every_encoder_tensor(layout):
    check_load(layout, layout.path, layout.skipped)


def test_export_encoder_keeps_the_encoder_under_its_names(layout, tmp_path):
    exported = tmp_path / 'encoder.pth'
    state_dict = export_encoder(layout.path, exported)
    written = safe_load(exported)
    assert list(written) == ['model'] and list(written['model']) == list(state_dict)
    assert len(state_dict) == layout.matched + layout.derived
    check_load(layout, exported, layout.derived)


def test_convert_checkpoint_writes_our_names(layout, tmp_path):
    out = tmp_path / 'converted.pth'
    conversion = convert_checkpoint(layout.path, out)
    written = safe_load(out)
    assert list(written) == ['state_dict']
    converted = written['state_dict']
    assert sorted(converted) == sorted(layout.weights)
    for name, value in layout.weights.items():
        torch.testing.assert_close(converted[name], value, rtol=0, atol=0, msg=name)
    assert conversion.family == layout.family
    assert len(conversion.transfer) == layout.transfer
    assert len(conversion.dropped) + len(conversion.derived) == layout.skipped
    assert conversion.missing == [] and conversion.unexpected == []
    assert conversion.mismatched == []
    assert len(conversion.matched) + len(conversion.transfer) == layout.matched
    check_load(layout, out, 0)


# ----------------------------------------------------------------------------------------
# what the files say besides their tensors


def test_official_args_namespace_survives(tmp_path):
    layout = L.convmae_pretrain_official(str(tmp_path))
    ckpt = safe_load(layout.path)
    assert sorted(ckpt) == ['args', 'epoch', 'model', 'optimizer', 'scaler']
    assert isinstance(ckpt['args'], argparse.Namespace)
    assert ckpt['args'].model == 'convmae_convvit_base_patch16' and ckpt['args'].epochs == 1600
    first = next(iter(ckpt['model'].values()))
    assert ckpt['optimizer']['state'][0]['exp_avg'].shape == first.shape
    assert 'argparse.Namespace' in L.pickled_globals(layout.path)


def test_mmseg0_meta_survives(tmp_path):
    layout = L.mmseg0_convmae_seg(str(tmp_path))
    meta = safe_load(layout.path)['meta']
    assert meta == L.MMSEG0_META
    assert meta['PALETTE'][0] == (120, 120, 120) and isinstance(meta['CLASSES'], tuple)


def test_empty_history_buffer_round_trips(runs):
    layout = runs['mmengine_convmae_empty_buffer']
    assert 'builtins.bytes' in L.pickled_globals(layout.path) or \
        '__builtin__.bytes' in L.pickled_globals(layout.path)
    ckpt = _load_checkpoint(layout.path, map_location='cpu')  # mmengine's own entry point
    empty = ckpt['message_hub']['log_scalars']['val/accuracy']
    assert isinstance(empty, HistoryBuffer) and len(empty.data[0]) == 0
    hub = MessageHub.get_instance('restored')
    hub.load_state_dict(ckpt['message_hub'])
    assert hub.get_scalar('train/loss').current() == \
        ckpt['message_hub']['log_scalars']['train/loss'].current()
    assert ckpt['meta']['iter'] >= 1 and 'rng_state' in ckpt  # RNGStateHook's


def test_numpy1_pickle_names_numpy_core_and_loads_the_same(runs, tmp_path):
    layout = runs['mmengine_convmae']
    rewritten = L.rewritten(layout, str(tmp_path), L.save_as_numpy1, 'numpy1')
    names = L.pickled_globals(rewritten.path)
    assert {'numpy.core.multiarray._reconstruct', 'numpy.core.multiarray.scalar'} <= names
    assert not any(n.startswith('numpy._core') for n in names)
    original, old = safe_load(layout.path), safe_load(rewritten.path)
    numpy_state = original['rng_state']['numpy']
    assert old['rng_state']['numpy'][0] == numpy_state[0]
    assert (old['rng_state']['numpy'][1] == numpy_state[1]).all()
    for key, buffer in original['message_hub']['log_scalars'].items():
        assert (old['message_hub']['log_scalars'][key].data[0] == buffer.data[0]).all()


def test_mmpretrain_checkpoint_renames_to_timm_names(runs, tmp_path):
    layout = runs['mmengine_mmpretrain_mae']
    assert any(k.startswith('backbone.layers.') for k in safe_load(layout.path)['state_dict'])
    conversion = convert_checkpoint(layout.path, tmp_path / 'out.pth')
    assert conversion.renamed['backbone.layers.0.ln1.weight'] == 'blocks.0.norm1.weight'
    assert conversion.renamed['backbone.ln1.weight'] == 'norm.weight'
    assert any(k.startswith('neck.') for k in conversion.dropped)


# ----------------------------------------------------------------------------------------
# the converter's report and options


def load_tool(name):
    spec = importlib.util.spec_from_file_location(name, osp.join(ROOT, 'tools', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def run_tool(capsys):
    """Run a tool's ``main`` in this process (a fresh interpreter costs an import of every
    OpenMMLab library; tests/test_malicious_checkpoints.py runs the tools as processes)."""
    def run(*args, tool='convert_checkpoint'):
        capsys.readouterr()
        code = load_tool(tool).main([str(a) for a in args])
        out = capsys.readouterr()
        return types.SimpleNamespace(returncode=code, stdout=out.out, stderr=out.err)
    return run


def test_convert_tool_reports_groups_renames_and_drops(tmp_path, run_tool):
    layout = L.mmseg0_convmae_seg(str(tmp_path))
    out = run_tool(layout.path, tmp_path / 'short.pth')
    assert out.returncode == 0, out.stderr
    assert 'renamed (19): ' in out.stdout and ', ... (+13)' in out.stdout
    out = run_tool(layout.path, tmp_path / 'out.pth', '--full')
    assert out.returncode == 0, out.stderr
    report = out.stdout
    assert 'mmcv 1.x Runner checkpoint' in report and "under 'backbone.'" in report
    assert 'other entries, not converted: meta, optimizer' in report
    assert 'backbone.blocks3.0.gamma_1 -> blocks3.0.ls1.gamma' in report
    assert 'backbone.fpn.0.weight -> level4_conv.conv.weight' in report
    assert 'backbone.fpn.1.running_var -> level4_conv.bn.running_var' in report
    assert 'index buffers the backbone recomputes (4)' in report
    assert 'decode_head (3)' in report and "rel_pos_type='bias'" in report
    rows = {line.split()[0]: [int(n) for n in line.split()[1:]]
            for line in report.splitlines() if line.startswith('  ') and 'matched' not in line}
    tables = sum(1 for k in layout.weights if k.endswith('relative_position_bias_table'))
    blocks3 = sum(1 for k in layout.weights if k.startswith('blocks3.'))
    # matched, renamed, transfer, mismatched, missing, unexpected, dropped
    assert rows['blocks3'] == [blocks3 - tables, 2 * 4 + tables, tables, 0, 0, 0, 4]
    assert rows['level4_conv'][:2] == [7, 7] and rows['decode_head'][-1] == 3
    assert rows['total'][0] + rows['total'][2] == layout.matched
    assert 'wrote' in report and 'backbone tensors' in report


def test_convert_keep_extra_keeps_the_decoder_apart(tmp_path):
    layout = L.convmae_pretrain_official(str(tmp_path))
    convert_checkpoint(layout.path, tmp_path / 'out.pth', keep_extra=True)
    written = safe_load(tmp_path / 'out.pth')
    assert sorted(written) == ['extra', 'state_dict']
    assert sorted(written['state_dict']) == sorted(layout.weights)
    assert len(written['extra']) == layout.skipped and 'mask_token' in written['extra']
    model = L.build_backbone(layout, init_cfg=dict(type='Pretrained',
                                                   checkpoint=str(tmp_path / 'out.pth')))
    model.init_weights()
    assert len(model.load_report.matched) == layout.matched


def test_convert_arch_must_agree_with_the_tensors(tmp_path, run_tool):
    layout = L.mae_pretrain_release(str(tmp_path))
    out = run_tool(layout.path, tmp_path / 'out.pth', '--arch', 'ConvViT')
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [out.stderr.strip()]
    assert 'holds a PlainViT encoder, not the ConvViT given by --arch' in out.stderr
    out = run_tool(layout.path, tmp_path / 'out.pth', '--arch', 'PlainViT:base')
    assert out.returncode == 2 and 'PlainViT:base has sizes' in out.stderr
    out = run_tool(layout.path, tmp_path / 'out.pth', '--arch', 'ResNet')
    assert out.returncode == 2 and "unknown --arch 'ResNet'" in out.stderr
    assert not (tmp_path / 'out.pth').exists()
    out = run_tool(layout.path, tmp_path / 'out.pth', '--arch', 'PlainViT')
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize('content, message', [
    ({'state_dict': {'fc.weight': torch.zeros(2, 2)}}, 'holds no ConvViT'),
    ({'epoch': 3, 'optimizer': {}}, 'unknown checkpoint layout'),
    ([torch.zeros(1)], 'not a dict of tensors'),
])
def test_convert_tool_names_an_unknown_layout(content, message, tmp_path, run_tool):
    torch.save(content, tmp_path / 'src.pth')
    out = run_tool(tmp_path / 'src.pth', tmp_path / 'out.pth')
    assert out.returncode == 2 and message in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and 'Traceback' not in out.stderr


def test_convert_tool_names_a_missing_file(tmp_path, run_tool):
    out = run_tool(tmp_path / 'nope.pth', tmp_path / 'out.pth')
    assert out.returncode == 2 and 'nope.pth' in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and 'Traceback' not in out.stderr


def test_export_tool_writes_the_official_encoder(tmp_path, run_tool):
    layout = L.convmae_pretrain_official(str(tmp_path))
    out = run_tool(layout.path, tmp_path / 'enc.pth', tool='export_encoder')
    assert out.returncode == 0, out.stderr
    assert f'wrote {layout.matched} encoder tensors' in out.stdout
    assert sorted(safe_load(tmp_path / 'enc.pth')['model']) == sorted(layout.weights)
    out = run_tool(tmp_path / 'nope.pth', tmp_path / 'enc2.pth', tool='export_encoder')
    assert out.returncode == 2 and out.stderr.count('\n') == 1 and 'nope.pth' in out.stderr


def test_export_encoder_names_a_file_without_encoder(tmp_path):
    torch.save({'state_dict': {'neck.decoder.w': torch.ones(3)}}, tmp_path / 'neck.pth')
    with pytest.raises(CheckpointError, match='holds no ConvViT .* or plain ViT'):
        export_encoder(tmp_path / 'neck.pth', tmp_path / 'enc.pth')
    layout = L.mae_pretrain_release(str(tmp_path))
    with pytest.raises(CheckpointError, match="no key of .* starts with 'backbone.'"):
        export_encoder(layout.path, tmp_path / 'enc.pth', prefix='backbone.')


@pytest.mark.parametrize('tool', ['convert_checkpoint.py', 'export_encoder.py'])
@pytest.mark.parametrize('same', ['same path', 'hard link'])
def test_tools_refuse_to_overwrite_their_source(tool, same, tmp_path):
    layout = L.LAYOUTS['mae_pretrain_release'](str(tmp_path))
    before = open(layout.path, 'rb').read()
    dst = layout.path
    if same == 'hard link':
        dst = str(tmp_path / 'link.pth')
        os.link(layout.path, dst)
    out = subprocess.run([sys.executable, osp.join(ROOT, 'tools', tool), layout.path, dst],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith('error: ') and 'is the input checkpoint' in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert open(layout.path, 'rb').read() == before


def test_numpy_array_checkpoint_is_described_by_the_benchmark(tmp_path):
    """detectron2's model zoo keeps arrays: the benchmark reads the same tensors the loaders
    read."""
    from mixedconv.benchmark.checkpoints import describe_checkpoint
    layout = L.LAYOUTS['detectron2_vitdet'](str(tmp_path), L.save_as_arrays)
    # the tiny sizes are no zoo arch, so the description stops at them, read from the arrays
    with pytest.raises(CheckpointError, match=r"sizes \{'embed_dim': 32, 'depth': 4\} match no"):
        describe_checkpoint(layout.path, method='MAE')
