"""tools/gpu_check.sh on a machine without a GPU: its help, its refusal with the reason, and
the CUDA tests it runs, which pytest collects here and skips with the reason."""
import os
import os.path as osp
import subprocess
import sys
import xml.etree.ElementTree as ET

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
SCRIPT = osp.join(ROOT, 'tools', 'gpu_check.sh')
NO_GPU = dict(os.environ, CUDA_VISIBLE_DEVICES='')  # hides any GPU from torch
# the CUDA tests the GPU check runs, by module
CUDA_TESTS = {
    'test_cuda_ops': {
        'test_roi_align_cuda_matches_cpu[True-0]', 'test_roi_align_cuda_matches_cpu[True-2]',
        'test_roi_align_cuda_matches_cpu[False-0]', 'test_roi_align_cuda_matches_cpu[False-2]',
        'test_recipe_roi_extractor_on_cuda_pools_channels_last_maps_as_contiguous_ones',
        'test_recipe_roi_extractor_under_bf16_autocast_on_cuda_matches_float32_cpu',
        'test_nms_cuda_keeps_the_boxes_cpu_keeps',
        'test_batched_nms_cuda_keeps_the_boxes_cpu_keeps'},
    'test_cuda_pretrain': {'test_pretraining_step_runs_on_cuda_in_bf16[convmae]',
                           'test_pretraining_step_runs_on_cuda_in_bf16[mixedae]'},
    'test_cuda_transfer': {'test_transfer_trains_and_evaluates_on_cuda[Mask R-CNN]',
                           'test_transfer_trains_and_evaluates_on_cuda[UperNet]'},
}


def gpu_check(*args, env):
    return subprocess.run(['bash', SCRIPT, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)


def test_help_says_what_it_checks_and_sets_nothing_up(tmp_path):
    venv = tmp_path / 'venv'
    out = gpu_check('--help', env=dict(NO_GPU, MIXEDCONV_VENV=str(venv)))
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith('usage: tools/gpu_check.sh')
    for words in ('tests/cuda', 'RoIAlign', 'nms', 'bf16 AMP', 'Mask R-CNN', 'UperNet',
                  'tools/analysis/speed.py --arch base', '--out', '--checks', 'Exit status'):
        assert words in out.stdout, words
    assert not venv.exists()


def test_without_a_gpu_it_says_so_and_runs_nothing(tmp_path):
    out = gpu_check('--out', str(tmp_path / 'out'),
                    env=dict(NO_GPU, GPU_CHECK_PYTHON=sys.executable))
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stderr.startswith("gpu_check: FAILED: no CUDA GPU visible (torch.cuda."
                                 "is_available() is False, CUDA_VISIBLE_DEVICES='')")
    assert 'Traceback' not in out.stdout + out.stderr
    assert not (tmp_path / 'out').exists()


def test_without_the_nvidia_driver_it_stops_before_the_setup(tmp_path):
    """No interpreter given: the script asks nvidia-smi before it builds an environment."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    smi = bin_dir / 'nvidia-smi'  # what nvidia-smi says where the driver is not loaded
    smi.write_text('#!/bin/sh\necho "NVIDIA-SMI has failed because it couldn\'t communicate '
                   'with the NVIDIA driver."\nexit 9\n')
    smi.chmod(0o755)
    venv = tmp_path / 'venv'
    env = dict(NO_GPU, PATH=f'{bin_dir}:{os.environ["PATH"]}', MIXEDCONV_VENV=str(venv))
    env.pop('GPU_CHECK_PYTHON', None)
    out = gpu_check(env=env)
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stderr.startswith('gpu_check: FAILED: no NVIDIA GPU visible')
    assert 'Traceback' not in out.stdout + out.stderr
    assert not venv.exists()


def test_cuda_tests_are_collected_and_skipped_with_the_reason(tmp_path):
    """pytest itself, as the suite runs: every test the GPU check runs is collected here and
    skipped with the reason, none is missing and none fails to import."""
    report = tmp_path / 'report.xml'
    out = subprocess.run(
        [sys.executable, '-m', 'pytest', 'tests/cuda', '-m', 'cuda', '-p', 'no:cacheprovider',
         '-q', f'--junitxml={report}'],
        cwd=ROOT, env=NO_GPU, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    found = {}
    for case in ET.parse(report).getroot().iter('testcase'):
        module = case.get('classname').rsplit('.', 1)[-1]
        found.setdefault(module, set()).add(case.get('name'))
        skipped = case.find('skipped')
        assert skipped is not None, f'{module}::{case.get("name")} was not skipped'
        assert skipped.get('message').startswith(
            "needs CUDA: no CUDA GPU visible (torch.cuda.is_available() is False, "
            "CUDA_VISIBLE_DEVICES='')"), skipped.get('message')
    assert found == CUDA_TESTS
