import pytest
import torch

from mixedconv import register_all_modules
from mixedconv.data import make_image_folder

register_all_modules()  # components and the safe checkpoint loader, for every test

torch.set_num_threads(2)


@pytest.fixture(scope='session')
def image_folder(tmp_path_factory):
    """16 generated 64x64 PNGs in 2 class folders (mmpretrain CustomDataset layout)."""
    return make_image_folder(str(tmp_path_factory.mktemp('images')), num_images=16)


@pytest.fixture(scope='session')
def imagenet_root(tmp_path_factory):
    """A data root in the pretraining recipes' layout: ``<root>/train/<class>/*.png``."""
    root = tmp_path_factory.mktemp('imagenet')
    make_image_folder(str(root / 'train'), num_images=16)
    return str(root)


@pytest.fixture(autouse=True)
def _fresh_mm_state():
    """Each test starts without the logger, message hub or default scope of another runner."""
    yield
    from mmengine.logging import MessageHub, MMLogger
    from mmengine.registry import DefaultScope
    for managed in (MMLogger, MessageHub, DefaultScope):
        managed._instance_dict.clear()
