"""Registered components; each module below registers on import."""
from .base import PretrainedBackbone  # noqa: F401
from .convvit import ConvViT  # noqa: F401
from .plain_vit import PlainViT  # noqa: F401
