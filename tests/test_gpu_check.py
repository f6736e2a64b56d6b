"""tools/gpu_check.sh: without a GPU it stops at once with a clear reason; with one (and
mmcv's CUDA ops) the op agreement part runs as a test too."""
import importlib.util
import os
import subprocess
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NO_GPU = dict(os.environ, CUDA_VISIBLE_DEVICES='')  # hides any GPU from torch


def load_gpu_check():
    path = os.path.join(ROOT, 'tools', 'analysis', 'gpu_check.py')
    spec = importlib.util.spec_from_file_location('gpu_check', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_shell_script_fails_clearly_without_gpu(tmp_path):
    out = subprocess.run(['bash', os.path.join(ROOT, 'tools', 'gpu_check.sh'),
                          '--out', str(tmp_path)],
                         env=dict(NO_GPU, GPU_CHECK_PYTHON=sys.executable),
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stdout + out.stderr
    assert 'gpu_check: FAILED: no CUDA GPU visible' in out.stderr
    assert list(tmp_path.iterdir()) == []  # nothing ran


def test_python_part_fails_clearly_without_gpu(tmp_path):
    out = subprocess.run([sys.executable, os.path.join(ROOT, 'tools', 'analysis', 'gpu_check.py'),
                          '--out', str(tmp_path)],
                         env=NO_GPU, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stdout + out.stderr
    assert 'gpu_check: FAILED: no CUDA GPU visible' in out.stderr
    assert 'torch.cuda.is_available() is False' in out.stderr


def _cuda_ops():
    return torch.cuda.is_available() and load_gpu_check().mmcv_ext_has_cuda_kernels()


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')
@pytest.mark.skipif(torch.cuda.is_available() and not _cuda_ops(),
                    reason="mmcv was built without CUDA ops")
def test_mmcv_cuda_ops_agree_with_cpu_ops():
    gpu_check = load_gpu_check()
    worst = gpu_check.compare_roi_align('cuda')
    assert worst['forward'] < 1e-4 and worst['backward'] < 1e-3
    kept, num = gpu_check.compare_nms('cuda')
    assert 0 < kept < num
