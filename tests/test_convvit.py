"""ConvViT backbone: shapes, options, official checkpoint layout, layer decay, fine-tuning run."""
import os.path as osp

import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.runner import Runner

from mixedconv.checkpoint import CheckpointError
from mixedconv.families import CONVVIT
from mixedconv.models.backbones import ConvViT
from mixedconv.models.layers import CBlock, resize_pos_embed, sincos_pos_embed_2d
from mixedconv.registry import MODELS

CONFIG_DIR = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'configs', 'convmae')
FINETUNE_CFG = osp.join(CONFIG_DIR, 'convmae_convvit-base-p16_8xb128-coslr-100e_in1k.py')
LINEAR_CFG = osp.join(CONFIG_DIR, 'convmae_convvit-base-p16_8xb512-linear-coslr-90e_in1k.py')
TINY = dict(embed_dims=(16, 32, 64), depths=(1, 1, 2), num_heads=2, mlp_ratios=(2, 2, 2))


def tiny(**kwargs):
    kwargs.setdefault('img_size', 64)
    return MODELS.build(dict(type='ConvViT', arch=TINY, **kwargs))


@pytest.mark.parametrize('size', [(224, 224), (256, 320)])
@pytest.mark.parametrize('level4', ['maxpool', 'conv'])
def test_shapes_all_levels(size, level4):
    model = tiny(out_indices=(0, 1, 2, 3), out_level4=level4).eval()
    h, w = size
    outs = model(torch.randn(1, 3, h, w))
    assert [tuple(o.shape) for o in outs] == [
        (1, 16, h // 4, w // 4), (1, 32, h // 8, w // 8), (1, 64, h // 16, w // 16),
        (1, 64, h // 32, w // 32)]
    assert hasattr(model, 'level4_conv') == (level4 == 'conv')


def test_default_output_is_stage3_and_base_arch_at_224():
    model = ConvViT(arch='b').eval()
    with torch.no_grad():
        (out,) = model(torch.randn(1, 3, 224, 224))
    assert out.shape == (1, 768, 14, 14)
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(83.5e6, rel=0.05)


def test_1024_with_window_attention_and_rel_pos():
    model = tiny(img_size=1024, out_indices=(0, 1, 2, 3), out_level4='conv', window_size=16,
                 global_blocks=(1,), use_rel_pos=True, layer_scale_init=1.0).eval()
    assert model.blocks3[0].window_size == 16 and model.blocks3[1].window_size == 0
    assert model.blocks3[0].attn.rel_pos.grid_hw == (16, 16)
    assert model.blocks3[1].attn.rel_pos.grid_hw == (64, 64)
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 1024, 1024))
    assert [o.shape[-1] for o in outs] == [256, 128, 64, 32]


def test_avg_featmap_uses_fc_norm_and_no_final_norm():
    model = tiny(out_type='avg_featmap').eval()
    (out,) = model(torch.randn(2, 3, 64, 96))
    assert out.shape == (2, 64)
    assert hasattr(model, 'fc_norm') and not hasattr(model, 'norm')
    with pytest.raises(ValueError, match='out_indices'):
        tiny(out_type='avg_featmap', out_indices=(1, 2))


@pytest.mark.parametrize('size', [(230, 224), (224, 200)])
def test_size_not_multiple_of_16_is_rejected(size):
    with pytest.raises(ValueError, match=r'multiples of 16.*%dx%d' % size):
        tiny(patch_pad=None)(torch.randn(1, 3, *size))
    with pytest.raises(ValueError, match=r'multiples of 16.*%dx%d' % size):
        tiny(out_type='avg_featmap')(torch.randn(1, 3, *size))


def test_unknown_arch_lists_the_valid_ones():
    with pytest.raises(ValueError,
                       match=r"unknown ConvViT arch 'xl'; use one of \['b', 'h', 'l', 's'\]"):
        ConvViT(arch='xl')
    with pytest.raises(ValueError, match='needs exactly the keys'):
        ConvViT(arch=dict(embed_dims=(8, 16, 32), depths=(1, 1, 1)))


def test_other_input_size_resizes_pos_embed_at_forward():
    model = tiny(img_size=64).eval()
    x = torch.randn(1, 3, 96, 128)
    (out,) = model(x)
    assert out.shape == (1, 64, 6, 8)
    # the same network built for that grid (position table replaced by the resized one)
    other = tiny(img_size=(96, 128)).eval()
    state = model.state_dict()
    state['pos_embed'] = resize_pos_embed(model.pos_embed, (4, 4), (6, 8))
    other.load_state_dict(state)
    torch.testing.assert_close(other(x)[0], out)


def test_drop_path_is_linear_over_all_blocks():
    model = tiny(drop_path_rate=0.3)
    blocks = [*model.blocks1, *model.blocks2, *model.blocks3]
    rates = [getattr(blk.drop_path, 'drop_prob', 0.) for blk in blocks]
    assert isinstance(model.blocks1[0].drop_path, nn.Identity)
    assert rates == pytest.approx([0.0, 0.1, 0.2, 0.3])


def test_with_cp_gives_the_same_gradients():
    torch.manual_seed(0)
    model = tiny(out_indices=(0, 2))
    x = torch.randn(2, 3, 64, 64)
    grads = []
    for with_cp in (False, True, 'elementwise'):
        model.with_cp = with_cp
        model.zero_grad()
        sum(o.square().mean() for o in model(x)).backward()
        grads.append([p.grad.clone() for p in model.parameters() if p.grad is not None])
    assert len(grads[0]) == len(grads[1]) == len(grads[2]) > 0
    for reference, *others in zip(*grads):
        for other in others:
            torch.testing.assert_close(other, reference)


def test_frozen_stages():
    model = tiny(frozen_stages=2)
    model.train()
    for module in (model.patch_embed1, model.blocks1, model.patch_embed2, model.blocks2):
        assert not module.training
        assert not any(p.requires_grad for p in module.parameters())
    assert model.blocks3.training and all(p.requires_grad for p in model.blocks3.parameters())
    probe = tiny(frozen_stages=3, out_type='avg_featmap')
    assert not any(p.requires_grad for p in probe.parameters())


def test_official_parameter_layout():
    sd = ConvViT(arch='b').state_dict()
    shapes = {k: tuple(v.shape) for k, v in sd.items()}
    assert shapes['patch_embed1.proj.weight'] == (256, 3, 4, 4)
    assert shapes['patch_embed3.norm.weight'] == (768,)
    assert shapes['patch_embed4.weight'] == (768, 768)
    assert shapes['pos_embed'] == (1, 196, 768)
    assert shapes['blocks1.1.attn.weight'] == (256, 1, 5, 5)
    assert shapes['blocks1.0.conv1.weight'] == (256, 256, 1, 1)
    assert shapes['blocks2.1.mlp.fc1.weight'] == (1536, 384, 1, 1)
    assert shapes['blocks3.10.attn.qkv.weight'] == (2304, 768)
    assert shapes['norm.weight'] == (768,)
    assert not any(k.startswith(('blocks3.11', 'head', 'fc_norm')) for k in sd)
    torch.testing.assert_close(sd['pos_embed'], sincos_pos_embed_2d(768, (14, 14)))


@pytest.mark.parametrize('wrap', ['model', 'state_dict_backbone'])
def test_official_checkpoint_loads_with_no_missing_keys(tmp_path, wrap):
    source = ConvViT(arch='b')
    sd = source.state_dict()
    ckpt = ({'model': sd} if wrap == 'model' else
            {'state_dict': {f'backbone.{k}': v for k, v in sd.items()}})
    path = str(tmp_path / 'convmae_base.pth')
    torch.save(ckpt, path)
    # fine-tuning layout: fc_norm instead of norm, plus transfer-only parameters
    model = MODELS.build(dict(type='ConvViT', arch='b', out_type='avg_featmap', use_rel_pos=True,
                              layer_scale_init=0.1,
                              init_cfg=dict(type='Pretrained', checkpoint=path)))
    model.init_weights()
    report = model.load_report
    assert report.missing == [] and report.mismatched == []
    assert report.unexpected == ['norm.weight', 'norm.bias']
    assert any('relative_position_bias_table' in k for k in report.fresh)
    assert 'fc_norm.weight' in report.fresh and 'blocks3.0.ls1.gamma' in report.fresh
    loaded = model.state_dict()
    for key in ('blocks1.0.attn.weight', 'blocks3.10.mlp.fc2.weight', 'patch_embed4.bias'):
        torch.testing.assert_close(loaded[key], sd[key])


def test_vit_checkpoint_is_rejected(tmp_path):
    from timm.models.vision_transformer import VisionTransformer
    vit = VisionTransformer(img_size=64, patch_size=16, embed_dim=64, depth=2, num_heads=2,
                            num_classes=0)
    path = str(tmp_path / 'vit.pth')
    torch.save({'model': vit.state_dict()}, path)
    model = tiny(init_cfg=dict(type='Pretrained', checkpoint=path))
    with pytest.raises(CheckpointError, match='does not fit ConvViT'):
        model.init_weights()


def test_checkpoint_with_a_narrower_stage3_is_rejected(tmp_path):
    # Over half the tensors (stages 1-2) fit by name and shape, so only the
    # per-tensor shape check can refuse it; stage 3 must not train from random weights.
    stage_dims = CONVVIT.tiny['embed_dims']
    narrower = dict(CONVVIT.tiny, embed_dims=(*stage_dims[:2], stage_dims[2] // 2))
    source = MODELS.build(dict(type='ConvViT', arch=narrower, img_size=64)).state_dict()
    model = tiny(init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'narrow.pth')))
    target = model.state_dict()
    fitting = [k for k, v in source.items() if k in target and v.shape == target[k].shape]
    assert 2 * len(fitting) > len(target)
    torch.save({'meta': {}, 'state_dict': {f'backbone.{k}': v for k, v in source.items()}},
               str(tmp_path / 'narrow.pth'))
    before = {k: v.clone() for k, v in target.items()}
    with pytest.raises(CheckpointError, match=r'other shapes .*patch_embed3\.proj\.weight'):
        model.init_weights()
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, before[key])


def test_pos_embed_resized_from_checkpoint_grid(tmp_path):
    source = tiny(img_size=64, learnable_pos_embed=True)
    with torch.no_grad():
        source.pos_embed.normal_()
    path = str(tmp_path / 'ckpt.pth')
    torch.save({'model': source.state_dict()}, path)
    model = tiny(img_size=(96, 128), init_cfg=dict(type='Pretrained', checkpoint=path))
    model.init_weights()
    assert model.load_report.missing == [] and model.load_report.mismatched == []
    torch.testing.assert_close(model.pos_embed.data,
                               resize_pos_embed(source.pos_embed.data, (4, 4), (6, 8)))


def test_rel_pos_table_resized_from_checkpoint(tmp_path):
    source = tiny(img_size=64, use_rel_pos=True)
    with torch.no_grad():
        source.blocks3[0].attn.rel_pos.relative_position_bias_table.normal_()
    path = str(tmp_path / 'ckpt.pth')
    torch.save(source.state_dict(), path)
    model = tiny(img_size=128, use_rel_pos=True, init_cfg=dict(type='Pretrained',
                                                                checkpoint=path))
    model.init_weights()
    table = model.blocks3[0].attn.rel_pos.relative_position_bias_table
    assert table.shape == (15 * 15, 2) and model.load_report.mismatched == []
    assert table.abs().sum() > 0


def test_get_layer_depth():
    model = tiny(out_type='avg_featmap')  # 2 stage-3 blocks -> 4 layer ids
    assert model.get_layer_depth('patch_embed1.proj.weight') == (0, 4)
    assert model.get_layer_depth('blocks2.0.attn.weight') == (0, 4)
    assert model.get_layer_depth('patch_embed4.weight') == (0, 4)
    assert model.get_layer_depth('pos_embed') == (0, 4)
    assert model.get_layer_depth('blocks3.0.attn.qkv.weight') == (1, 4)
    assert model.get_layer_depth('blocks3.1.mlp.fc1.bias') == (2, 4)
    assert model.get_layer_depth('fc_norm.weight') == (3, 4)
    assert model.get_layer_depth('backbone.blocks3.1.norm1.weight', prefix='backbone.') == (2, 4)
    assert model.get_layer_depth('head.fc.weight', prefix='backbone.') == (3, 4)
    assert ConvViT(arch='b').get_layer_depth('norm.weight') == (12, 13)


def test_layer_decay_lr_scales():
    model = MODELS.build(dict(
        type='mmpretrain.ImageClassifier',
        backbone=dict(type='ConvViT', arch=TINY, img_size=64, out_type='avg_featmap',
                      learnable_pos_embed=True),
        head=dict(type='mmpretrain.LinearClsHead', num_classes=2, in_channels=64)))
    wrapper = build_optim_wrapper(model, dict(
        optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
        constructor='LayerDecayOptimWrapperConstructor',
        paramwise_cfg=dict(layer_decay_rate=0.5)))
    scale, decay = {}, {}
    for group in wrapper.optimizer.param_groups:
        assert group['lr'] == pytest.approx(1e-3 * group['lr_scale'])
        for name in group['param_names']:
            scale[name], decay[name] = group['lr_scale'], group['weight_decay']
    assert len(scale) == sum(1 for _ in model.parameters())
    assert scale['backbone.patch_embed1.proj.weight'] == pytest.approx(0.125)
    assert scale['backbone.blocks1.0.mlp.fc2.weight'] == pytest.approx(0.125)
    assert scale['backbone.pos_embed'] == pytest.approx(0.125)
    assert scale['backbone.blocks3.0.attn.qkv.weight'] == pytest.approx(0.25)
    assert scale['backbone.blocks3.1.attn.qkv.weight'] == pytest.approx(0.5)
    assert scale['backbone.fc_norm.weight'] == 1 and scale['head.fc.weight'] == 1
    assert decay['backbone.blocks3.0.attn.qkv.weight'] == 0.05
    assert decay['backbone.blocks1.0.attn.weight'] == 0.05
    assert decay['backbone.pos_embed'] == 0 and decay['backbone.blocks3.0.attn.qkv.bias'] == 0
    assert decay['backbone.blocks1.0.norm1.weight'] == 0


def test_cblock_mask_zeroes_the_depthwise_input():
    torch.manual_seed(0)
    blk = CBlock(8).eval()
    x = torch.randn(1, 8, 8, 8, requires_grad=True)
    keep = torch.ones(1, 1, 8, 8)
    keep[..., :4] = 0  # left half masked
    blk(x, keep)[..., 4:].sum().backward()
    assert x.grad[..., :4].abs().sum() == 0 and x.grad[..., 4:].abs().sum() > 0


def _tiny_run_cfg(path, work_dir, image_folder, **overrides):
    cfg = Config.fromfile(path)
    cfg.work_dir = work_dir
    cfg.model.backbone.arch = TINY
    cfg.model.backbone.img_size = 64
    cfg.model.head.num_classes = 2
    cfg.model.head.in_channels = 64
    cfg.data_preprocessor.num_classes = 2
    for step in cfg.train_dataloader.dataset.pipeline:
        if step.type == 'RandomResizedCrop':
            step.scale = 64
    cfg.train_dataloader.update(batch_size=8, num_workers=0, persistent_workers=False)
    cfg.train_dataloader.dataset = dict(type='CustomDataset', data_root=image_folder,
                                        pipeline=cfg.train_dataloader.dataset.pipeline)
    cfg.train_cfg = dict(by_epoch=True, max_epochs=1)
    for key in ('val_dataloader', 'val_cfg', 'val_evaluator', 'test_dataloader', 'test_cfg',
                'test_evaluator'):
        cfg[key] = None
    cfg.optim_wrapper.type = 'OptimWrapper'  # AMP needs a GPU; the recipe keeps bf16
    cfg.optim_wrapper.pop('dtype')
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    cfg.merge_from_dict(overrides)
    return cfg


@pytest.mark.parametrize('config', [FINETUNE_CFG, LINEAR_CFG], ids=['finetune', 'linear'])
def test_finetune_and_linear_probe_run_two_iterations(tmp_path, image_folder, config):
    encoder = tiny()
    ckpt = str(tmp_path / 'encoder.pth')
    torch.save({'model': encoder.state_dict()}, ckpt)
    cfg = _tiny_run_cfg(config, str(tmp_path / 'work'), image_folder)
    cfg.model.backbone.init_cfg.checkpoint = ckpt
    if cfg.model.neck is not None:
        cfg.model.neck.input_features = 64
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert runner.iter == 2
    loss = runner.message_hub.get_scalar('train/loss').current()
    assert torch.isfinite(torch.tensor(loss))
    backbone = runner.model.backbone
    assert backbone.load_report.missing == [] and len(backbone.load_report.matched) > 20
    assert osp.isfile(osp.join(cfg.work_dir, 'epoch_1.pth'))
