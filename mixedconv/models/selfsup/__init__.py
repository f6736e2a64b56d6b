"""Registered components; each module below registers on import."""
from .convmae import ConvMAE  # noqa: F401
from .masking import random_masking  # noqa: F401
from .mixedae import MixedAE  # noqa: F401
