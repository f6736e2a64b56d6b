"""Training hooks that make long runs fail loudly and resume exactly.

* :class:`FiniteLossHook` stops training at the first iteration whose loss is NaN or inf,
  naming the iteration and the loss terms, before a checkpoint of the broken weights is saved.
* :class:`RNGStateHook` saves the random number generator states in every checkpoint and
  restores them on ``--resume``. mmengine saves model, optimizer, schedulers and the message
  hub but no RNG state, and ConvMAE masking, MixedAE mixing and the RPN / RoI samplers of
  Mask R-CNN all draw from the global torch generator: without this hook a resumed run draws
  other masks than the uninterrupted one and ends with other weights.
"""
import math
import random

import numpy as np
import torch
from mmengine.dist import get_rank, get_world_size
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.runner import IterBasedTrainLoop

from ..registry import HOOKS


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or inf; the message names the iteration."""


def _scalar(value):
    return float(value.detach()) if torch.is_tensor(value) else float(value)


@HOOKS.register_module()
class FiniteLossHook(Hook):
    """Raise :class:`NonFiniteLossError` as soon as the total loss is not finite.

    Runs after every training iteration, before the checkpoint hook (which has a lower
    priority), so the weights updated by the non-finite step are never saved. The check reads
    the loss values mmengine already synchronises for logging, so it costs no extra device sync.
    """

    priority = 'ABOVE_NORMAL'

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if not outputs or 'loss' not in outputs:  # mmengine logs the summed loss as 'loss'
            return
        total = _scalar(outputs['loss'])
        if math.isfinite(total):
            return
        terms = ', '.join(f'{k}={_scalar(v):.4g}' for k, v in outputs.items()
                          if 'loss' in k and k != 'loss')
        raise NonFiniteLossError(
            f'training loss is {total} at iteration {runner.iter + 1} (epoch '
            f'{runner.epoch + 1}, batch {batch_idx + 1}){": " + terms if terms else ""}. '
            'Training stopped before saving this state; resume from the last checkpoint '
            'with a lower learning rate, a longer warmup or gradient clipping '
            '(optim_wrapper.clip_grad), and check the data for corrupt images.')


def capture_rng_state():
    """The states of the torch (CPU and every CUDA device), numpy and Python generators."""
    return dict(
        torch=torch.get_rng_state(),
        cuda=torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        numpy=np.random.get_state(),
        python=random.getstate())


def restore_rng_state(state, torch_only=False):
    """Set the generators to a state from :func:`capture_rng_state`.

    Args:
        state (dict): the captured states (tensors may come back on the GPU from a resume).
        torch_only (bool): restore only the torch generators, not numpy and Python.
    """
    torch.set_rng_state(state['torch'].cpu())
    cuda = [s.cpu() for s in state.get('cuda', [])]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    if not torch_only:
        np.random.set_state(state['numpy'])
        random.setstate(state['python'])


@HOOKS.register_module()
class RNGStateHook(Hook):
    """Save RNG states in checkpoints and restore them when training resumes.

    When the restore happens matters, because mmengine's loops replay part of a run:

    * ``IterBasedTrainLoop`` re-reads the ``iter`` batches already trained on before it
      continues, which consumes the data pipeline's numpy / Python randomness exactly as the
      first run did. Only the torch generators are restored, at the first iteration after
      the resume (after that replay).
    * ``EpochBasedTrainLoop`` checkpoints at the end of an epoch and replays nothing: all
      generators are restored before the next epoch's data iterator is created.

    Starting a data iterator draws a seed from the global torch generator; the hook gives
    the train and val dataloaders a private generator, so that restarting the train data at
    an epoch end or running validation after a checkpoint does not shift the draws of the
    training steps. The seeds drawn there only seed worker processes, which mmengine reseeds
    from the run's seed anyway.

    A checkpoint loaded with ``load_from`` (not a resume) leaves the generators alone; so
    does a resume on ranks other than 0 of a distributed run, since only rank 0 writes the
    checkpoint (those ranks continue from their own reseeded streams).

    Exact resumption also needs ``randomness=dict(seed=..., deterministic=True)`` and data
    loading in the main process or in non-persistent workers.
    """

    priority = 'VERY_HIGH'

    def __init__(self):
        self._pending = None

    def before_train(self, runner):
        loaders = [runner.train_dataloader]
        if runner.val_loop is not None:
            loaders.append(runner.val_loop.dataloader)
        for loader in loaders:
            if loader.generator is None:
                loader.generator = torch.Generator().manual_seed(runner.seed)

    def before_save_checkpoint(self, runner, checkpoint):
        checkpoint['rng_state'] = capture_rng_state()

    def after_load_checkpoint(self, runner, checkpoint):
        self._pending = None
        if 'rng_state' not in checkpoint:
            return
        if get_rank() != 0:
            print_log('RNGStateHook: the checkpoint holds the RNG state of rank 0 only; '
                      f'rank {get_rank()} of {get_world_size()} continues from its own seed',
                      logger='current')
            return
        self._pending = (checkpoint['meta']['epoch'], checkpoint['meta']['iter'],
                         checkpoint['rng_state'])

    def _restore_if_resumed(self, runner, torch_only):
        epoch, iteration, state = self._pending
        self._pending = None
        if (runner.epoch, runner.iter) != (epoch, iteration):
            return  # load_from: training starts at 0, not where the checkpoint was written
        restore_rng_state(state, torch_only=torch_only)
        print_log(f'RNGStateHook: restored the RNG state of epoch {epoch}, iteration '
                  f'{iteration}', logger='current')

    def before_train_epoch(self, runner):
        if self._pending is not None and not isinstance(runner.train_loop, IterBasedTrainLoop):
            self._restore_if_resumed(runner, torch_only=False)

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if self._pending is not None and isinstance(runner.train_loop, IterBasedTrainLoop):
            self._restore_if_resumed(runner, torch_only=True)
