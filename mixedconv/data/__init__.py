"""Small generated datasets in the real on-disk formats (tests and the embedded benchmark)."""
from .synthetic import make_ade20k, make_coco, make_image_folder

__all__ = ["make_ade20k", "make_coco", "make_image_folder"]
