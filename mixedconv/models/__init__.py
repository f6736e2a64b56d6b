"""The models: backbones, necks, heads and the self-supervised algorithms; importing this
package registers them (and the safe checkpoint loader they load weights through)."""
from .. import checkpoint, fileio  # noqa: F401  (safe loading, atomic writes: first)
from . import backbones, heads, necks, selfsup  # noqa: F401
