import os.path as osp

import pytest
import torch

from mixedconv.checkpoint import CheckpointError
from mixedconv.models.backbones import ConvViT, PlainViT
from mixedconv.models.layers import infer_grid
from mixedconv.models.layers.rel_pos import offset_rows

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
TINY = dict(embed_dim=32, depth=2, num_heads=2)
MM_TINY = dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=128)


def _randomise_(module):
    """Non-trivial values everywhere (norms and biases included), for equality tests."""
    torch.manual_seed(0)
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0, 0.2)
    module.eval()  # mmpretrain backbones' train() returns None, so not chained
    return module


def _pretrained(tmp_path, state_dict, **kwargs):
    path = str(tmp_path / 'ckpt.pth')
    torch.save(state_dict, path)
    model = PlainViT(init_cfg=dict(type='Pretrained', checkpoint=path), **kwargs)
    model.init_weights()
    return model.eval()


def test_featmap_and_pyramid_shapes_non_square():
    x = torch.randn(2, 3, 64, 96)
    vit = PlainViT(arch=dict(TINY, depth=4), img_size=32, out_indices=(0, 1, 2, 3))
    assert [tuple(o.shape) for o in vit(x)] == [(2, 32, 4, 6)] * 4
    pyramid = PlainViT(arch=dict(TINY, depth=4), img_size=32, out_indices=(0, 1, 2, -1),
                       rescale_to_pyramid=True)
    assert [tuple(o.shape) for o in pyramid(x)] == [(2, 32, 16, 24), (2, 32, 8, 12),
                                                    (2, 32, 4, 6), (2, 32, 2, 3)]
    assert pyramid.is_fresh_param('fpn1.0.weight') and not pyramid.is_fresh_param('norm.weight')


def test_default_out_indices_follow_vit_b():
    vit = PlainViT(arch='base')
    assert vit.out_indices == (3, 5, 7, 11)
    assert PlainViT(arch=TINY, out_type='avg_featmap').out_indices == (1,)


def test_window_attention_and_rel_pos_drop_the_class_token():
    vit = PlainViT(arch=dict(TINY, depth=3), img_size=32, window_size=2, global_blocks=(-1,),
                   use_rel_pos=True, out_indices=(0, 2))
    assert not hasattr(vit, 'cls_token') and vit.pos_embed.shape == (1, 4, 32)
    assert vit.blocks[0].window_size == 2 and vit.blocks[2].window_size == 0
    assert vit.blocks[2].attn.rel_pos.grid_hw == (2, 2)  # global block: the img_size grid
    outs = vit(torch.randn(1, 3, 48, 80))  # 3x5 grid: windows are padded
    assert [tuple(o.shape) for o in outs] == [(1, 32, 3, 5)] * 2
    assert all(vit.is_fresh_param(n) for n, _ in vit.named_parameters()
               if 'relative_position_bias_table' in n)
    with pytest.raises(ValueError, match='class token'):
        PlainViT(arch=TINY, window_size=2, out_type='cls_token')


def test_bad_input_size_and_arch():
    vit = PlainViT(arch=TINY, img_size=32, patch_pad=None)
    with pytest.raises(ValueError, match='not a multiple of the patch size 16'):
        vit(torch.randn(1, 3, 40, 32))
    with pytest.raises(ValueError, match='unknown PlainViT arch'):
        PlainViT(arch='gigantic')
    with pytest.raises(ValueError, match='exactly 4'):
        PlainViT(arch=TINY, out_indices=(1,), rescale_to_pyramid=True)


def test_timm_vit_state_dict_loads_and_matches(tmp_path):
    from timm.models.vision_transformer import VisionTransformer
    ref = _randomise_(VisionTransformer(img_size=32, patch_size=16, embed_dim=32, depth=2,
                                        num_heads=2, num_classes=0))
    x = torch.randn(2, 3, 32, 32)
    vit = _pretrained(tmp_path, ref.state_dict(), arch=TINY, img_size=32, out_type='cls_token')
    assert vit.load_report.missing == [] and vit.load_report.mismatched == []
    torch.testing.assert_close(vit(x)[0], ref.forward_features(x)[:, 0])


@pytest.mark.parametrize('size', [(32, 32), (48, 32)])
def test_mmpretrain_maevit_state_dict_loads_and_matches(tmp_path, size):
    from mmpretrain.models import MAEViT
    mae = _randomise_(MAEViT(arch=MM_TINY, img_size=32, patch_size=16))
    vit = _pretrained(tmp_path, mae.state_dict(), arch=TINY, img_size=32, out_indices=(1,))
    report = vit.load_report
    assert report.missing == [] and report.mismatched == [] and report.unexpected == []
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        ref = mae(x, mask=None)[0]  # (B, 1 + N, D) after the final norm, no masking
        out = vit(x)[0]
    grid = (size[0] // 16, size[1] // 16)
    torch.testing.assert_close(out, ref[:, 1:].transpose(1, 2).reshape(2, 32, *grid))


def test_mmpretrain_vit_avg_featmap_matches(tmp_path):
    """Fine-tuning head input: mean of patch tokens through fc_norm (mmpretrain's ln2)."""
    from mmpretrain.models import VisionTransformer
    ref = _randomise_(VisionTransformer(arch=MM_TINY, img_size=32, patch_size=16,
                                        out_type='avg_featmap', final_norm=False))
    vit = _pretrained(tmp_path, ref.state_dict(), arch=TINY, img_size=32,
                      out_type='avg_featmap', final_norm=False)
    assert vit.load_report.missing == [] and vit.load_report.fresh == []
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(vit(x)[0], ref(x)[0])


def test_mmpretrain_layer_scale_is_renamed(tmp_path):
    from mmpretrain.models import VisionTransformer
    ref = _randomise_(VisionTransformer(arch=MM_TINY, img_size=32, patch_size=16,
                                        layer_scale_init_value=0.1))
    vit = _pretrained(tmp_path, ref.state_dict(), arch=TINY, img_size=32, layer_scale_init=0.1,
                      out_type='cls_token')
    assert vit.load_report.missing == [] and vit.load_report.fresh == []
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(vit(x)[0], ref(x)[0])


def test_pos_embed_is_resized_and_class_row_dropped(tmp_path):
    src = PlainViT(arch=TINY, img_size=32)
    vit = _pretrained(tmp_path, src.state_dict(), arch=TINY, img_size=64, window_size=2,
                      global_blocks=(1,), use_rel_pos=True)
    assert vit.pos_embed.shape == (1, 16, 32) and vit.load_report.missing == []
    assert vit.load_report.unexpected == ['cls_token']
    # a 2x2 grid upsampled to 4x4 keeps the corner ordering of the source grid
    src_grid = src.pos_embed[0, 1:].reshape(2, 2, 32)
    dst_grid = vit.pos_embed[0].reshape(4, 4, 32)
    assert (dst_grid[0, 0] - src_grid[0, 0]).norm() < (dst_grid[0, 0] - src_grid[1, 1]).norm()


def test_one_grid_inference_for_position_and_offset_tables():
    """A stored table's grid: the model's when it fits (also non-square), else square."""
    assert infer_grid(14 * 14, (32, 32)) == (14, 14)
    assert infer_grid(32 * 48, (32, 48)) == (32, 48)
    assert infer_grid(offset_rows(7, 7), (14, 14), offset_rows) == (7, 7)
    assert infer_grid(offset_rows(32, 48), (32, 48), offset_rows) == (32, 48)
    with pytest.raises(ValueError, match='relative position table with 150 entries; it fits '
                       'neither the model grid 14x14 nor a square one'):
        infer_grid(150, (14, 14), offset_rows, 'relative position table')
    with pytest.raises(ValueError, match='position table with 197 entries'):
        infer_grid(197, (14, 14))


def test_convmae_checkpoint_is_rejected(tmp_path):
    convvit = ConvViT(arch=dict(embed_dims=(16, 16, 32), depths=(1, 1, 2), num_heads=2,
                                mlp_ratios=(4, 4, 4)), img_size=64)
    path = str(tmp_path / 'convmae.pth')
    torch.save({'state_dict': convvit.state_dict()}, path)
    vit = PlainViT(arch=TINY, img_size=64, init_cfg=dict(type='Pretrained', checkpoint=path))
    with pytest.raises(CheckpointError, match='another architecture'):
        vit.init_weights()


def test_frozen_stages():
    vit = PlainViT(arch=dict(TINY, depth=3), frozen_stages=2).train()
    assert not vit.pos_embed.requires_grad and not vit.cls_token.requires_grad
    assert not any(p.requires_grad for p in vit.blocks[1].parameters())
    assert all(p.requires_grad for p in vit.blocks[2].parameters())
    assert not vit.blocks[0].training and vit.blocks[2].training


def test_with_cp_and_drop_path_train():
    vit = PlainViT(arch=TINY, img_size=32, drop_path_rate=0.2, with_cp=True).train()
    vit(torch.randn(2, 3, 32, 32))[0].sum().backward()
    assert vit.patch_embed.proj.weight.grad.abs().sum() > 0


def test_layer_depth_and_layer_decay_from_finetune_config():
    from mmengine.config import Config
    from mmengine.optim import build_optim_wrapper
    from mmpretrain.registry import MODELS

    vit = PlainViT(arch=TINY)
    assert vit.get_layer_depth('patch_embed.proj.weight') == (0, 4)
    assert vit.get_layer_depth('backbone.blocks.1.mlp.fc1.weight', 'backbone.') == (2, 4)
    assert vit.get_layer_depth('fc_norm.bias') == (3, 4)

    cfg = Config.fromfile(osp.join(REPO, 'configs/mixedae/'
                                         'mixedae_vit-base-p16_8xb128-coslr-100e_in1k.py'))
    assert cfg.model.backbone.type == 'PlainViT' and cfg.model.backbone.out_type == 'avg_featmap'
    cfg.model.backbone.update(arch=TINY, img_size=32, init_cfg=None)
    cfg.model.head.update(in_channels=32, num_classes=2)
    model = MODELS.build(cfg.model)
    wrapper_cfg = dict(cfg.optim_wrapper, type='OptimWrapper')
    wrapper_cfg.pop('dtype')
    optim = build_optim_wrapper(model, wrapper_cfg).optimizer
    base_lr, rate = cfg.optim_wrapper.optimizer.lr, 0.65

    def lr_of(name):
        (group,) = [g for g in optim.param_groups if name in g['param_names']]
        return group['lr'], group['weight_decay']

    assert lr_of('backbone.pos_embed') == pytest.approx((base_lr * rate ** 3, 0.))
    assert lr_of('backbone.blocks.0.attn.qkv.weight') == pytest.approx((base_lr * rate ** 2, 0.05))
    assert lr_of('backbone.blocks.1.attn.qkv.weight') == pytest.approx((base_lr * rate, 0.05))
    assert lr_of('backbone.fc_norm.weight') == pytest.approx((base_lr, 0.))
    assert lr_of('head.fc.weight') == pytest.approx((base_lr, 0.05))


def test_mmpretrain_mae_baseline_run_transfers_to_plain_vit(imagenet_root, tmp_path):
    """2 iterations of the MAE baseline config (mmpretrain's own MAE), then its checkpoint
    loads through the fine-tuning config's PlainViT and reproduces the MAEViT encoder."""
    from mmengine.config import Config
    from mmengine.runner import Runner
    from mmpretrain.registry import MODELS

    from mixedconv.benchmark.tiny import ARCHS, shrink_pretrain
    cfg = shrink_pretrain(Config.fromfile(osp.join(
        REPO, 'configs/mae/mae_vit-base-p16_8xb512-amp-coslr-1600e_in1k.py')), imagenet_root)
    cfg.work_dir = str(tmp_path)
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert runner.iter == 2

    ft_cfg = Config.fromfile(osp.join(REPO, 'configs/mae/'
                                            'mae_vit-base-p16_8xb128-coslr-100e_in1k.py'))
    arch = ARCHS['PlainViT']  # the same sizes as the tiny MAEViT, under PlainViT's names
    backbone_cfg = dict(ft_cfg.model.backbone, arch=arch, img_size=64, out_type='featmap',
                        final_norm=True, out_indices=(arch['depth'] - 1,), drop_path_rate=0.,
                        init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'iter_2.pth')))
    vit = MODELS.build(backbone_cfg)
    vit.init_weights()
    assert vit.load_report.missing == [] and vit.load_report.mismatched == []
    mae = runner.model.backbone
    mae.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = mae(x, mask=None)[0]
        out = vit.eval()(x)[0].flatten(2).transpose(1, 2)
    torch.testing.assert_close(out, ref[:, 1:])
