"""Registered components; each module below registers on import."""
from .mae_decoder import ReconstructionDecoder, init_transformer_  # noqa: F401
from .reconstruction import patchify, reconstruction_loss, unpatchify  # noqa: F401
