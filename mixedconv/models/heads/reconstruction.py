"""Pixel targets and the normalised-pixel reconstruction loss (MAE, He et al. 2022, sec. 3)."""


def patchify(imgs, patch_size):
    """(B, C, H, W) -> (B, H/p * W/p, p*p*C), pixels of a patch in (p, q, c) order."""
    b, c, h, w = imgs.shape
    p = patch_size
    if h % p or w % p:
        raise ValueError(f'image size {h}x{w} is not a multiple of the patch size {p}')
    x = imgs.reshape(b, c, h // p, p, w // p, p)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(b, (h // p) * (w // p), p * p * c)


def unpatchify(patches, patch_size, grid_hw, in_chans=3):
    """Inverse of :func:`patchify`: (B, N, p*p*C) -> (B, C, H, W)."""
    b = patches.shape[0]
    p, (gh, gw) = patch_size, grid_hw
    x = patches.reshape(b, gh, gw, p, p, in_chans)
    return x.permute(0, 5, 1, 3, 2, 4).reshape(b, in_chans, gh * p, gw * p)


def reconstruction_loss(pred, imgs, mask, patch_size, norm_pix=True, eps=1e-6):
    """MSE between predicted and target patches, averaged over removed patches only.

    Args:
        pred (Tensor): (B, N, p*p*C) predicted pixels.
        imgs (Tensor): (B, C, H, W) target images.
        mask (Tensor): (B, N), 1 where the patch was removed (the loss counts only those).
        patch_size (int): p.
        norm_pix (bool): normalise each target patch by its own mean and unbiased std.

    Returns:
        Tensor: scalar loss.
    """
    target = patchify(imgs, patch_size)
    if norm_pix:
        mean = target.mean(dim=-1, keepdim=True)
        var = target.var(dim=-1, keepdim=True)
        target = (target - mean) / (var + eps).sqrt()
    per_patch = (pred.float() - target.float()).pow(2).mean(dim=-1)
    mask = mask.to(per_patch.dtype)
    return (per_patch * mask).sum() / mask.sum().clamp(min=1)
