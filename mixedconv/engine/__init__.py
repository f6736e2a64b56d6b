"""Optimizers, optimizer constructors and hooks."""
from .hooks import FiniteLossHook, NonFiniteLossError, RNGStateHook
from .lars import MoCoV3LARS
from .layer_decay import LayerDecayOptimWrapperConstructor

__all__ = ['FiniteLossHook', 'LayerDecayOptimWrapperConstructor', 'MoCoV3LARS',
           'NonFiniteLossError', 'RNGStateHook']
