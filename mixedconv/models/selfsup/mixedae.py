"""MixedAE (Chen et al., "Mixed Autoencoder for Self-supervised Visual Representation
Learning", CVPR 2023) as an mmpretrain self-supervised algorithm.

The design follows the paper (Chen et al. 2023, sec. 3); every choice below is a constructor
argument:

1. Mixing: each group of ``1/r`` consecutive images of the per-device batch becomes one
   mixed image. A random permutation of the N patch positions per group is cut into ``1/r``
   equal parts; source ``s`` supplies its own patches at the positions of part ``s`` (positions
   stay aligned). The encoder thus sees ``B * r`` sequences, about the cost of MAE.
2. Segment embeddings: one learned vector per slot of the group, added to the encoder input
   (default) or to the encoder output before the decoder, or not at all.
3. Homologous attention: top-k attention (k = r * N) in the chosen encoder blocks.
4. Unmixing: one decoder sequence per source image (its encoder outputs where it supplied
   patches, the mask token elsewhere); normalised-pixel MSE over the positions it did not supply.
5. Homologous contrastive loss: supervised contrastive loss over the patch features of each
   mixed image (positives: the other patches of the same source).
6. ``self.backbone`` is a :class:`PlainViT` with timm names holding only the encoder, so its
   weights load into the downstream PlainViT; segment embeddings, decoder and projection head
   live outside it.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model.weight_init import trunc_normal_
from mmpretrain.models.selfsup import BaseSelfSupervisor

from ...registry import MODELS
from ..heads import reconstruction_loss
from ..layers import HomologousAttention, init_transformer_

SEGMENT_EMBED_PLACEMENTS = ('encoder', 'decoder', None)


def sample_mixing(num_mixed, num_patches, group_size, device=None):
    """Random assignment of patch positions to the sources of every mixed image.

    Args:
        num_mixed (int): M, mixed images (groups).
        num_patches (int): N, a multiple of ``group_size``.
        group_size (int): G = 1 / r, sources per mixed image.

    Returns:
        tuple:
            perm (Tensor): (M, N) long, a permutation of the positions per group; source ``s``
                supplies positions ``perm[:, s*N/G:(s+1)*N/G]``.
            slots (Tensor): (M, N) long, the source slot (0..G-1) of every position.
    """
    part = num_patches // group_size
    perm = torch.rand(num_mixed, num_patches, device=device).argsort(dim=1)
    slot_of_rank = (torch.arange(num_patches, device=device) // part).expand(num_mixed, -1)
    slots = torch.empty_like(perm).scatter_(1, perm, slot_of_rank)
    return perm, slots


def mix_tokens(tokens, slots):
    """Build the mixed sequences: position n of mixed image m takes source ``slots[m, n]``.

    Args:
        tokens (Tensor): (M * G, N, D) tokens of the sources, G consecutive per group.
        slots (Tensor): (M, N) long.

    Returns:
        Tensor: (M, N, D).
    """
    m, n = slots.shape
    d = tokens.shape[-1]
    grouped = tokens.view(m, -1, n, d)
    return grouped.gather(1, slots[:, None, :, None].expand(-1, 1, -1, d)).squeeze(1)


def unmix_tokens(mixed, perm, group_size):
    """Split encoder outputs back into one MAE-style visible set per source image.

    Args:
        mixed (Tensor): (M, N, D) encoder outputs of the mixed patch tokens.
        perm (Tensor): (M, N) the permutation returned by :func:`sample_mixing`.
        group_size (int): G.

    Returns:
        tuple (per source image b = m * G + s):
            x_vis (Tensor): (M * G, N / G, D) outputs at the positions source b supplied.
            ids_restore (Tensor): (M * G, N) for :class:`ReconstructionDecoder` (visible first).
            mask (Tensor): (M * G, N) float, 1 where source b did not supply the patch.
    """
    m, n, d = mixed.shape
    part = n // group_size
    x_vis = mixed.gather(1, perm[..., None].expand(-1, -1, d)).reshape(m * group_size, part, d)
    # source s lists its own part first: the permutation rotated by s parts
    offsets = torch.arange(group_size, device=perm.device)[:, None] * part
    rotation = (torch.arange(n, device=perm.device)[None] + offsets) % n
    ids_shuffle = perm[:, rotation].reshape(m * group_size, n)
    ids_restore = ids_shuffle.argsort(dim=1)
    rank = torch.arange(n, device=perm.device).expand(m * group_size, -1)
    mask = (rank >= part).float().gather(1, ids_restore)
    return x_vis, ids_restore, mask


def supervised_contrastive_loss(features, labels, temperature):
    """Supervised contrastive loss (Khosla et al. 2020, "L_out") within each sequence.

    Every token is an anchor; its positives are the other tokens with the same label, and the
    denominator runs over every other token of the same sequence.

    Args:
        features (Tensor): (M, N, E) L2-normalised features.
        labels (Tensor): (M, N) long.
        temperature (float): tau.

    Returns:
        Tensor: scalar, mean over anchors with at least one positive.
    """
    n = features.shape[1]
    self_pair = torch.eye(n, dtype=torch.bool, device=features.device)
    logits = (features @ features.transpose(1, 2) / temperature).masked_fill(self_pair, -torch.inf)
    log_prob = logits - logits.logsumexp(dim=-1, keepdim=True)
    positive = (labels[:, :, None] == labels[:, None, :]) & ~self_pair
    num_pos = positive.sum(dim=-1)
    per_anchor = -log_prob.masked_fill(~positive, 0.).sum(dim=-1) / num_pos.clamp(min=1)
    has_pos = (num_pos > 0).float()
    return (per_anchor * has_pos).sum() / has_pos.sum().clamp(min=1)


@MODELS.register_module()
class MixedAE(BaseSelfSupervisor):
    """Mixed autoencoder pretraining (see the module docstring for the design).

    Args:
        backbone (dict): a :class:`PlainViT` config (class token and final norm on); its
            ``attn_layer`` is set to ``'HomologousAttention'`` (same parameters).
        neck (dict): the :class:`ReconstructionDecoder` config (``in_dim`` = encoder width).
        mix_ratio (float): r; groups of ``1/r`` images form one mixed image (default 0.25).
        segment_embed (str | None): 'encoder' (add to the mixed encoder input), 'decoder'
            (add to each source's encoder outputs before the decoder) or None.
        homologous_blocks (Sequence[int] | None): encoder blocks using top-k attention;
            None means all, ``()`` none.
        hc_weight (float): weight of the homologous contrastive loss (0 disables it and its
            projection head).
        hc_temperature (float): temperature of that loss.
        hc_hidden_dim (int): hidden width of the 2-layer projection head.
        hc_out_dim (int): output width of the projection head.
        norm_pix (bool): per-patch normalised pixel targets.
        data_preprocessor (dict | None): defaults to ``SelfSupDataPreprocessor``.
        init_cfg (dict | None): mmengine init config.
    """

    def __init__(self, backbone, neck, mix_ratio=0.25, segment_embed='encoder',
                 homologous_blocks=None, hc_weight=0.1, hc_temperature=0.2, hc_hidden_dim=2048,
                 hc_out_dim=256, norm_pix=True, data_preprocessor=None, init_cfg=None):
        if isinstance(backbone, dict):
            backbone = dict(backbone, attn_layer='HomologousAttention')
        super().__init__(backbone=backbone, neck=neck, data_preprocessor=data_preprocessor,
                         init_cfg=init_cfg)
        self.group_size = round(1 / mix_ratio)
        if not 0 < mix_ratio <= 0.5 or abs(self.group_size * mix_ratio - 1) > 1e-6:
            raise ValueError(f'mix_ratio must be 1/G for an integer G >= 2 (0.5, 0.25, ...), '
                             f'got {mix_ratio}')
        self.mix_ratio = mix_ratio
        if segment_embed not in SEGMENT_EMBED_PLACEMENTS:
            raise ValueError(f'segment_embed must be one of {SEGMENT_EMBED_PLACEMENTS}, got '
                             f'{segment_embed!r}')
        if not (self.backbone.with_cls_token and self.backbone.final_norm):
            raise ValueError('MixedAE needs a PlainViT backbone with a class token and '
                             'final_norm=True (no window attention / relative position bias)')
        backbone_patch = self.backbone.patch_embed.proj
        pixels_per_patch = backbone_patch.kernel_size[0] ** 2 * backbone_patch.in_channels
        if self.neck.decoder_pred.out_features != pixels_per_patch:
            raise ValueError('the decoder predicts {} values per patch but backbone patches have '
                             '{}; give the neck the same patch_size and in_chans'.format(
                                 self.neck.decoder_pred.out_features, pixels_per_patch))
        depth = self.backbone.depth
        blocks = range(depth) if homologous_blocks is None else homologous_blocks
        if any(not -depth <= i < depth for i in blocks):
            raise ValueError(f'homologous_blocks {tuple(blocks)} out of range for depth {depth}')
        self.homologous_blocks = tuple(sorted({i % depth for i in blocks}))
        if not all(isinstance(self.backbone.blocks[i].attn, HomologousAttention)
                   for i in self.homologous_blocks):
            raise ValueError("homologous blocks need attn_layer='HomologousAttention' in the "
                             'backbone (set automatically when the backbone is a config dict)')

        dim = self.backbone.embed_dim
        self.segment_embed_placement = segment_embed
        self.segment_embed = None
        if segment_embed is not None:
            self.segment_embed = nn.Parameter(torch.zeros(self.group_size, dim))
            trunc_normal_(self.segment_embed, std=.02)
        self.hc_weight = hc_weight
        self.hc_temperature = hc_temperature
        self.hc_head = None
        if hc_weight > 0:
            self.hc_head = nn.Sequential(nn.Linear(dim, hc_hidden_dim), nn.GELU(),
                                         nn.Linear(hc_hidden_dim, hc_out_dim))
            init_transformer_(self.hc_head)
        self.norm_pix = norm_pix

    def check_batch(self, batch_size, num_patches):
        """Raise a clear error when a batch cannot be split into mixing groups."""
        g = self.group_size
        if batch_size % g:
            raise ValueError(
                f'MixedAE mixes groups of {g} images (mix_ratio={self.mix_ratio}), but the '
                f'per-device batch has {batch_size} images; set train_dataloader.batch_size '
                f'to a multiple of {g}')
        if num_patches % g:
            raise ValueError(
                f'MixedAE splits the {num_patches} patches of an image into {g} equal parts; '
                f'choose an image size whose patch count is a multiple of {g}')

    def encode(self, tokens, grid_hw, cls_pos, slots=None, precisions=None):
        """Run the encoder on patch tokens.

        Args:
            tokens (Tensor): (M, N, D) patch tokens with position embedding (mixed or not).
            grid_hw (tuple[int, int]): patch grid.
            cls_pos (Tensor): (1, 1, D) position embedding of the class token.
            slots (Tensor | None): (M, N) source slot of each token of mixed images; None
                for unmixed images (no segment embedding, plain attention everywhere).
            precisions (list | None): with ``slots``, gets the homologous precision (scalar
                tensor) of every homologous block appended, in block order (checkpointed
                blocks append again when backward recomputes them, so read it before).

        Returns:
            Tensor: (M, 1 + N, D) after the final norm.
        """
        backbone = self.backbone
        block_kwargs = {}
        if slots is not None:
            if self.segment_embed_placement == 'encoder':
                tokens = tokens + self.segment_embed[slots]
            homologous = dict(topk=tokens.shape[1] // self.group_size, num_extra_tokens=1,
                              source_ids=slots, precisions=precisions)
            block_kwargs = {i: homologous for i in self.homologous_blocks}
        x = backbone.prepend_cls_token(tokens, cls_pos)
        for _, x in backbone.iter_blocks(x, grid_hw, block_kwargs):
            pass
        return backbone.norm(x)

    def homologous_contrastive_loss(self, patches, slots):
        """Weighted supervised contrastive loss over (M, N, D) patch features."""
        z = self.hc_head(patches)
        with torch.autocast(device_type=z.device.type, enabled=False):
            z = F.normalize(z.float(), dim=-1)
            return self.hc_weight * supervised_contrastive_loss(z, slots, self.hc_temperature)

    def loss(self, inputs, data_samples=None, **kwargs):
        """Mix, encode, unmix, reconstruct.

        Args:
            inputs (Tensor | list[Tensor]): (B, C, H, W) images (a one-element list is
                accepted), B a multiple of 1 / mix_ratio.

        Returns:
            dict[str, Tensor]: ``loss_rec``, ``loss_hc`` (already weighted) and, when some
            block uses homologous attention, ``homologous_precision``.
        """
        imgs = inputs[0] if isinstance(inputs, (list, tuple)) else inputs
        tokens, grid_hw, cls_pos = self.backbone.embed_patches(imgs)
        b, n, _ = tokens.shape
        self.check_batch(b, n)
        perm, slots = sample_mixing(b // self.group_size, n, self.group_size, tokens.device)
        precisions = []
        latent = self.encode(mix_tokens(tokens, slots), grid_hw, cls_pos, slots, precisions)
        patches = latent[:, 1:]

        x_vis, ids_restore, mask = unmix_tokens(patches, perm, self.group_size)
        if self.segment_embed_placement == 'decoder':
            x_vis = x_vis + self.segment_embed.repeat(b // self.group_size, 1)[:, None]
        pred = self.neck(x_vis, ids_restore, grid_hw)
        losses = dict(loss_rec=reconstruction_loss(pred, imgs, mask, self.backbone.patch_size,
                                                   norm_pix=self.norm_pix))
        losses['loss_hc'] = (self.homologous_contrastive_loss(patches, slots)
                             if self.hc_head is not None else patches.new_zeros(()))
        if self.homologous_blocks:
            losses['homologous_precision'] = torch.stack(precisions).mean()
        return losses
