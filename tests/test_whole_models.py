"""Whole released detectors and segmentors (detectron2 Mask R-CNN: Alpha-VL/ConvMAE DET,
OpenGVLab/Official-ConvMAE-Det, ViTDet MAE; mmseg 0.x UperNet: Alpha-VL/ConvMAE SEG, mmseg's
MAE) load into our recipe models with every tensor accounted for, and evaluate through
``python -m mixedconv.test``.

The layouts are the official models' own state dicts: ``tests/data/official_layouts/*.txt``
lists each tensor (name, shape, dtype) of the official model built from its own code at a tiny
size (3 COCO classes, 4 ADE20K classes); the tests fill them with random values and save them
as the official frameworks save them.
"""
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from layouts import MMSEG0_META, ROOT, save, save_as_arrays
from mixedconv.benchmark.recipes import adapt_heads
from mixedconv.benchmark.tiny import shrink_transfer
from mixedconv.checkpoint import CheckpointError, convert_whole, load_whole
from mixedconv.registry import MODELS

LAYOUTS = osp.join(osp.dirname(osp.abspath(__file__)), 'data', 'official_layouts')
CONV = dict(embed_dims=(16, 32, 64), num_heads=2)

# layout -> (recipe, the official tiny model's sizes in our recipe's terms)
RECIPES = {
    'detectron2_convmae_fpn': (
        'convmae/mask-rcnn_convvit-base-p16_fpn_8xb4-amp-lsj-1024-25e_coco.py',
        dict(arch=dict(CONV, depths=(1, 1, 11), mlp_ratios=(2, 2, 2)), out_indices=(0, 1, 2, 3),
             window_size=16, global_blocks=(0, 3, 6, 10))),
    'detectron2_convmae_vitdet': (
        'convmae/mask-rcnn_convvit-base-p16_sfp_8xb2-amp-lsj-1024-25e_coco.py',
        dict(arch=dict(CONV, depths=(1, 1, 2), mlp_ratios=(2, 2, 2)), out_indices=(2, ),
             window_size=14, global_blocks=(1, ))),
    'detectron2_mae_vitdet': (
        'mae/mask-rcnn_vit-base-p16_sfp_16xb4-amp-lsj-1024-100e_coco.py',
        dict(arch=dict(embed_dim=64, depth=4, num_heads=2, mlp_ratio=2), out_indices=(3, ),
             window_size=14, global_blocks=(1, 3))),
    'mmseg0x_convmae_seg': (
        'convmae/upernet_convvit-base-p16_8xb2-amp-160k_ade20k-512x512.py',
        dict(arch=dict(CONV, depths=(1, 1, 2), mlp_ratios=(4, 4, 4)), out_indices=(0, 1, 2, 3))),
    'mmseg0x_mae_upernet': (
        'mae/upernet_vit-base-p16_8xb2-amp-160k_ade20k-512x512.py',
        dict(arch=dict(embed_dim=64, depth=4, num_heads=2, mlp_ratio=4),
             out_indices=(0, 1, 2, 3))),
}


def official_state_dict(layout, seed=0):
    """Random tensors under the official model's names, shapes and dtypes (batch-norm
    variances positive)."""
    generator = torch.Generator().manual_seed(seed)
    state_dict = {}
    with open(osp.join(LAYOUTS, f'{layout}.txt')) as f:
        for line in f:
            name, shape, dtype = line.rstrip('\n').split('\t')
            shape = tuple(int(s) for s in shape.strip('()').split(',') if s.strip())
            if dtype == 'int64':
                state_dict[name] = torch.zeros(shape, dtype=torch.int64)
            else:
                value = torch.randn(shape, generator=generator) * 0.05
                state_dict[name] = value.abs() + 0.5 if name.endswith('running_var') else value
    return state_dict


def save_official(layout, path, writer=save, seed=0):
    """Save the layout as its producer does: detectron2's ``DetectionCheckpointer``
    (``{'model': ..., 'iteration': ...}``), mmcv 1.x's ``save_checkpoint`` (``meta``,
    ``state_dict``, ``optimizer``)."""
    state_dict = official_state_dict(layout, seed)
    if layout.startswith('detectron2'):
        writer({'model': state_dict, 'iteration': 89999}, path)
    else:
        writer({'meta': dict(MMSEG0_META), 'state_dict': state_dict,
                'optimizer': {'state': {}, 'param_groups': []}}, path)
    return state_dict


def official_tiny_config(layout, data_root, img_size=512):
    """Our recipe for ``layout`` shrunk to the generated data, with the official tiny model's
    sizes (backbone, 32-channel heads, 16-channel auxiliary head)."""
    recipe, backbone = RECIPES[layout]
    cfg = shrink_transfer(Config.fromfile(osp.join(ROOT, 'configs', recipe)), data_root)
    cfg.model.backbone.update(backbone, img_size=(img_size, img_size))
    adapt_heads(cfg)
    if cfg.default_scope == 'mmseg':
        cfg.model.auxiliary_head.channels = 16
    return cfg


def build_model(cfg):
    init_default_scope(cfg.default_scope)
    return MODELS.build(cfg.model)


@pytest.mark.parametrize('layout', sorted(RECIPES))
def test_official_layout_loads_whole(layout, tmp_path):
    """Every tensor of the model comes from the file, every tensor of the file has a place,
    and each loaded tensor is the file's (renamed where the frameworks name it otherwise)."""
    path = str(tmp_path / 'model_final.pth')
    tensors = save_official(layout, path)
    model = build_model(official_tiny_config(layout, str(tmp_path)))
    report = load_whole(model, path)
    assert not report.missing and not report.unexpected and not report.mismatched
    assert report.loaded == len(model.state_dict())
    own = model.state_dict()
    conversion = convert_whole({'state_dict': tensors}, model, path)
    for theirs, ours in conversion.renamed.items():
        torch.testing.assert_close(own[ours], tensors[theirs].to(own[ours].dtype))
    for name in set(tensors) & set(own):
        if name not in conversion.renamed:
            torch.testing.assert_close(own[name], tensors[name].to(own[name].dtype))
    assert report.loaded + len(report.checked) == len(tensors)


def test_detectron2_model_zoo_arrays_load_whole(tmp_path):
    """The model zoo's files hold numpy arrays."""
    path = str(tmp_path / 'model_final.pkl.pth')
    save_official('detectron2_mae_vitdet', path, writer=save_as_arrays)
    model = build_model(official_tiny_config('detectron2_mae_vitdet', str(tmp_path)))
    assert not load_whole(model, path).missing


def test_detectron2_head_layouts(tmp_path):
    """The frameworks' differences, tensor by tensor: detectron2's box classifier puts the
    background last (mmdet too), its class-specific box deltas are (class, 4) rows, the RPN
    has one objectness channel per anchor, and mmdet's ``Shared2FCBBoxHead`` keeps the two
    fc layers detectron2 calls ``box_head.fc1/fc2``."""
    path = str(tmp_path / 'model_final.pth')
    tensors = save_official('detectron2_mae_vitdet', path)
    model = build_model(official_tiny_config('detectron2_mae_vitdet', str(tmp_path)))
    load_whole(model, path)
    heads = model.roi_head
    pairs = {
        'roi_heads.box_predictor.cls_score.weight': heads.bbox_head.fc_cls.weight,
        'roi_heads.box_predictor.bbox_pred.weight': heads.bbox_head.fc_reg.weight,
        'roi_heads.box_head.fc1.weight': heads.bbox_head.shared_fcs[0].weight,
        'roi_heads.mask_head.predictor.weight': heads.mask_head.conv_logits.weight,
        'roi_heads.mask_head.deconv.weight': heads.mask_head.upsample.weight,
        'proposal_generator.rpn_head.objectness_logits.weight': model.rpn_head.rpn_cls.weight,
        'proposal_generator.rpn_head.anchor_deltas.weight': model.rpn_head.rpn_reg.weight,
    }
    for name, param in pairs.items():
        torch.testing.assert_close(param.detach(), tensors[name])
    assert heads.bbox_head.fc_cls.out_features == 3 + 1  # background last in both


def test_a_head_of_another_size_is_named(tmp_path):
    """A released model with 80 classes loaded into a 3-class recipe: an error naming the
    classifier, not a model left with random heads."""
    path = str(tmp_path / 'model_final.pth')
    save_official('detectron2_convmae_vitdet', path)
    cfg = official_tiny_config('detectron2_convmae_vitdet', str(tmp_path))
    cfg.model.roi_head.bbox_head.num_classes = 80
    with pytest.raises(CheckpointError, match=r'another shape.*cls'):
        load_whole(build_model(cfg), path)


def test_a_tensor_without_place_is_named(tmp_path):
    """An mmseg 0.x file with a head the recipe does not build (the auxiliary head removed
    from the recipe): the file's tensors without place are named."""
    path = str(tmp_path / 'iter_160000.pth')
    save_official('mmseg0x_mae_upernet', path)
    cfg = official_tiny_config('mmseg0x_mae_upernet', str(tmp_path))
    cfg.model.auxiliary_head = None
    with pytest.raises(CheckpointError, match=r'no place for \(auxiliary_head\.'):
        load_whole(build_model(cfg), path)


def test_a_file_missing_tensors_is_named(tmp_path):
    """A file without the mask head: the model's tensors it does not give are named."""
    path = str(tmp_path / 'model_final.pth')
    tensors = official_state_dict('detectron2_mae_vitdet')
    save({'model': {k: v for k, v in tensors.items() if 'mask_head' not in k}}, path)
    model = build_model(official_tiny_config('detectron2_mae_vitdet', str(tmp_path)))
    with pytest.raises(CheckpointError, match=r'does not give \(roi_head\.mask_head\.'):
        load_whole(model, path)


def test_other_input_normalisation_is_refused(tmp_path):
    """detectron2 stores its pixel mean/std; a recipe normalising otherwise is refused."""
    path = str(tmp_path / 'model_final.pth')
    tensors = official_state_dict('detectron2_mae_vitdet')
    tensors['pixel_mean'] = torch.tensor([103.53, 116.28, 123.675]).view(3, 1, 1)  # BGR order
    save({'model': tensors}, path)
    model = build_model(official_tiny_config('detectron2_mae_vitdet', str(tmp_path)))
    with pytest.raises(CheckpointError, match='pixel_mean'):
        load_whole(model, path)


def _evaluate(layout, root, tmp_path, img_size):
    cfg = official_tiny_config(layout, root, img_size=img_size)
    cfg.work_dir = str(tmp_path / 'work')
    config = str(tmp_path / 'recipe.py')
    cfg.dump(config)
    checkpoint = str(tmp_path / 'released.pth')
    save_official(layout, checkpoint)
    return subprocess.run([sys.executable, '-m', 'mixedconv.test', config, checkpoint],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)


@pytest.mark.parametrize('layout', ['detectron2_convmae_vitdet', 'mmseg0x_convmae_seg'])
def test_released_model_evaluates_with_mixedconv_test(layout, coco_root, ade20k_root, tmp_path):
    """``python -m mixedconv.test RECIPE RELEASED_FILE`` loads the file whole through
    ``load_from`` and evaluates it on the generated COCO / ADE20K val set."""
    root = coco_root if layout.startswith('detectron2') else ade20k_root
    result = _evaluate(layout, root, tmp_path, img_size=512)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout + result.stderr
    producer = 'detectron2 Mask R-CNN' if layout.startswith('detectron2') else 'OpenMMLab model'
    assert f'whole (read as {producer}' in out
    assert '0 left at init, 0 unused, 0 of another shape' in out
    metric = 'coco/bbox_mAP' if layout.startswith('detectron2') else 'mIoU'
    assert metric in out


def test_mixedconv_test_refuses_a_partial_load(coco_root, tmp_path):
    """A released file that does not fit the recipe stops ``mixedconv.test`` with one error
    line naming the tensors; mmengine's own non-strict load would log and evaluate a model
    with random heads."""
    cfg = official_tiny_config('detectron2_mae_vitdet', coco_root)
    cfg.model.roi_head.mask_head.num_classes = 7
    cfg.work_dir = str(tmp_path / 'work')
    config = str(tmp_path / 'recipe.py')
    cfg.dump(config)
    checkpoint = str(tmp_path / 'released.pth')
    save_official('detectron2_mae_vitdet', checkpoint)
    result = subprocess.run([sys.executable, '-m', 'mixedconv.test', config, checkpoint],
                            capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert result.returncode == 2, result.stderr[-3000:]
    assert 'error: ' in result.stderr and 'conv_logits' in result.stderr


def test_convert_checkpoint_whole_writes_an_mmengine_checkpoint(tmp_path):
    """``tools/convert_checkpoint.py --whole CONFIG SRC DST`` writes the model under our
    names; it loads back tensor for tensor, and a file that does not fit is one error line."""
    cfg = official_tiny_config('detectron2_convmae_fpn', str(tmp_path))
    config, src, dst = (str(tmp_path / n) for n in ('recipe.py', 'model_final.pth', 'ours.pth'))
    cfg.dump(config)
    save_official('detectron2_convmae_fpn', src)
    tool = osp.join(ROOT, 'tools', 'convert_checkpoint.py')
    result = subprocess.run([sys.executable, tool, '--whole', config, src, dst],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert '0 left at init, 0 unused, 0 of another shape' in result.stdout
    written = torch.load(dst, weights_only=True)
    model = build_model(cfg)
    load_whole(model, src)
    assert set(written['state_dict']) == set(model.state_dict())
    for name, value in model.state_dict().items():
        torch.testing.assert_close(written['state_dict'][name], value)
    assert load_whole(build_model(cfg), dst).layout.startswith('OpenMMLab model')

    cfg.model.rpn_head.feat_channels = 16
    cfg.dump(config)
    result = subprocess.run([sys.executable, tool, '--whole', config, src, str(tmp_path / 'x')],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and 'rpn_head.rpn_conv.0.conv.weight (32, 32, 3, 3) vs (16, 32, 3, 3)' in result.stderr
    assert not osp.exists(tmp_path / 'x')
