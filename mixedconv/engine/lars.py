"""The LARS optimizer of MoCo v3, as MAE's and ConvMAE's linear probing use it."""
import torch

from ..registry import OPTIMIZERS


@OPTIMIZERS.register_module()
class MoCoV3LARS(torch.optim.Optimizer):
    """LARS (You et al. 2017) in the form of MoCo v3's ``LARS``, which ConvMAE's and MAE's
    ``main_linprobe.py`` use (``util/lars.py`` of both repositories).

    Per parameter ``p`` with gradient ``g``, at each step:

    - ``p`` of more than one dimension: ``u = g + weight_decay * p``, then ``u`` is scaled by the
      trust ratio ``trust_coefficient * ||p|| / ||u||`` (1 where either norm is 0);
    - ``p`` of at most one dimension (biases, norm weights): ``u = g``, no weight decay and no
      trust ratio;
    - ``mu = momentum * mu + u`` and ``p = p - lr * mu``.

    The learning rate multiplies the momentum buffer at every step. mmpretrain's ``LARS``
    accumulates ``lr * u`` in its buffer instead, which gives the same updates while the lr is
    constant but not during warmup or a cosine decay, and it needs ``lars_exclude`` to skip the
    1-D parameters.

    Args:
        params: parameters or parameter groups.
        lr (float): learning rate.
        weight_decay (float): L2 term added to the gradient of parameters of more than one
            dimension, before the trust ratio.
        momentum (float): momentum of the buffer ``mu``.
        trust_coefficient (float): LARS coefficient of the trust ratio.
    """

    def __init__(self, params, lr=0.0, weight_decay=0.0, momentum=0.9,
                 trust_coefficient=0.001):
        if lr < 0 or weight_decay < 0 or not 0 <= momentum < 1 or trust_coefficient <= 0:
            raise ValueError(f'invalid MoCoV3LARS settings: lr={lr}, weight_decay='
                             f'{weight_decay}, momentum={momentum}, '
                             f'trust_coefficient={trust_coefficient}')
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay, momentum=momentum,
                                      trust_coefficient=trust_coefficient))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group['params']:
                if p.grad is None:
                    continue
                update = p.grad
                if p.ndim > 1:
                    update = update.add(p, alpha=group['weight_decay'])
                    p_norm, u_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(update)
                    ratio = group['trust_coefficient'] * p_norm / u_norm
                    ratio = torch.where((p_norm > 0) & (u_norm > 0), ratio,
                                        torch.ones_like(ratio))
                    update = update.mul(ratio)
                state = self.state[p]
                if 'mu' not in state:
                    state['mu'] = torch.zeros_like(p)
                mu = state['mu']
                mu.mul_(group['momentum']).add_(update)
                p.add_(mu, alpha=-group['lr'])
        return loss
