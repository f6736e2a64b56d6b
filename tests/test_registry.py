"""mixedconv components are buildable from all three libraries and clash with none of them."""
import importlib

import pytest
from mmengine.registry import DefaultScope

import mixedconv.models.box_coder  # noqa: F401  (imported by the Mask R-CNN recipes)
import mixedconv.models.mask_head  # noqa: F401  (imported by the Mask R-CNN recipes)
import mixedconv.models.roi_extractor  # noqa: F401  (imported by the Mask R-CNN recipes)
from mixedconv.registry import (HOOKS, MODELS, OPTIM_WRAPPER_CONSTRUCTORS, OPTIMIZERS,
                                PARAM_SCHEDULERS, TASK_UTILS, TRANSFORMS)

LIBS = {'mmpretrain': 'mmpretrain.utils', 'mmdet': 'mmdet.utils', 'mmseg': 'mmseg.utils'}


def ours(registry):
    return sorted(n for n, c in registry.module_dict.items()
                  if c.__module__.startswith('mixedconv'))


def test_components_registered():
    names = ours(MODELS)
    for expected in ('ConvViT', 'PlainViT', 'ConvMAE', 'MixedAE', 'ReconstructionDecoder',
                     'SimpleFeaturePyramid', 'LayerNorm2d', 'Float32SingleRoIExtractor',
                     'ClippedFCNMaskHead'):
        assert expected in names
    assert 'LayerDecayOptimWrapperConstructor' in ours(OPTIM_WRAPPER_CONSTRUCTORS)
    assert 'MoCoV3LARS' in ours(OPTIMIZERS)
    assert {'FiniteLossHook', 'RNGStateHook', 'Fp16CompressionHook'} <= set(ours(HOOKS))
    assert 'WarmupCosineLR' in ours(PARAM_SCHEDULERS)
    assert 'CheckedLoadImageFromFile' in ours(TRANSFORMS)
    assert 'UpperClampedDeltaXYWHBBoxCoder' in ours(TASK_UTILS)


@pytest.mark.parametrize('lib', sorted(LIBS))
def test_no_name_clash_and_buildable(lib):
    importlib.import_module(LIBS[lib]).register_all_modules(init_default_scope=False)
    registry_mod = importlib.import_module(f'{lib}.registry')
    for root, child in ((MODELS, registry_mod.MODELS),
                        (OPTIM_WRAPPER_CONSTRUCTORS, registry_mod.OPTIM_WRAPPER_CONSTRUCTORS),
                        (OPTIMIZERS, registry_mod.OPTIMIZERS),
                        (HOOKS, registry_mod.HOOKS), (TRANSFORMS, registry_mod.TRANSFORMS),
                        (PARAM_SCHEDULERS, registry_mod.PARAM_SCHEDULERS),
                        (TASK_UTILS, registry_mod.TASK_UTILS)):
        for name in ours(root):
            assert name not in child.module_dict, f'{name} clashes with {lib}'
            with DefaultScope.overwrite_default_scope(lib):
                assert child.get(name) is root.get(name)
