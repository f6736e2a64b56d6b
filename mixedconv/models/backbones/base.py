"""What every mixedconv backbone declares for checkpoint loading."""
from mmengine.model import BaseModule

from ...checkpoint import load_pretrained
from ...families import FAMILIES


class PretrainedBackbone(BaseModule):
    """A backbone whose ``init_cfg=dict(type='Pretrained', checkpoint=..., prefix=None)`` goes
    through :func:`mixedconv.checkpoint.load_pretrained` instead of mmengine's silent
    ``strict=False`` load: the result is logged, kept in ``self.load_report``, and a checkpoint
    that does not fit raises. ``init_cfg`` may also carry ``min_matched`` (default 0.5).

    What the loader asks a backbone (subclasses set the first and keep the others current):

    Attributes:
        family (str): its family in :data:`mixedconv.families.FAMILIES` (arch table, the
            source layouts its checkpoints come in, the transfer-only rule).
        pos_grid (tuple[int, int]): the token grid ``pos_embed`` is stored for.
        num_extra_tokens (int): class-token rows of ``pos_embed`` (0 or 1).
    """

    family = None
    pos_grid = None
    num_extra_tokens = 0
    load_report = None

    def is_fresh_param(self, name):
        """Whether parameter ``name`` exists only at transfer, so that no pretraining
        checkpoint has it (the family's :attr:`~mixedconv.families.Family.transfer_only`)."""
        return FAMILIES[self.family].is_transfer_only(name)

    def init_weights(self):
        cfg = self.init_cfg
        if isinstance(cfg, dict) and cfg.get('type') == 'Pretrained':
            self.load_report = load_pretrained(self, cfg['checkpoint'], prefix=cfg.get('prefix'),
                                               min_matched=cfg.get('min_matched', 0.5))
            self._is_init = True
        else:
            super().init_weights()
