"""The environment the setup script builds: versions, compiled mmcv ops, registries, configs."""
import os
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config

from mixedconv.env import check

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
