"""Random token masking on a (B, N) token sequence (MAE, He et al. 2022, sec. 3)."""
import torch


def random_masking(batch_size, num_tokens, mask_ratio, device=None, generator=None):
    """Per sample, keep a random subset of ``int(N * (1 - mask_ratio))`` tokens.

    Args:
        batch_size (int): B.
        num_tokens (int): N.
        mask_ratio (float): share of tokens removed, in [0, 1).

    Returns:
        tuple:
            ids_keep (Tensor): (B, L) long, kept token indices, in shuffled order.
            ids_restore (Tensor): (B, N) long, undoes the shuffle (see ``ReconstructionDecoder``).
            mask (Tensor): (B, N) float, 1 = removed, 0 = kept, in image order.
    """
    if not 0 <= mask_ratio < 1:
        raise ValueError(f'mask_ratio must be in [0, 1), got {mask_ratio}')
    num_keep = int(num_tokens * (1 - mask_ratio))
    if num_keep < 1:
        raise ValueError(f'mask_ratio {mask_ratio} keeps no token out of {num_tokens}')
    noise = torch.rand(batch_size, num_tokens, device=device, generator=generator)
    ids_shuffle = noise.argsort(dim=1)
    ids_restore = ids_shuffle.argsort(dim=1)
    ids_keep = ids_shuffle[:, :num_keep]
    mask = torch.ones(batch_size, num_tokens, device=device)
    mask[:, :num_keep] = 0
    return ids_keep, ids_restore, torch.gather(mask, 1, ids_restore)
