"""Common loading behaviour of mixedconv backbones."""
from mmengine.model import BaseModule

from ...checkpoint import load_pretrained


class PretrainedBackbone(BaseModule):
    """A backbone whose ``init_cfg=dict(type='Pretrained', checkpoint=..., prefix=None)`` goes
    through :func:`mixedconv.checkpoint.load_pretrained` instead of mmengine's silent
    ``strict=False`` load: the result is logged, kept in ``self.load_report``, and a checkpoint
    of another architecture raises.

    Subclasses initialise their random weights in ``__init__`` and may define
    ``convert_state_dict(state_dict)`` and ``is_fresh_param(name)`` (see ``load_pretrained``).
    ``init_cfg`` may also carry ``min_matched`` (default 0.5).
    """

    load_report = None

    def init_weights(self):
        cfg = self.init_cfg
        if isinstance(cfg, dict) and cfg.get('type') == 'Pretrained':
            self.load_report = load_pretrained(self, cfg['checkpoint'], prefix=cfg.get('prefix'),
                                               min_matched=cfg.get('min_matched', 0.5))
            self._is_init = True
        else:
            super().init_weights()
