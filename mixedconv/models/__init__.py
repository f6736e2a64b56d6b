from . import backbones, heads, necks, selfsup  # noqa: F401
