"""Optimizers, optimizer constructors, lr schedulers and hooks."""
from .grad_compression import Fp16CompressionHook
from .hooks import FiniteLossHook, NonFiniteLossError, RNGStateHook
from .lars import MoCoV3LARS
from .layer_decay import LayerDecayOptimWrapperConstructor
from .schedulers import WarmupCosineLR

__all__ = ['FiniteLossHook', 'Fp16CompressionHook', 'LayerDecayOptimWrapperConstructor',
           'MoCoV3LARS', 'NonFiniteLossError', 'RNGStateHook', 'WarmupCosineLR']
