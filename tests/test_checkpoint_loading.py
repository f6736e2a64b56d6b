"""Safe checkpoint loading: mmengine checkpoints load weights-only, hostile pickles do not run.

More hostile pickles: tests/test_malicious_checkpoints.py; every accepted checkpoint layout:
tests/test_checkpoint_layouts.py."""
import os
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmengine.runner.checkpoint import CheckpointLoader, _load_checkpoint

from mixedconv.checkpoint import (CheckpointError, export_encoder, safe_load,
                                  unwrap_state_dict)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, 'tests', 'configs', 'tiny_resnet_classifier.py')


def test_plain_torch_load_refuses_mmengine_checkpoint(trained_classifier):
    """Guards the premise: torch's default weights-only load cannot read mmengine checkpoints."""
    with pytest.raises(pickle.UnpicklingError, match='HistoryBuffer'):
        torch.load(trained_classifier / 'iter_2.pth')


def test_mmengine_loader_reads_its_checkpoint(trained_classifier):
    ckpt = _load_checkpoint(str(trained_classifier / 'iter_2.pth'), map_location='cpu')
    assert ckpt['meta']['iter'] == 2
    assert 'log_scalars' in ckpt['message_hub']


def test_auto_resume_finds_latest(trained_classifier, train_classifier, image_folder, tmp_path):
    """``--resume`` without a path takes the work dir's latest checkpoint and continues from
    it; the checkpoint it writes reads back weights-only. (Resuming from a named checkpoint:
    tests/test_stored_config.py.)"""
    work_dir = tmp_path / 'run'
    shutil.copytree(trained_classifier, work_dir)
    (work_dir / 'last_checkpoint').write_text(str(work_dir / 'iter_2.pth'))
    out = train_classifier(work_dir, image_folder, '--resume',
                           '--cfg-options', 'train_cfg.max_iters=4')
    assert out.returncode == 0, out.stderr[-3000:]
    assert f'Load checkpoint from {work_dir / "iter_2.pth"}' in out.stdout + out.stderr
    assert 'resumed epoch: 0, iter: 2' in out.stdout + out.stderr
    assert safe_load(work_dir / 'iter_4.pth')['meta']['iter'] == 4


def test_test_tool_evaluates_checkpoint(trained_classifier, image_folder, tmp_path):
    cmd = [sys.executable, os.path.join(ROOT, 'tools', 'test.py'), CONFIG,
           str(trained_classifier / 'iter_2.pth'), '--work-dir', str(tmp_path / 'test'),
           '--cfg-options', f'test_dataloader.dataset.data_root={image_folder}']
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert 'accuracy/top1' in out.stdout + out.stderr


class _Payload:
    """Pickles to a call that creates a file: what a hostile checkpoint would do."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, 'w'))


def test_malicious_checkpoint_refused_and_payload_not_run(tmp_path):
    marker = tmp_path / 'pwned'
    ckpt = tmp_path / 'evil.pth'
    torch.save({'state_dict': {'w': torch.zeros(1)}, 'x': _Payload(str(marker))}, ckpt)
    assert not marker.exists()
    for load in (lambda: safe_load(ckpt),
                 lambda: CheckpointLoader.load_checkpoint(str(ckpt), map_location='cpu')):
        with pytest.raises(CheckpointError, match=r'refused to load .*evil\.pth.*io\.open'):
            load()
    assert not marker.exists()


def test_truncated_checkpoint_names_file(tmp_path):
    good = tmp_path / 'good.pth'
    torch.save({'state_dict': {'w': torch.randn(1000)}}, good)
    bad = tmp_path / 'bad.pth'
    bad.write_bytes(good.read_bytes()[:2000])
    with pytest.raises(CheckpointError, match=r'bad\.pth is truncated or corrupt'):
        safe_load(bad)


def test_missing_checkpoint_names_path(tmp_path):
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        safe_load(tmp_path / 'nope.pth')


@pytest.mark.parametrize('wrap', [lambda sd: {'model': sd}, lambda sd: {'state_dict': sd},
                                  lambda sd: sd, lambda sd: {'state_dict': {
                                      f'module.{k}': v for k, v in sd.items()}}])
def test_unwrap_state_dict_layouts(wrap):
    sd = {'a.weight': torch.ones(2), 'b': torch.zeros(1)}
    assert unwrap_state_dict(wrap(sd)).keys() == sd.keys()


def test_export_encoder_keeps_backbone_only(tmp_path):
    src = tmp_path / 'pretrain.pth'
    encoder = {'patch_embed.proj.weight': torch.ones(4, 3, 16, 16),
               'blocks.0.norm1.weight': torch.ones(4)}
    torch.save({'meta': {'iter': 1}, 'state_dict': {
        **{f'backbone.{k}': v for k, v in encoder.items()}, 'neck.decoder.w': torch.ones(3)}},
        src)
    export_encoder(src, tmp_path / 'enc.pth')
    exported = safe_load(tmp_path / 'enc.pth')
    assert list(exported) == ['model'] and list(exported['model']) == list(encoder)
    assert torch.equal(exported['model']['blocks.0.norm1.weight'], torch.ones(4))
    # an exported encoder has no prefix: exporting it again keeps it as it is
    assert list(export_encoder(tmp_path / 'enc.pth', tmp_path / 'enc2.pth')) == list(encoder)
    with pytest.raises(CheckpointError, match="no key of .*enc.pth starts with 'backbone.'"):
        export_encoder(tmp_path / 'enc.pth', tmp_path / 'enc3.pth', prefix='backbone.')


class _GetattrPayload:
    """Pickles to getattr(numpy.ndarray, 'tofile'), a method that writes files, on a class
    that is itself allow-listed: the getattr stand-in must not resolve it."""

    def __reduce__(self):
        return (getattr, (np.ndarray, 'tofile'))


def test_getattr_in_pickle_only_resolves_history_buffer_statistics(tmp_path):
    ckpt = tmp_path / 'getattr.pth'
    torch.save({'x': _GetattrPayload()}, ckpt)
    with pytest.raises(CheckpointError, match=r'refused to load .*getattr\.pth.*builtins\.getattr'):
        safe_load(ckpt)
