"""Failing early when a neck or head leaves a backbone output unread.

A backbone output that nothing reads leaves the parameters only it depends on (a pyramid
branch, a /32 convolution, the blocks after the last read level) without gradient. One process
trains on regardless; PyTorch DDP stops at the second iteration with "Expected to have finished
reduction in the prior iteration". :class:`UnreadOutputCheck` raises at the first backward
instead, naming the outputs and parameters, on one process and many alike; parameters that
no output depends on at all are reported at the first training forward.
"""
from torch.autograd.graph import register_multi_grad_hook


def graph_parameters(tensor):
    """ids of the leaf tensors (parameters) ``tensor``'s autograd graph reaches."""
    found, seen = set(), set()
    stack = [tensor.grad_fn]
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        leaf = getattr(fn, 'variable', None)  # AccumulateGrad
        if leaf is not None:
            found.add(id(leaf))
        stack.extend(next_fn for next_fn, _ in fn.next_functions)
    return found


def parameter_reach(outputs, named_parameters):
    """Which trainable parameters the outputs of one forward pass depend on.

    Args:
        outputs (Sequence[Tensor]): tensors requiring grad.
        named_parameters (Iterable[tuple[str, Parameter]]): the parameters to report.

    Returns:
        tuple: the names no output reaches, and for each output the names that no other
        output reaches.
    """
    reach = [graph_parameters(out) for out in outputs]
    names = {id(p): n for n, p in named_parameters if p.requires_grad}
    reached = set().union(*reach)
    unreached = sorted(n for p, n in names.items() if p not in reached)
    exclusive = []
    for i, ids in enumerate(reach):
        others = set().union(*(r for j, r in enumerate(reach) if j != i))
        exclusive.append(sorted(names[p] for p in ids - others if p in names))
    return unreached, exclusive


def _some(names):
    return f'{len(names)} ({", ".join(names[:3])}{", ..." if len(names) > 3 else ""})'


class UnreadOutputCheck:
    """Checks, on the first training forward, that every trainable parameter feeds an output
    (else raises at once), and arms a check that raises when backward reaches the outputs
    and one with parameters of its own got no gradient (it is not read).

    Args:
        owner (nn.Module): the backbone (its parameters are reported).
        describe (callable): output position -> short text (``'level 0 (stride 4)'``).
        fix (str): how to ask for fewer outputs, appended to the errors.
    """

    def __init__(self, owner, describe, fix):
        self.owner_name = type(owner).__name__
        self.describe = describe
        self.fix = fix
        self.done = False
        self._exclusive = None

    def arm(self, owner, outputs):
        """Check ``outputs`` of a training forward and register the backward check (until
        one has run). Outputs that do not require grad (frozen, no_grad) are not checked."""
        if self.done or not owner.training:
            return
        positions = [i for i, out in enumerate(outputs) if out.requires_grad]
        if not positions:
            return
        tensors = [outputs[i] for i in positions]
        if self._exclusive is None:
            unreached, self._exclusive = parameter_reach(tensors, owner.named_parameters())
            if unreached:
                raise ValueError(
                    f'{self.owner_name} parameters that no output depends on would train '
                    'nothing and stop distributed training (DDP: "Expected to have finished '
                    f'reduction"): {_some(unreached)}. Freeze them (frozen_stages) or ask for '
                    f'an output that uses them: {self.fix}')
        if not any(self._exclusive):
            self.done = True
            return
        register_multi_grad_hook(tensors, lambda grads: self._check(positions, grads))

    def _check(self, positions, grads):
        self.done = True
        unread = [(pos, names) for pos, names, grad in zip(positions, self._exclusive, grads)
                  if grad is None and names]
        if not unread:
            return
        what = '; '.join(f'{self.describe(pos)}: {_some(names)}' for pos, names in unread)
        raise ValueError(
            f'{self.owner_name} outputs that no neck or head reads would train nothing and '
            f'stop distributed training (DDP: "Expected to have finished reduction"): {what} '
            f'parameters. Ask the backbone only for the levels that are read: {self.fix}')
