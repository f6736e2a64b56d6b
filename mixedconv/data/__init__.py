"""Datasets: generated sets in the real on-disk formats (tests and the embedded benchmark),
checks of a config's dataset paths and of the annotations a run will read, and an image
loader that names unreadable files."""
from .annotations import DatasetError, check_coco_file, check_label_maps
from .layout import check_dataset_paths
from .synthetic import make_ade20k, make_coco, make_image_folder
from .transforms import CheckedLoadImageFromFile, CorruptImageError

__all__ = ['CheckedLoadImageFromFile', 'CorruptImageError', 'DatasetError',
           'check_coco_file', 'check_dataset_paths', 'check_label_maps', 'make_ade20k',
           'make_coco', 'make_image_folder']
