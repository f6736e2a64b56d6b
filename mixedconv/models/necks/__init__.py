"""Registered components; each module below registers on import."""
from .simple_feature_pyramid import SimpleFeaturePyramid  # noqa: F401
