"""The environment the setup script builds: versions, compiled mmcv ops, the CUDA path,
registries, configs."""
import glob
import os
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config

from mixedconv.env import CudaStatus, check, cuda_status, mmcv_cuda_release

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_environment_check_passes():
    lines, problems = check()
    assert problems == [], '\n'.join(lines)
    assert any(line.startswith('mmcv.ops     compiled') for line in lines)


def test_check_env_tool_exit_code():
    out = subprocess.run([sys.executable, os.path.join(ROOT, 'tools', 'check_env.py')],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert 'usable from mmpretrain, mmdet, mmseg' in out.stdout
    components = next(line for line in out.stdout.splitlines() if line.startswith('mixedconv '))
    for name in ('ConvViT', 'PlainViT', 'ConvMAE', 'MixedAE', 'SimpleFeaturePyramid'):
        assert name in components, components
    assert '\ncuda         torch ' in out.stdout and '\nmmcv cuda    ' in out.stdout


def test_check_env_reports_missing_package():
    """A missing required library makes the check fail with a fix, not pass silently."""
    code = ('import sys; sys.modules["pycocotools"] = None\n'
            'from mixedconv.env import main; sys.exit(main())')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 1
    assert 'pycocotools cannot be imported' in out.stderr and 'setup_env.sh' in out.stderr


def test_mmcv_ops_run_on_cpu():
    from mmcv.ops import RoIAlign, nms
    boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.], [20., 20., 30., 30.]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    _, keep = nms(boxes, scores, iou_threshold=0.5)
    assert keep.tolist() == [0, 2]
    feats = torch.arange(64.).reshape(1, 1, 8, 8)
    rois = torch.tensor([[0., 0., 0., 4., 4.]])
    out = RoIAlign((2, 2), spatial_scale=1.0, sampling_ratio=1, aligned=False)(feats, rois)
    assert out.shape == (1, 1, 2, 2) and torch.isfinite(out).all()


def test_config_inherits_installed_library_config(tmp_path):
    cfg_file = tmp_path / 'inherit.py'
    cfg_file.write_text("_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'\n"
                        "model = dict(backbone=dict(depth=18))\n")
    cfg = Config.fromfile(str(cfg_file))
    assert cfg.model.type == 'MaskRCNN' and cfg.model.backbone.depth == 18
    assert cfg.default_scope == 'mmdet'
    seg = tmp_path / 'seg.py'
    seg.write_text("_base_ = 'mmseg::_base_/models/upernet_r50.py'\n")
    assert Config.fromfile(str(seg)).model.decode_head.type == 'UPerHead'


def test_amp_flag_switches_the_optim_wrapper():
    from mixedconv.launch import enable_amp
    cfg = Config.fromfile(os.path.join(ROOT, 'tests', 'configs', 'tiny_resnet_classifier.py'))
    enable_amp(cfg)
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    assert cfg.optim_wrapper.loss_scale == 'dynamic'
    bf16 = Config.fromfile(os.path.join(
        ROOT, 'configs', 'convmae', 'convmae_convvit-base-p16_8xb384-amp-coslr-1600e_in1k.py'))
    assert enable_amp(bf16).optim_wrapper.dtype == 'bfloat16'  # left as the recipe set it
    cfg.optim_wrapper.type = 'ApexOptimWrapper'
    with pytest.raises(ValueError, match='cannot replace optim_wrapper type ApexOptimWrapper'):
        enable_amp(cfg)


def test_mmcv_cuda_release_agrees_with_the_compiled_library():
    """mmcv's own record of its CUDA build against the library itself: nvcc puts the kernels
    of every .cu file into an ELF section named .nv_fatbin."""
    import mmcv
    ext = glob.glob(os.path.join(os.path.dirname(mmcv.__file__), '_ext*.so'))
    assert len(ext) == 1, ext
    with open(ext[0], 'rb') as f:
        has_kernels = b'.nv_fatbin' in f.read()
    assert (mmcv_cuda_release() is not None) == has_kernels


def test_cuda_lines_describe_this_machine():
    status = cuda_status()
    assert status.cuda == torch.version.cuda
    assert len(status.devices) == (torch.cuda.device_count() if torch.cuda.is_available()
                                   else 0)
    lines, _ = check()
    assert all(line in lines for line in status.lines())
    if not torch.cuda.is_available():
        assert status.unusable().startswith(
            'no CUDA GPU visible' if torch.version.cuda else 'torch ')


H100 = ('NVIDIA H100 80GB HBM3', (9, 0))


@pytest.mark.parametrize('status, reason', [
    (CudaStatus('2.15.0', None), 'torch 2.15.0 is built without CUDA'),
    (CudaStatus('2.15.0', '13.2', [], '13.2', visible=''),
     "no CUDA GPU visible (torch.cuda.is_available() is False, CUDA_VISIBLE_DEVICES='')"),
    (CudaStatus('2.15.0', '13.2', [], '13.2'),
     'no CUDA GPU visible (torch.cuda.is_available() is False)'),
    (CudaStatus('2.15.0', '13.2', [H100], None),
     'mmcv was built with CPU ops only: rebuild it by `MIXEDCONV_CUDA_OPS=1 bash '
     'tools/setup_env.sh`'),
    (CudaStatus('2.15.0', '13.2', [H100], '12.8'),
     "mmcv's CUDA ops were compiled with CUDA 12.8, torch runs CUDA 13.2"),
    (CudaStatus('2.15.0', '13.2', [H100], '13.0'), None),  # CUDA minor compatibility
    (CudaStatus('2.15.0', '13.2', [H100], '13.2'), None),
])
def test_cuda_path_unusable_says_why(status, reason):
    if reason is None:
        assert status.unusable() is None
    else:
        assert status.unusable().startswith(reason), status.unusable()


def test_cuda_lines_name_each_gpu_and_the_releases():
    lines = CudaStatus('2.15.0', '13.2', [H100, ('NVIDIA A100-SXM4-80GB', (8, 0))],
                       '13.0').lines()
    assert lines == ['cuda         torch CUDA 13.2; 2 GPU',
                     'gpu 0        NVIDIA H100 80GB HBM3, compute capability 9.0',
                     'gpu 1        NVIDIA A100-SXM4-80GB, compute capability 8.0',
                     'mmcv cuda    compiled with CUDA 13.0 (torch: 13.2)']
    assert CudaStatus('2.15.0', '13.2', [], None).lines() == [
        'cuda         torch CUDA 13.2; no GPU visible (CPU only)',
        'mmcv cuda    not compiled (CPU ops only)']


@pytest.mark.cuda
def test_environment_check_passes_on_a_gpu_with_cuda_ops():
    """On a GPU machine the report names every GPU and mmcv's CUDA release, with torch's
    major release, and finds no problem."""
    lines, problems = check()
    assert problems == [], '\n'.join(lines)
    for i in range(torch.cuda.device_count()):
        major, minor = torch.cuda.get_device_capability(i)
        assert f'gpu {i:<8} {torch.cuda.get_device_name(i)}, compute capability ' \
               f'{major}.{minor}' in lines
    release = mmcv_cuda_release()
    assert release.split('.')[0] == torch.version.cuda.split('.')[0]
