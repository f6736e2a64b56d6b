"""The test-time input and labels of the UperNet recipes follow mmseg 0.x's ADE20K test protocol,
the one behind the published ConvMAE (51.7) and MAE (48.1) mIoU (mmseg 0.30
``configs/_base_/datasets/ade20k.py``, ``datasets/pipelines/transforms.py`` Resize / Normalize,
``core/evaluation/metrics.py`` ``intersect_and_union``). The whole-model comparison with the
0.x models on the same weights (docs/recipes.md, "Whole-model parity: UperNet") relies on each
of these.
"""
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.registry import init_default_scope
from mmseg.registry import DATASETS
from PIL import Image

from layouts import ROOT
from mixedconv.benchmark.recipes import set_data_root
from mixedconv.data.synthetic import make_ade20k
from mixedconv.registry import MODELS

RECIPES = ['convmae/upernet_convvit-base-p16_8xb2-amp-160k_ade20k-512x512.py',
           'mae/upernet_vit-base-p16_8xb2-amp-160k_ade20k-512x512.py']
HEIGHT, WIDTH = 67, 90  # not square, not a multiple of the 512 crop after the rescale


@pytest.fixture(scope='module')
def ade_root(tmp_path_factory):
    return make_ade20k(str(tmp_path_factory.mktemp('ade')), num_train=1, num_val=1,
                       size=(HEIGHT, WIDTH))


def first_test_item(recipe, root):
    cfg = Config.fromfile(osp.join(ROOT, 'configs', recipe))
    set_data_root(cfg, root)
    init_default_scope('mmseg')
    dataset = DATASETS.build(cfg.test_dataloader.dataset)
    return cfg, dataset[0]


@pytest.mark.parametrize('recipe', RECIPES)
def test_test_input_is_rescaled_and_normalised_without_padding(recipe, ade_root):
    """Rescale to fit (2048, 512) with mmcv 1.x's rounding (``int(x * f + 0.5)``), no test-time
    padding (0.x has none; padding would move the slide windows), RGB normalised with the
    ImageNet mean / std (0.x ``mmcv.imnormalize``: float64 constants; float32 here)."""
    cfg, item = first_test_item(recipe, ade_root)
    factor = min(2048 / max(HEIGHT, WIDTH), 512 / min(HEIGHT, WIDTH))
    size = (int(HEIGHT * factor + 0.5), int(WIDTH * factor + 0.5))
    image = item['inputs']  # uint8 BGR as decoded, after Resize
    assert tuple(image.shape[-2:]) == size
    preprocessor = MODELS.build(cfg.model.data_preprocessor)
    inputs = preprocessor(pseudo_collate([item]), False)['inputs']
    assert tuple(inputs.shape[-2:]) == size
    mean = torch.tensor([123.675, 116.28, 103.53], dtype=torch.float64).view(3, 1, 1)
    std = torch.tensor([58.395, 57.12, 57.375], dtype=torch.float64).view(3, 1, 1)
    expected = (image.flip(0).double() - mean) / std
    torch.testing.assert_close(inputs[0].double(), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize('recipe', RECIPES)
def test_test_labels_are_reduced_once_at_the_original_size(recipe, ade_root):
    """The label the metric receives is the PNG at its original size with 0 -> 255 (ignored)
    and c -> c - 1 (0.x reduces inside the metric, 1.x in the pipeline: exactly once)."""
    cfg, item = first_test_item(recipe, ade_root)
    png = np.array(Image.open(item['data_samples'].seg_map_path)).astype(np.int64)
    assert png.max() > 0
    expected = np.where(png == 0, 255, png - 1)
    label = item['data_samples'].gt_sem_seg.data[0].numpy()
    assert label.shape == (HEIGHT, WIDTH)
    np.testing.assert_array_equal(label, expected)
    assert not cfg.test_evaluator.get('reduce_zero_label')
