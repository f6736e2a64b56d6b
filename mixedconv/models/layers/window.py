"""Non-overlapping window partition for windowed attention (ViTDet, Li et al. 2022)."""
import torch.nn.functional as F


def window_partition(x, window_size):
    """Split a token map into windows, zero-padding the right/bottom border.

    Args:
        x (Tensor): (B, H, W, C).
        window_size (int): window side S.

    Returns:
        tuple: windows (B * nH * nW, S*S, C) and the padded size (Hp, Wp).
    """
    b, h, w, c = x.shape
    pad_h, pad_w = (-h) % window_size, (-w) % window_size
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    hp, wp = h + pad_h, w + pad_w
    x = x.view(b, hp // window_size, window_size, wp // window_size, window_size, c)
    windows = x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window_size * window_size, c)
    return windows, (hp, wp)


def window_unpartition(windows, window_size, padded_hw, hw):
    """Inverse of :func:`window_partition`.

    Args:
        windows (Tensor): (B * nH * nW, S*S, C).
        window_size (int): window side S.
        padded_hw (tuple[int, int]): (Hp, Wp) returned by the partition.
        hw (tuple[int, int]): original (H, W).

    Returns:
        Tensor: (B, H, W, C).
    """
    hp, wp = padded_hw
    h, w = hw
    n_h, n_w = hp // window_size, wp // window_size
    b = windows.shape[0] // (n_h * n_w)
    x = windows.view(b, n_h, n_w, window_size, window_size, -1)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, -1)
    return x[:, :h, :w].contiguous()
