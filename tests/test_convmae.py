"""ConvMAE pretraining: masked convolution leaks nothing, skip and dense paths agree, the
encoder exports under ``backbone.``, and the real config trains through the mmengine runner."""
import glob
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner
from PIL import Image

from mixedconv.benchmark.tiny import shrink_pretrain
from mixedconv.checkpoint import safe_load
from mixedconv.models.backbones import ConvViT
from mixedconv.models.selfsup import random_masking
from mixedconv.registry import MODELS

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG = osp.join(REPO, 'configs', 'convmae',
                  'convmae_convvit-base-p16_8xb384-amp-coslr-1600e_in1k.py')
TINY = dict(embed_dims=(16, 32, 64), depths=(1, 2, 2), num_heads=2, mlp_ratios=(2, 2, 2))
TINY_DECODER = dict(type='ReconstructionDecoder', embed_dim=32, depth=1, num_heads=2)


def tiny_convmae(**kwargs):
    torch.manual_seed(0)
    return MODELS.build(dict(type='ConvMAE', backbone=dict(type='ConvViT', arch=TINY, img_size=64),
                             neck=TINY_DECODER, **kwargs))


def cell_mask(ids_keep, grid_hw):
    """(B, 1, H, W) pixel mask, 1 inside the visible 16x16 cells."""
    keep = torch.zeros(ids_keep.shape[0], grid_hw[0] * grid_hw[1])
    keep.scatter_(1, ids_keep, 1.)
    keep = keep.view(-1, 1, *grid_hw)
    return keep.repeat_interleave(16, 2).repeat_interleave(16, 3)


@pytest.mark.parametrize('skip_masked', [True, False])
def test_visible_outputs_ignore_masked_pixels(skip_masked):
    model = tiny_convmae(skip_masked=skip_masked).eval()
    grid = (4, 6)
    ids_keep, _, _ = random_masking(2, 24, 0.5, generator=torch.Generator().manual_seed(1))
    imgs = torch.randn(2, 3, 64, 96, requires_grad=True)
    out = model.encode(imgs, ids_keep)
    assert out.shape == (2, 12, 64)
    (out * torch.randn_like(out)).sum().backward()
    visible = cell_mask(ids_keep, grid).bool().expand_as(imgs)
    assert imgs.grad[~visible].abs().max() == 0  # exactly zero
    assert (imgs.grad[visible] != 0).float().mean() > 0.9


def test_unmasked_encoder_does_mix_masked_pixels():
    """Control for the test above: without masked convolution the gradient reaches there."""
    backbone = tiny_convmae().backbone.eval()
    imgs = torch.randn(1, 3, 64, 64, requires_grad=True)
    ids_keep = torch.tensor([[0, 5, 10, 15]])
    (out,) = backbone(imgs)
    tokens = out.flatten(2).transpose(1, 2)[0, ids_keep[0]]
    tokens.sum().backward()
    visible = cell_mask(ids_keep, (4, 4)).bool().expand_as(imgs)
    assert imgs.grad[~visible].abs().max() > 0


def test_skip_and_dense_paths_agree():
    model = tiny_convmae().eval()
    imgs = torch.randn(2, 3, 64, 96)
    ids_keep, _, _ = random_masking(2, 24, 0.6, generator=torch.Generator().manual_seed(2))
    feats, losses = [], []
    for skip in (True, False):
        model.skip_masked = skip
        feats.append(model.encode(imgs, ids_keep))
        torch.manual_seed(3)
        losses.append(model.loss(imgs)['loss'])
    torch.testing.assert_close(feats[0], feats[1], atol=1e-5, rtol=0)
    torch.testing.assert_close(losses[0], losses[1], atol=1e-5, rtol=0)
    stages = [model.backbone.forward_masked(imgs, ids_keep, skip) for skip in (True, False)]
    for a, b in zip(*stages):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


@pytest.mark.parametrize('ratio,size', [(0.75, (64, 64)), (0.4, (48, 80)), (0.9, (96, 96))])
def test_loss_and_logged_mask_ratio(ratio, size):
    model = tiny_convmae(mask_ratio=ratio)
    out = model(torch.randn(2, 3, *size), mode='loss')
    n = size[0] * size[1] // 256
    assert set(out) == {'loss', 'mask_ratio'}
    assert out['mask_ratio'].item() == pytest.approx(1 - int(n * (1 - ratio)) / n)
    assert torch.isfinite(out['loss']) and out['loss'].requires_grad


def test_wrong_backbone_options_are_rejected():
    model = MODELS.build(dict(type='ConvMAE', neck=TINY_DECODER, backbone=dict(
        type='ConvViT', arch=TINY, img_size=64, window_size=2)))
    with pytest.raises(ValueError, match='window'):
        model.loss(torch.randn(1, 3, 64, 64))
    with pytest.raises(ValueError, match='multiples of 16'):
        tiny_convmae().loss(torch.randn(1, 3, 64, 72))


def test_backbone_holds_exactly_the_encoder():
    model = tiny_convmae()
    encoder = {k[len('backbone.'):]: v for k, v in model.state_dict().items()
               if k.startswith('backbone.')}
    target = ConvViT(arch=TINY, img_size=64)
    target.load_state_dict(encoder, strict=True)  # no missing, no unexpected keys
    others = {k.split('.')[0] for k in model.state_dict() if not k.startswith('backbone.')}
    assert others == {'neck', 'stage1_output_decode', 'stage2_output_decode'}
    assert not model.backbone.pos_embed.requires_grad


def test_init():
    model = tiny_convmae()
    assert model.neck.mask_token.std().item() == pytest.approx(0.02, rel=0.5)
    assert model.backbone.norm.weight.eq(1).all() and model.backbone.norm.bias.eq(0).all()
    assert model.backbone.patch_embed4.bias.eq(0).all()
    w = model.backbone.patch_embed3.proj.weight.flatten(1)
    bound = (6 / sum(w.shape)) ** 0.5  # xavier-uniform of the flattened conv
    assert w.abs().max() <= bound and w.abs().max() > 0.8 * bound


def test_loss_decreases_on_a_fixed_batch(image_folder):
    files = sorted(glob.glob(osp.join(image_folder, '*', '*.png')))[:4]
    imgs = torch.from_numpy(np.stack([np.asarray(Image.open(f)) for f in files]))
    imgs = imgs.permute(0, 3, 1, 2).float()
    imgs = (imgs - 127.5) / 64
    model = tiny_convmae().train()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, betas=(0.9, 0.95))
    losses = []
    for _ in range(15):
        torch.manual_seed(0)  # the same mask every step
        loss = model.loss(imgs)['loss']
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-3:]) < 0.8 * sum(losses[:3]), losses


def test_pretraining_runs_two_iterations_from_the_real_config(tmp_path, imagenet_root):
    cfg = shrink_pretrain(Config.fromfile(CONFIG), imagenet_root)
    cfg.work_dir = str(tmp_path / 'work')
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert runner.iter == 2
    hub = runner.message_hub
    assert torch.isfinite(torch.tensor(hub.get_scalar('train/loss').current()))
    assert hub.get_scalar('train/mask_ratio').current() == pytest.approx(0.75)
    # the checkpoint's encoder loads into a downstream ConvViT with nothing missing
    path = osp.join(cfg.work_dir, 'iter_2.pth')
    model = ConvViT(arch=cfg.model.backbone.arch, img_size=64,
                    init_cfg=dict(type='Pretrained', checkpoint=path))
    model.init_weights()
    assert model.load_report.missing == [] and model.load_report.unexpected == []
    torch.testing.assert_close(model.blocks3[0].attn.qkv.weight,
                               runner.model.backbone.blocks3[0].attn.qkv.weight)

    # tools/export_encoder.py writes {'model': encoder} in the official layout
    exported = osp.join(cfg.work_dir, 'encoder.pth')
    out = subprocess.run([sys.executable, osp.join(REPO, 'tools', 'export_encoder.py'), path,
                          exported], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    official_keys = set(safe_load(exported)['model'])
    assert {'patch_embed1.proj.weight', 'patch_embed4.weight', 'pos_embed', 'norm.weight',
            'blocks1.0.attn.weight', 'blocks3.0.attn.qkv.weight'} <= official_keys
    model = ConvViT(arch=cfg.model.backbone.arch, img_size=64,
                    init_cfg=dict(type='Pretrained', checkpoint=exported))
    model.init_weights()
    assert model.load_report.missing == [] and model.load_report.unexpected == []
