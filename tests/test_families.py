"""The backbone families as data (mixedconv/families.py): one arch table, label and size
logic for the backbones, the task runner and the leaderboard; and a package whose data-only
parts import without torch."""
import os.path as osp
import subprocess
import sys

import pytest

from mixedconv.benchmark.checkpoints import CheckpointInfo
from mixedconv.families import CONVVIT, FAMILIES, PLAINVIT, label_of_backbone_cfg
from mixedconv.leaderboard.collect import _infer_backbone
from mixedconv.models.backbones import ConvViT, PlainViT

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


@pytest.mark.parametrize('arch, label', [
    ('b', 'ViT-B'), ('base', 'ViT-B'), ('l', 'ViT-L'),
    (dict(embed_dim=768, depth=12, num_heads=12), 'ViT-B'),
    (dict(embed_dim=1024, depth=24, num_heads=16, mlp_ratio=4), 'ViT-L'),
    (dict(embed_dim=64, depth=4, num_heads=2, mlp_ratio=2.), 'ViT-tiny'),
    (dict(embed_dim=768, depth=6, num_heads=12), 'ViT-custom'),
])
def test_custom_plain_vit_arch_dict_gets_its_size_label(arch, label):
    """The runner (CheckpointInfo) and the leaderboard (a dumped config) give one label."""
    assert CheckpointInfo('x.pth', 'PlainViT', arch, 'MAE').backbone_label == label
    cfg = dict(model=dict(backbone=dict(type='PlainViT', arch=arch)))
    assert _infer_backbone(cfg, 'work_dir') == label


@pytest.mark.parametrize('backbone, label', [
    (dict(type='ConvViT'), 'ConvViT-B'),
    (dict(type='ConvViT', arch='large'), 'ConvViT-L'),
    (dict(type='ConvViT', arch=dict(CONVVIT.tiny)), 'ConvViT-tiny'),
    (dict(type='PlainViT'), 'ViT-B'),
    # mmpretrain's ViTs, under their own arch names and keys
    (dict(type='VisionTransformer', arch='deit-base'), 'ViT-B'),
    (dict(type='mmpretrain.MAEViT', arch=dict(embed_dims=64, num_layers=4, num_heads=2,
                                              feedforward_channels=128)), 'ViT-tiny'),
    (dict(type='VisionTransformer'), 'ViT'),
    (dict(type='ResNet', depth=50), None),
])
def test_labels_of_backbone_configs(backbone, label):
    assert label_of_backbone_cfg(backbone) == label


@pytest.mark.parametrize('cls, family', [(ConvViT, CONVVIT), (PlainViT, PLAINVIT)])
def test_backbones_take_their_arch_table_from_the_family(cls, family):
    assert cls.arch_zoo is family.arch_zoo and cls.arch_aliases is family.arch_aliases
    for name in [*family.arch_zoo, *family.arch_aliases]:
        assert family.settings(name) == family.arch_zoo[family.canonical(name)]


def test_output_channels_follow_the_levels():
    assert CONVVIT.out_channels('b', (0, 1, 2, 3)) == [256, 384, 768, 768]
    assert CONVVIT.out_channels(CONVVIT.tiny, (2, )) == [64]
    assert PLAINVIT.out_channels('l', (7, 11, 15, 23)) == [1024] * 4
    assert FAMILIES['ConvViT'].depth('b') == 11 and PLAINVIT.depth('huge') == 32


def test_bad_arch_names_and_dicts_are_named():
    with pytest.raises(ValueError, match=r"unknown PlainViT arch 'giant'.*valid: b, base"):
        PLAINVIT.settings('giant')
    with pytest.raises(ValueError, match=r"missing \['num_heads'\], unknown \['width'\]"):
        PLAINVIT.settings(dict(embed_dim=8, depth=2, width=3))
    with pytest.raises(ValueError, match='one value per stage'):
        CONVVIT.settings(dict(embed_dims=(8, 16), depths=(1, 1, 1), num_heads=2,
                              mlp_ratios=(2, 2, 2)))


@pytest.mark.parametrize('module', ['mixedconv.leaderboard', 'mixedconv.families',
                                    'mixedconv.config_data', 'mixedconv.results',
                                    'mixedconv.cli'])
def test_data_only_modules_import_without_torch(module):
    code = (f'import sys, {module}; '
            "heavy = [m for m in ('torch', 'mmengine', 'mmpretrain') if m in sys.modules]; "
            "assert not heavy, heavy")
    out = subprocess.run([sys.executable, '-c', code], cwd=REPO, capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr


def test_custom_imports_of_the_package_name_register_everything(tmp_path):
    """A config's ``custom_imports=dict(imports=['mixedconv'])`` (read by mmengine, which is
    then loaded) registers the components, in a fresh interpreter."""
    config = tmp_path / 'cfg.py'
    config.write_text("custom_imports = dict(imports=['mixedconv'], allow_failed_imports=False)\n")
    code = ('from mmengine.config import Config; '
            f'Config.fromfile({str(config)!r}); '
            'from mmengine.registry import MODELS, OPTIMIZERS, TRANSFORMS; '
            "assert MODELS.get('ConvViT') and MODELS.get('MixedAE'); "
            "assert TRANSFORMS.get('CheckedLoadImageFromFile') and OPTIMIZERS.get('MoCoV3LARS')")
    out = subprocess.run([sys.executable, '-c', code], cwd=str(tmp_path), capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr


def test_method_table_names_each_method_once():
    """Method names, their backbone family and configs have one home; the benchmark's
    recipes and --pretrain names are read from it."""
    from mixedconv.benchmark.recipes import PRETRAIN_CONFIGS, TASK_CONFIGS
    from mixedconv.families import CONVMAE, MAE, METHODS, MIXEDAE, PRETRAINABLE, family_recipes
    assert (CONVMAE.family, MIXEDAE.family, MAE.family) == (CONVVIT, PLAINVIT, PLAINVIT)
    assert set(PRETRAINABLE) == set(PRETRAIN_CONFIGS) == {'convmae', 'mixedae', 'mae'}
    for method in METHODS.values():
        for config in (*method.pretrain_configs, *method.transfer_configs.values()):
            assert osp.isfile(osp.join(REPO, config)), config
    for task, configs in TASK_CONFIGS.items():
        for family, config in configs.items():
            assert family_recipes(family)[task] == config
    assert family_recipes('ConvViT') == dict(CONVMAE.transfer_configs)


@pytest.mark.parametrize('cls, family, arch', [
    (PlainViT, PLAINVIT, 'b'), (PlainViT, PLAINVIT, 'large'), (PlainViT, PLAINVIT, PLAINVIT.tiny),
    (ConvViT, CONVVIT, CONVVIT.tiny)])
def test_default_output_indices_are_the_backbones_own(cls, family, arch):
    assert cls(arch=arch).out_indices == family.default_out_indices(arch)
    if family is PLAINVIT:
        assert cls(arch=arch, out_type='avg_featmap').out_indices == \
            family.default_out_indices(arch, 'avg_featmap')


def test_mmpretrain_arch_round_trip_and_names():
    from mixedconv.families import (arch_in_name, label_in_name, mmpretrain_arch_of_plain,
                                    plain_arch_of_mmpretrain)
    for arch in ('b', 'large', PLAINVIT.tiny):
        mm = mmpretrain_arch_of_plain(arch)
        assert PLAINVIT.sizes_of(plain_arch_of_mmpretrain(mm)) == PLAINVIT.sizes_of(arch)
    assert arch_in_name('convmae_convvit_base_patch16') == (CONVVIT, 'b')
    assert arch_in_name('mae_vit_large_patch16') == (PLAINVIT, 'large')
    assert label_in_name('mask-rcnn_vit-h_coco') == 'ViT-H'
    assert label_in_name('upernet_convvit_ade') == 'ConvViT'
    assert label_in_name('resnet50_coco') is None
