"""Registered components; each module below registers on import."""
from .reconstruction_decoder import ReconstructionDecoder  # noqa: F401
from .simple_feature_pyramid import SimpleFeaturePyramid  # noqa: F401
