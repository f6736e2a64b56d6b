"""Pixel reconstruction targets and loss of the pretraining algorithms."""
from .reconstruction import patchify, reconstruction_loss, unpatchify  # noqa: F401
