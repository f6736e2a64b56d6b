"""Transfer through the real mmdet / mmseg recipes, shrunk to tiny sizes: each config trains
2 iterations from a checkpoint of our own pretraining run and evaluates with mmdet's
CocoMetric or mmseg's IoUMetric on generated COCO / ADE20K-format data."""
import math
import os.path as osp

import pytest
from mmengine.config import Config
from mmengine.runner import Runner

from mixedconv.benchmark.tiny import shrink_pretrain, shrink_transfer
from mixedconv.data import make_ade20k, make_coco
from mixedconv.engine.layer_decay import NO_DECAY_NAMES

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
PRETRAIN = {
    'ConvViT': 'configs/convmae/convmae_convvit-base-p16_8xb384-amp-coslr-1600e_in1k.py',
    'PlainViT': 'configs/mixedae/mixedae_vit-base-p16_8xb256-amp-coslr-1600e_in1k.py',
}
DETECTION = {
    'configs/convmae/mask-rcnn_convvit-base-p16_fpn_8xb4-amp-lsj-1024-25e_coco.py': 'ConvViT',
    'configs/convmae/mask-rcnn_convvit-base-p16_sfp_8xb2-amp-lsj-1024-25e_coco.py': 'ConvViT',
    'configs/mixedae/mask-rcnn_vit-base-p16_sfp_16xb4-amp-lsj-1024-100e_coco.py': 'PlainViT',
}
SEGMENTATION = {
    'configs/convmae/upernet_convvit-base-p16_8xb2-amp-160k_ade20k-512x512.py': 'ConvViT',
    'configs/mixedae/upernet_vit-base-p16_8xb2-amp-160k_ade20k-512x512.py': 'PlainViT',
}


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp('data')
    make_coco(str(root / 'coco'), num_train=4, num_val=2)
    make_ade20k(str(root / 'ade'), num_train=4, num_val=2)
    from mixedconv.data import make_image_folder
    make_image_folder(str(root / 'imagenet' / 'train'), num_images=8)
    return root


@pytest.fixture(scope='module')
def pretrained(data, tmp_path_factory):
    """Checkpoints of 2-iteration ConvMAE and MixedAE pretraining runs (real runners)."""
    out = {}
    for family, config in PRETRAIN.items():
        cfg = shrink_pretrain(Config.fromfile(osp.join(ROOT, config)),
                              str(data / 'imagenet'))
        cfg.work_dir = str(tmp_path_factory.mktemp(family))
        Runner.from_cfg(cfg).train()
        out[family] = osp.join(cfg.work_dir, 'iter_2.pth')
    return out


def run_transfer(config, family, data_root, checkpoint, work_dir):
    cfg = shrink_transfer(Config.fromfile(osp.join(ROOT, config)), str(data_root))
    cfg.model.backbone.init_cfg.checkpoint = checkpoint
    cfg.work_dir = str(work_dir)
    runner = Runner.from_cfg(cfg)
    runner.train()
    return runner


def assert_loaded_everything(runner):
    report = runner.model.backbone.load_report
    assert report is not None, 'the pretrained checkpoint was not loaded'
    assert report.missing == [] and report.mismatched == []
    assert len(report.matched) > 10


@pytest.mark.parametrize('config', sorted(DETECTION))
def test_detection_transfer(config, data, pretrained, tmp_path):
    family = DETECTION[config]
    runner = run_transfer(config, family, data / 'coco', pretrained[family], tmp_path)
    assert_loaded_everything(runner)
    hub = runner.message_hub
    for metric in ('coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/segm_mAP'):
        value = hub.get_scalar(f'val/{metric}').current()
        assert 0.0 <= value <= 1.0 and not math.isnan(value), (metric, value)
    assert runner.iter == 2


@pytest.mark.parametrize('config', sorted(SEGMENTATION))
def test_segmentation_transfer(config, data, pretrained, tmp_path):
    family = SEGMENTATION[config]
    runner = run_transfer(config, family, data / 'ade', pretrained[family], tmp_path)
    assert_loaded_everything(runner)
    for metric in ('mIoU', 'aAcc'):
        value = runner.message_hub.get_scalar(f'val/{metric}').current()
        assert 0.0 <= value <= 100.0, (metric, value)
    assert runner.iter == 2


@pytest.mark.parametrize('config', [
    'configs/convmae/mask-rcnn_convvit-base-p16_sfp_8xb2-amp-lsj-1024-25e_coco.py',
    'configs/mixedae/upernet_vit-base-p16_8xb2-amp-160k_ade20k-512x512.py'])
def test_layer_decay_inside_mm_runners(config, data, tmp_path):
    """The constructor's per-group lr scales inside a real mmdet / mmseg runner."""
    cfg = shrink_transfer(Config.fromfile(osp.join(ROOT, config)),
                          str(data / ('coco' if 'coco' in config else 'ade')))
    cfg.model.backbone.init_cfg = None
    cfg.work_dir = str(tmp_path)
    runner = Runner.from_cfg(cfg)
    optim_wrapper = runner.build_optim_wrapper(runner.optim_wrapper)
    rate = cfg.optim_wrapper.paramwise_cfg.layer_decay_rate
    no_decay_names = cfg.optim_wrapper.paramwise_cfg.get('no_decay_names', NO_DECAY_NAMES)
    base_lr = cfg.optim_wrapper.optimizer.lr
    backbone = runner.model.backbone
    overrides = cfg.optim_wrapper.paramwise_cfg.get('overrides', {})
    detectron2_rule = cfg.optim_wrapper.paramwise_cfg.get('decay_rule') == 'detectron2'
    seen = set()
    for group in optim_wrapper.optimizer.param_groups:
        for name in group['param_names']:
            override = next((v for k, v in overrides.items() if k in name), {})
            if 'lr_scale' in override:
                expected = override['lr_scale']
            elif name.startswith('backbone.'):
                layer_id, num_layers = backbone.get_layer_depth(name[len('backbone.'):])
                expected = rate ** (num_layers - 1 - layer_id)
                seen.add(layer_id)
            else:
                expected = 1.0
            assert group['lr'] == pytest.approx(base_lr * expected), name
            if detectron2_rule:
                continue  # its weight-decay groups: tests/test_layer_decay.py
            no_decay = ('norm' in name or name.endswith('.bias') or 'gamma' in name or
                        any(key in name for key in no_decay_names))
            if no_decay:
                assert group['weight_decay'] == 0, name
            elif 'pos_embed' in name or 'relative_position_bias_table' in name:
                # the official constructors decay 2-D position tables (no_decay_names=())
                assert group['weight_decay'] == cfg.optim_wrapper.optimizer.weight_decay, name
    assert 0 in seen and len(seen) >= 3



def _recipe_roi_extractor(config, which):
    import mixedconv.models.roi_extractor  # noqa: F401  (the recipes' custom_imports)
    from mmdet.registry import MODELS
    from mmengine.registry import init_default_scope
    init_default_scope('mmdet')
    roi_head = Config.fromfile(osp.join(ROOT, config)).model.roi_head
    return MODELS.build(roi_head[f'{which}_roi_extractor'])


def _features_and_rois(channels=256, seed=0):
    import torch
    gen = torch.Generator().manual_seed(seed)
    feats = tuple(torch.randn(2, channels, 256 // s, 256 // s, generator=gen)
                  for s in (4, 8, 16, 32))
    xy = torch.rand(16, 2, generator=gen) * 700 + 1
    wh = torch.rand(16, 2, generator=gen) * 300 + 8
    batch = torch.arange(16).remainder(2).float()[:, None]
    return feats, torch.cat([batch, xy, xy + wh], dim=1)  # boxes of a 1024 px image


@pytest.mark.parametrize('which', ['bbox', 'mask'])
def test_recipe_roi_pooling_is_float32_under_bf16_autocast(which):
    """mmdet's SingleRoIExtractor under bf16 autocast fails in mmcv's RoIAlign (no bfloat16
    kernel); the recipes' extractor pools float32 features with float32 boxes and returns
    the features' dtype, equal to the float32 result up to the bfloat16 rounding of its
    output, whatever the bfloat16 rounding of the boxes would have cost."""
    import torch
    from mmdet.models.roi_heads.roi_extractors import SingleRoIExtractor
    config = next(iter(DETECTION))
    ours = _recipe_roi_extractor(config, which)
    assert type(ours).__name__ == 'Float32SingleRoIExtractor'
    feats, rois = _features_and_rois()
    reference = ours(feats, rois)

    plain = SingleRoIExtractor(**{k: Config.fromfile(osp.join(ROOT, config)).model.roi_head[
        f'{which}_roi_extractor'][k] for k in ('roi_layer', 'out_channels', 'featmap_strides')})
    torch.testing.assert_close(plain(feats, rois), reference, rtol=0, atol=0)  # same in fp32
    low = tuple(f.bfloat16() for f in feats)
    with pytest.raises(RuntimeError, match='BFloat16'):
        with torch.autocast('cpu', dtype=torch.bfloat16):
            plain(low, rois)

    with torch.autocast('cpu', dtype=torch.bfloat16):
        pooled = ours(low, rois)
    assert pooled.dtype == torch.bfloat16
    exact = ours(tuple(f.float() for f in low), rois)  # the same bf16 inputs, in float32
    torch.testing.assert_close(pooled.float(), exact, rtol=2 ** -8, atol=1e-6)
    boxes_rounded = ours(tuple(f.float() for f in low), rois.bfloat16().float())
    assert (boxes_rounded - exact).abs().max() > 10 * (pooled.float() - exact).abs().max()
