"""Optimizer constructors and hooks."""
from .hooks import FiniteLossHook, NonFiniteLossError, RNGStateHook
from .layer_decay import LayerDecayOptimWrapperConstructor

__all__ = ['FiniteLossHook', 'LayerDecayOptimWrapperConstructor', 'NonFiniteLossError',
           'RNGStateHook']
