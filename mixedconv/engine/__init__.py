"""Optimizer constructors and hooks."""
from .layer_decay import LayerDecayOptimWrapperConstructor

__all__ = ["LayerDecayOptimWrapperConstructor"]
