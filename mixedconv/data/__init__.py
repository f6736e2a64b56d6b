"""Datasets: generated sets in the real on-disk formats (tests and the embedded benchmark),
checks that a config's dataset paths exist, and an image loader that names unreadable files."""
from .layout import check_dataset_paths
from .synthetic import make_ade20k, make_coco, make_image_folder
from .transforms import CheckedLoadImageFromFile, CorruptImageError

__all__ = ['CheckedLoadImageFromFile', 'CorruptImageError', 'check_dataset_paths',
           'make_ade20k', 'make_coco', 'make_image_folder']
