"""Homologous attention (MixedAE, Chen et al. CVPR 2023): multi-head self-attention whose
patch queries keep only their top-k patch keys, so that in a mixed image each patch attends
mostly to patches of its own source image.

The module has exactly the parameters of :class:`Attention` (fused ``qkv`` and ``proj``), so
weights trained with it load into a plain ViT, and with ``topk=None`` (or ``topk`` >= the number
of patch keys) it computes plain attention.
"""
import torch

from .attention import Attention, attend


def topk_key_mask(logits, topk, num_extra_tokens):
    """Which keys every query keeps under homologous attention.

    Patch queries keep the ``topk`` patch keys with the largest logits plus every extra
    (class) key; extra queries keep every key. Exactly ``topk`` patch keys are kept per
    patch query and head (selected by index, so ties cannot add keys).

    Args:
        logits (Tensor): (B, heads, T, T) attention logits, T = num_extra_tokens + Np.
        topk (int): patch keys kept per patch query, 1 <= topk <= Np.
        num_extra_tokens (int): leading tokens (class token) of the sequence.

    Returns:
        tuple:
            keep (Tensor): (B, heads, T, T) bool, True where the key is kept.
            topk_index (Tensor): (B, heads, Np, topk) long, the kept patch keys of every
                patch query, as indices among the Np patch tokens.
    """
    e = num_extra_tokens
    topk_index = logits[:, :, e:, e:].topk(topk, dim=-1, sorted=False).indices
    keep = torch.zeros_like(logits, dtype=torch.bool)
    keep[:, :, :e] = True
    keep[:, :, e:, :e] = True
    keep[:, :, e:, e:].scatter_(-1, topk_index, True)  # in place, through the view
    return keep, topk_index


def homologous_precision(topk_index, source_ids):
    """Share of kept patch keys that come from the query's own source image.

    Args:
        topk_index (Tensor): (B, heads, Np, k) kept patch keys per patch query.
        source_ids (Tensor): (B, Np) source id of every patch token.

    Returns:
        Tensor: scalar in [0, 1] (float32, no gradient).
    """
    b, heads, n, k = topk_index.shape
    key_source = source_ids[:, None, None, :].expand(b, heads, n, -1)
    key_source = key_source.gather(-1, topk_index)
    query_source = source_ids[:, None, :, None]
    return (key_source == query_source).float().mean().detach()


class HomologousAttention(Attention):
    """Top-k ("homologous") multi-head self-attention (MixedAE, Chen et al. 2023).

    Logits are computed as in :class:`Attention` (plus the relative position bias when it
    exists); for every patch query and head only the ``topk`` largest patch-key logits are
    kept and the others set to -inf before the softmax. Class-token queries attend to every
    key, and every query also keeps the class key (it comes from no source image). The
    logits, the top-k selection and the attention are computed in float32, also under
    autocast, so bf16 rounding cannot change which keys are kept.

    The selection needs no gradient: the logits are computed once without autograd to choose
    the keys, and the attention itself runs through :func:`~.attention.attend` with the
    kept-key mask (a boolean mask: the fused SDPA kernel and backward, no (T, T) softmax graph
    to store; with a relative position bias the mask is float, see :func:`attend`).

    Same constructor arguments and parameters as :class:`Attention`.
    """

    def forward(self, x, grid_hw=None, topk=None, num_extra_tokens=0, source_ids=None,
                precisions=None):
        """Attention over (B, T, C) tokens.

        Args:
            x (Tensor): (B, T, C), the first ``num_extra_tokens`` being class tokens.
            grid_hw (tuple[int, int] | None): patch grid, for the relative position bias.
            topk (int | None): patch keys kept per patch query; None, or at least the number
                of patch tokens, gives plain attention.
            num_extra_tokens (int): leading non-patch tokens.
            source_ids (Tensor | None): (B, T - num_extra_tokens) source image of each patch
                token, for the homologous precision.
            precisions (list | None): with ``source_ids``, gets this call's homologous
                precision appended (:func:`homologous_precision`, for logging).

        Returns:
            Tensor: (B, T, C).
        """
        num_patches = x.shape[1] - num_extra_tokens
        if topk is None or topk >= num_patches:
            return super().forward(x, grid_hw=grid_hw)
        if topk < 1:
            raise ValueError(f'homologous attention needs topk >= 1, got {topk}')
        q, k, v = self.split_heads(x)
        with torch.autocast(device_type=x.device.type, enabled=False):
            q32, k32, v32 = q.float(), k.float(), v.float()
            bias = None
            if self.rel_pos is not None:
                if grid_hw is None or num_extra_tokens:
                    raise ValueError('relative position terms need the token grid (grid_hw) '
                                     'and a sequence without class token')
                bias = self.position_bias(q32, grid_hw).float()
            with torch.no_grad():
                logits = (q32 * self.scale) @ k32.transpose(-2, -1)
                if bias is not None:
                    logits = logits + bias
                keep, topk_index = topk_key_mask(logits, topk, num_extra_tokens)
            mask = keep if bias is None else bias.masked_fill(~keep, float('-inf'))
            out = attend(q32, k32, v32, mask, self.scale,
                         dropout_p=self.attn_drop if self.training else 0.)
        if source_ids is not None and precisions is not None:
            precisions.append(homologous_precision(topk_index, source_ids))
        return self.merge_heads(out.to(v.dtype))
