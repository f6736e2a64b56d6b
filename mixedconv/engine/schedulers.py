"""The learning-rate schedule of the MAE-family ImageNet code (pretraining, fine-tuning, linear
probing), as one mmengine scheduler."""
import math

from mmengine.optim import _ParamScheduler
from mmengine.optim.scheduler.lr_scheduler import LRSchedulerMixin

from ..registry import PARAM_SCHEDULERS


@PARAM_SCHEDULERS.register_module()
class WarmupCosineLR(LRSchedulerMixin, _ParamScheduler):
    """Linear warmup from 0, then a half-cycle cosine to ``eta_min``, per step, with the floor
    taken before each parameter group's layer-decay scale.

    This is ``adjust_learning_rate`` of facebookresearch/mae ``util/lr_sched.py`` (copied
    unchanged into Alpha-VL/ConvMAE), which ``main_pretrain.py``, ``main_finetune.py`` and
    ``main_linprobe.py`` call before every iteration with the fractional epoch. With
    ``t = step - begin``, ``T = end - begin`` and a group's initial lr ``lr_0``:

    * ``t < warmup``: ``lr_0 * t / warmup`` (0 at the first step);
    * otherwise, with ``c = (1 + cos(pi * (t - warmup) / (T - warmup))) / 2``:
      ``lr_0 * c + eta_min * s * (1 - c)``, where ``s`` is the group's ``lr_scale`` (the
      layer-decay scale that :class:`LayerDecayOptimWrapperConstructor` records; 1 for a group
      without one). A layer-decay group therefore decays to ``eta_min`` times its own scale, as
      the official code applies ``min_lr`` before multiplying by ``lr_scale``; mmengine's
      ``CosineAnnealingLR(eta_min=...)`` would hold every group at the same absolute floor.

    Values are computed in closed form from the initial lr, not chained on the current one, so
    this scheduler is meant to be the only lr scheduler of its steps. ``eta_min`` is an
    absolute lr: it is not rescaled by ``auto_scale_lr`` (neither is the official ``min_lr``).

    Args:
        optimizer (Optimizer | OptimWrapper): the optimizer.
        warmup (int | float): warmup length in steps (epochs when ``by_epoch``).
        eta_min (float): the floor of a group without layer-decay scale.
        begin (int): first step; ``end`` (int): the step at which the cosine reaches
            ``eta_min`` (required).
        by_epoch (bool): steps are epochs; with ``convert_to_iter_based=True`` in the config
            the schedule is applied per iteration, as the official code does.
    """

    def __init__(self, optimizer, warmup, eta_min=0., begin=0, end=None, last_step=-1,
                 by_epoch=True, verbose=False):
        if end is None:
            raise ValueError('WarmupCosineLR needs end=: the step at which the cosine reaches '
                             'eta_min (the last epoch of training)')
        if not 0 <= warmup < end - begin:
            raise ValueError(f'WarmupCosineLR: warmup={warmup} must be at least 0 and shorter '
                             f'than the schedule (end - begin = {end - begin})')
        if eta_min < 0:
            raise ValueError(f'WarmupCosineLR: eta_min={eta_min} must not be negative')
        self.warmup = warmup
        self.eta_min = eta_min
        super().__init__(optimizer, begin=begin, end=end, last_step=last_step,
                         by_epoch=by_epoch, verbose=verbose)

    @classmethod
    def build_iter_from_epoch(cls, *args, warmup, begin=0, end=None, by_epoch=True,
                              epoch_length=None, **kwargs):
        """The per-iteration scheduler of an epoch-based config (warmup, begin and end in
        epochs, ``epoch_length`` iterations each)."""
        if not by_epoch:
            raise ValueError('only an epoch-based WarmupCosineLR converts to iterations')
        if not epoch_length or epoch_length <= 0:
            raise ValueError(f'epoch_length must be a positive integer, got {epoch_length}')
        if end is None:
            raise ValueError('WarmupCosineLR needs end=: the last epoch of training')
        return cls(*args, warmup=warmup * epoch_length, begin=int(begin * epoch_length),
                   end=int(end * epoch_length), by_epoch=False, **kwargs)

    def _get_value(self):
        t = self.last_step
        if t < self.warmup:
            return [lr_0 * t / self.warmup for lr_0 in self.base_values]
        span = self.end - self.begin - self.warmup
        c = 0.5 * (1. + math.cos(math.pi * (t - self.warmup) / span))
        return [lr_0 * c + self.eta_min * group.get('lr_scale', 1.) * (1. - c)
                for lr_0, group in zip(self.base_values, self.optimizer.param_groups)]
