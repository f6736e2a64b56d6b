"""The models: backbones, necks, heads and the self-supervised algorithms; importing this
package registers them, and makes mmengine load checkpoints through the weights-only loader
and write them atomically (the models load their weights through both)."""
from ..checkpoint import install_safe_loader
from ..fileio import install_atomic_writes
from . import backbones, heads, necks, selfsup  # noqa: F401

install_safe_loader()
install_atomic_writes()
