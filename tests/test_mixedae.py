import math
import os.path as osp

import pytest
import torch
import torch.nn.functional as F

from mixedconv.models.backbones import PlainViT
from mixedconv.models.heads import patchify, reconstruction_loss, unpatchify
from mixedconv.models.layers import (Attention, HomologousAttention, homologous_precision,
                                     topk_key_mask)
from mixedconv.models.selfsup.mixedae import (MixedAE, mix_tokens, sample_mixing,
                                              supervised_contrastive_loss, unmix_tokens)

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
TINY = dict(embed_dim=32, depth=2, num_heads=2)


def build_mixedae(**kwargs):
    cfg = dict(backbone=dict(type='PlainViT', arch=TINY, img_size=64),
               neck=dict(type='ReconstructionDecoder', in_dim=32, embed_dim=32, depth=1,
                         num_heads=2, patch_size=16),
               hc_hidden_dim=32, hc_out_dim=16)
    cfg.update(kwargs)
    return MixedAE(**cfg)


# ---------------------------------------------------------------- homologous attention
def test_topk_mask_keeps_exactly_k_largest_patch_keys():
    logits = torch.randn(2, 3, 17, 17)
    keep, index = topk_key_mask(logits, 5, num_extra_tokens=1)
    patch_keep, patch_logits = keep[:, :, 1:, 1:], logits[:, :, 1:, 1:]
    assert (patch_keep.sum(-1) == 5).all() and index.shape == (2, 3, 16, 5)
    assert keep[:, :, 0].all() and keep[:, :, :, 0].all()  # class query and class key
    kept_min = patch_logits.masked_fill(~patch_keep, math.inf).amin(-1)
    dropped_max = patch_logits.masked_fill(patch_keep, -math.inf).amax(-1)
    assert (kept_min > dropped_max).all()


def _attention_by_hand(attn, x, topk):
    """Reference: explicit logits, keep the top-k patch keys of each patch query (by sorting),
    softmax, weighted values, output projection."""
    b, t, c = x.shape
    h = attn.num_heads
    q, k, v = (attn.qkv(x).view(b, t, 3, h, c // h).permute(2, 0, 3, 1, 4))
    logits = q @ k.transpose(-2, -1) / math.sqrt(c // h)
    patch = logits[:, :, 1:, 1:]
    threshold = patch.sort(dim=-1, descending=True).values[..., topk - 1:topk]
    masked = logits.clone()
    masked[:, :, 1:, 1:] = patch.masked_fill(patch < threshold, -math.inf)
    out = masked.softmax(-1) @ v
    return attn.proj(out.transpose(1, 2).reshape(b, t, c))


def test_homologous_attention_matches_reference_and_plain_attention():
    torch.manual_seed(0)
    ha = HomologousAttention(32, 4)
    plain = Attention(32, 4)
    plain.load_state_dict(ha.state_dict())  # same parameters, same names
    x = torch.randn(2, 17, 32)
    torch.testing.assert_close(ha(x, topk=5, num_extra_tokens=1), _attention_by_hand(ha, x, 5))
    torch.testing.assert_close(ha(x, topk=16, num_extra_tokens=1), plain(x))
    torch.testing.assert_close(ha(x), plain(x))
    assert not torch.allclose(ha(x, topk=5, num_extra_tokens=1), plain(x))


def test_homologous_attention_gradients_and_autocast():
    torch.manual_seed(0)
    ha = HomologousAttention(32, 4)
    x = torch.randn(2, 17, 32, requires_grad=True)
    ha(x, topk=3, num_extra_tokens=1).square().sum().backward()
    for grad in (x.grad, ha.qkv.weight.grad, ha.proj.weight.grad):
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    with torch.autocast('cpu', dtype=torch.bfloat16):
        low = ha(x, topk=3, num_extra_tokens=1)
    assert low.dtype == torch.bfloat16
    assert (low.float() - ha(x, topk=3, num_extra_tokens=1)).abs().mean() < 0.05


def test_homologous_precision():
    torch.manual_seed(0)
    ha = HomologousAttention(32, 4)
    x = torch.randn(2, 17, 32)
    sources = torch.randint(0, 4, (2, 16))
    precisions = []
    ha(x, topk=4, num_extra_tokens=1, source_ids=sources, precisions=precisions)
    # by hand: the kept patch-key mask against the same-source mask
    q, k, _ = ha.split_heads(x)
    keep, _ = topk_key_mask(q @ k.transpose(-2, -1) * ha.scale, 4, 1)
    keep = keep[:, :, 1:, 1:]
    same = (sources[:, None, :, None] == sources[:, None, None, :])
    (precision,) = precisions
    torch.testing.assert_close(precision, (keep & same).sum() / keep.sum())
    index = torch.arange(4).expand(1, 1, 4, 4)
    assert homologous_precision(index, torch.zeros(1, 4, dtype=torch.long)) == 1


# ---------------------------------------------------------------- mixing and unmixing
def test_mixing_invariants_and_unmixing_restores_sources():
    torch.manual_seed(0)
    m, g, n, d = 3, 4, 16, 8
    perm, slots = sample_mixing(m, n, g)
    for s in range(g):  # exactly r*N positions per source, namely its part of the permutation
        assert ((slots == s).sum(1) == n // g).all()
        assert (slots.gather(1, perm[:, s * 4:(s + 1) * 4]) == s).all()
    tokens = torch.randn(m * g, n, d)
    mixed = mix_tokens(tokens, slots)
    for i in range(m):
        for pos in range(n):  # aligned: position pos of the mix is position pos of its source
            assert torch.equal(mixed[i, pos], tokens[i * g + slots[i, pos], pos])

    x_vis, ids_restore, mask = unmix_tokens(mixed, perm, g)
    assert x_vis.shape == (m * g, n // g, d)
    restored = torch.cat([x_vis, torch.zeros(m * g, n - n // g, d)], 1)
    # the same restore as ReconstructionDecoder
    restored = restored.gather(1, ids_restore[..., None].expand(-1, -1, d))
    for b in range(m * g):
        supplied = slots[b // g] == b % g
        assert torch.equal(mask[b], (~supplied).float())
        assert torch.equal(restored[b, supplied], tokens[b, supplied])
        assert (restored[b, ~supplied] == 0).all()


def test_supervised_contrastive_loss():
    labels = torch.tensor([[0, 0, 1, 1]])
    aligned = F.normalize(torch.tensor([[[1., 0], [1, 0], [0, 1], [0, 1]]]), dim=-1)
    shuffled = aligned[:, [0, 2, 1, 3]]
    low = supervised_contrastive_loss(aligned, labels, 0.2)
    assert low < supervised_contrastive_loss(shuffled, labels, 0.2)
    # one positive at similarity 1 against two negatives at 0: -log(e^5 / (e^5 + 2))
    assert low == pytest.approx(-math.log(math.exp(5) / (math.exp(5) + 2)), rel=1e-5)


def test_batch_and_size_divisibility_errors():
    model = build_mixedae()
    with pytest.raises(ValueError, match='batch_size to a multiple of 4'):
        model.loss(torch.randn(6, 3, 64, 64))
    with pytest.raises(ValueError, match='patch count is a multiple of 4'):
        model.loss(torch.randn(4, 3, 48, 48))
    with pytest.raises(ValueError, match='mix_ratio'):
        build_mixedae(mix_ratio=0.3)


# ---------------------------------------------------------------- algorithm
def test_reconstruction_path_equals_mae_style_computation():
    """Segment embeddings, HA and HC off: the loss equals MAE on the mixed image, i.e. a plain
    ViT over the mixed pixels, then for each source the MAE decoder with its own patches
    visible, and the loss on the others (all rebuilt by hand here)."""
    torch.manual_seed(0)
    model = build_mixedae(segment_embed=None, homologous_blocks=(), hc_weight=0.)
    imgs = torch.randn(8, 3, 64, 64)
    torch.manual_seed(1)
    losses = model.loss(imgs)
    torch.manual_seed(1)
    _, slots = sample_mixing(2, 16, 4)  # the same draw as inside loss()

    patches = patchify(imgs, 16)
    mixed = torch.stack([torch.stack([patches[i * 4 + slots[i, pos], pos] for pos in range(16)])
                         for i in range(2)])
    encoded = model.backbone(unpatchify(mixed, 16, (4, 4)))[0].flatten(2).transpose(1, 2)
    preds, masks = [], []
    for b in range(8):
        own = (slots[b // 4] == b % 4).nonzero().flatten()
        others = (slots[b // 4] != b % 4).nonzero().flatten()
        ids_restore = torch.cat([own, others]).argsort()
        preds.append(model.neck(encoded[b // 4, own][None], ids_restore[None], (4, 4)))
        masks.append((slots[b // 4] != b % 4).float()[None])
    reference = reconstruction_loss(torch.cat(preds), imgs, torch.cat(masks), 16)
    torch.testing.assert_close(losses['loss_rec'], reference)
    assert losses['loss_hc'] == 0 and 'homologous_precision' not in losses


@pytest.mark.parametrize('placement', ['encoder', 'decoder'])
def test_full_loss_trains_every_part(placement):
    torch.manual_seed(0)
    model = build_mixedae(segment_embed=placement)
    losses = model.loss(torch.randn(4, 3, 64, 64))
    assert set(losses) == {'loss_rec', 'loss_hc', 'homologous_precision'}
    assert 0 <= losses['homologous_precision'] <= 1 and losses['loss_hc'] > 0
    (losses['loss_rec'] + losses['loss_hc']).backward()
    for name in ('segment_embed', 'hc_head.0.weight', 'neck.mask_token',
                 'backbone.blocks.0.attn.qkv.weight', 'backbone.cls_token'):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name


@pytest.mark.parametrize('with_cp', [True, 'elementwise'])
def test_checkpointed_encoder_gives_the_same_losses_precision_and_grads(with_cp):
    """Recomputing the homologous blocks in backward changes no loss, no gradient, and
    reports each block's precision once."""
    imgs = torch.randn(4, 3, 64, 64)
    runs = []
    for cp in (False, with_cp):
        torch.manual_seed(0)
        model = build_mixedae(homologous_blocks=(0, 1)).train()
        model.backbone.with_cp = cp
        torch.manual_seed(1)
        losses = model.loss(imgs)
        (losses['loss_rec'] + losses['loss_hc']).backward()
        grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
        runs.append((losses, grads))
    (plain, plain_grads), (lean, lean_grads) = runs
    for key in plain:
        torch.testing.assert_close(lean[key], plain[key])
    assert plain_grads.keys() == lean_grads.keys()
    for name, grad in plain_grads.items():
        torch.testing.assert_close(lean_grads[name], grad, atol=1e-6, rtol=1e-5)


def test_precisions_are_collected_per_homologous_block():
    torch.manual_seed(0)
    model = build_mixedae(homologous_blocks=(0, -1))
    tokens, grid_hw, cls_pos = model.backbone.embed_patches(torch.randn(4, 3, 64, 64))
    _, slots = sample_mixing(1, 16, 4)
    precisions = []
    model.encode(tokens[:1], grid_hw, cls_pos, slots, precisions)
    assert len(precisions) == len(model.homologous_blocks) == 2
    assert all(0 <= p <= 1 for p in precisions)
    unmixed = []
    model.encode(tokens[:1], grid_hw, cls_pos, None, unmixed)
    assert unmixed == []


def test_encoder_sees_one_sequence_per_group():
    """The cost claim: 8 images at r = 0.25 -> 2 encoder sequences of 1 + N tokens, and 8
    decoder sequences of N tokens."""
    model = build_mixedae()
    shapes = {}

    def record(name):
        def hook(module, args, out):
            shapes[name] = tuple(out.shape)
        return hook

    model.backbone.blocks[0].register_forward_hook(record('encoder'))
    model.neck.decoder_blocks[0].register_forward_hook(record('decoder'))
    model.loss(torch.randn(8, 3, 64, 64))
    assert shapes == {'encoder': (2, 17, 32), 'decoder': (8, 16, 32)}


def test_backbone_holds_exactly_the_plain_vit_parameters():
    model = build_mixedae()
    plain = PlainViT(arch=TINY, img_size=64)
    backbone_keys = {k[len('backbone.'):] for k in model.state_dict() if k.startswith('backbone.')}
    assert backbone_keys == set(plain.state_dict())
    others = {k.split('.')[0] for k in model.state_dict() if not k.startswith('backbone.')}
    assert others == {'neck', 'segment_embed', 'hc_head'}
    assert all(isinstance(blk.attn, HomologousAttention) for blk in model.backbone.blocks)


def test_runner_pretraining_then_transfer_to_plain_vit(imagenet_root, tmp_path):
    from mmengine.config import Config
    from mmengine.runner import Runner

    from mixedconv.benchmark.tiny import shrink_pretrain
    cfg = shrink_pretrain(Config.fromfile(osp.join(
        REPO, 'configs/mixedae/mixedae_vit-base-p16_8xb256-amp-coslr-1600e_in1k.py')),
        imagenet_root)
    cfg.work_dir = str(tmp_path)
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert runner.iter == 2
    hub = runner.message_hub
    for key in ('loss_rec', 'loss_hc', 'loss'):
        value = hub.get_scalar(f'train/{key}').current()
        assert math.isfinite(value) and value > 0, key
    assert 0 <= hub.get_scalar('train/homologous_precision').current() <= 1

    # the encoder checkpoint loads into PlainViT and gives the pretraining encoder's output
    arch = cfg.model.backbone.arch
    vit = PlainViT(arch=arch, img_size=64, out_indices=(arch['depth'] - 1,),
                   init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'iter_2.pth')))
    vit.init_weights()
    report = vit.load_report
    assert report.missing == [] and report.mismatched == [] and report.unexpected == []
    model = runner.model.eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        tokens, grid_hw, cls_pos = model.backbone.embed_patches(x)
        expected = model.encode(tokens, grid_hw, cls_pos)[:, 1:]
        out = vit.eval()(x)[0].flatten(2).transpose(1, 2)
    torch.testing.assert_close(out, expected)
