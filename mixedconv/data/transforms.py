"""Image loading that names the unreadable file, or skips it with a warning when asked to."""
import logging

from mmcv.transforms import LoadImageFromFile
from mmengine.logging import print_log

from ..registry import TRANSFORMS


class CorruptImageError(OSError):
    """An image file of the dataset could not be decoded; the message names the file."""


@TRANSFORMS.register_module()
class CheckedLoadImageFromFile(LoadImageFromFile):
    """mmcv's ``LoadImageFromFile`` with a clear error for a file that cannot be decoded.

    mmcv raises whatever its decoder raises: for an empty file OpenCV's ``!buf.empty()``
    assertion, with the pillow backend ``cannot identify image file <BytesIO ...>``, neither
    naming the file. This transform raises :class:`CorruptImageError` naming it and the fix;
    with ``skip_corrupt=True`` it logs a warning instead and returns None, and the training
    dataset then draws another image in its place (mmengine's ``BaseDataset`` refetch).

    Args:
        skip_corrupt (bool): skip unreadable images with a warning instead of stopping.
        **kwargs: the arguments of ``LoadImageFromFile`` (``ignore_empty`` excepted: it
            skips silently).
    """

    def __init__(self, skip_corrupt=False, **kwargs):
        if kwargs.get('ignore_empty'):
            raise ValueError('use skip_corrupt=True (skips with a warning) instead of '
                             'ignore_empty=True (skips silently)')
        super().__init__(**kwargs)
        self.skip_corrupt = skip_corrupt

    def transform(self, results):
        path = results['img_path']
        try:
            return super().transform(results)
        except FileNotFoundError:
            raise
        except Exception as err:  # whatever the decoder raises for bad bytes
            reason = f'{type(err).__name__}: {err}'.strip()
            if self.skip_corrupt:
                print_log(f'skipping unreadable image {path} ({reason})', logger='current',
                          level=logging.WARNING)
                return None
            raise CorruptImageError(
                f'cannot decode image {path} ({reason}). The file is corrupt, truncated or '
                'not an image: replace or delete it, or set skip_corrupt=True in '
                'CheckedLoadImageFromFile to skip such files with a warning.') from err

    def __repr__(self):
        return f'{super().__repr__()[:-1]}, skip_corrupt={self.skip_corrupt})'
