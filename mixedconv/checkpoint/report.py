"""What a load or a conversion did, as records and readable text (one formatter for both)."""
from collections import Counter
from dataclasses import dataclass, field


def show(names, limit=8):
    """``names`` joined by commas, at most ``limit`` of them (0: all) and a count of the rest."""
    names = list(names)
    if not limit or len(names) <= limit:
        return ', '.join(names)
    return ', '.join(names[:limit]) + f', ... (+{len(names) - limit})'


@dataclass
class LoadReport:
    """What a pretrained load did.

    ``fresh`` are parameters the model adds at transfer (relative position tables, layer
    scale, ...) and that no pretraining checkpoint has; ``skipped`` counts the checkpoint's
    tensors outside the backbone (decoders, heads, necks, other prefixes) and derived index
    buffers; ``source`` names the file and ``layout`` the source layout it was read as.
    """
    source: str
    layout: str = ''
    matched: list = field(default_factory=list)
    missing: list = field(default_factory=list)
    fresh: list = field(default_factory=list)
    unexpected: list = field(default_factory=list)
    mismatched: list = field(default_factory=list)
    skipped: int = 0

    def summary(self, limit=8):
        read_as = f' (read as {self.layout})' if self.layout else ''
        lines = [f'loaded {self.source}{read_as}: {len(self.matched)} matched, '
                 f'{len(self.missing)} missing, {len(self.unexpected)} unexpected, '
                 f'{len(self.mismatched)} shape mismatches, {len(self.fresh)} new at transfer, '
                 f'{self.skipped} outside the backbone or derived (decoders, heads, necks, '
                 'index buffers) skipped']
        for name in ('missing', 'unexpected', 'mismatched', 'fresh'):
            if getattr(self, name):
                lines.append(f'  {name}: {show(getattr(self, name), limit)}')
        return '\n'.join(lines)


def compare_state_dict(module, state_dict, source, layout=''):
    """A :class:`LoadReport` of ``state_dict`` (already adapted) against ``module``;
    ``skipped`` is left at 0. Parameters the module's family marks transfer-only
    (:meth:`~mixedconv.models.backbones.base.PretrainedBackbone.is_fresh_param`) count as
    ``fresh`` when absent."""
    is_fresh = getattr(module, 'is_fresh_param', lambda name: False)
    report = LoadReport(source=str(source), layout=layout)
    own = module.state_dict()
    for name, tensor in own.items():
        if name in state_dict and state_dict[name].shape == tensor.shape:
            report.matched.append(name)
        elif name in state_dict:
            report.mismatched.append(f'{name} {tuple(state_dict[name].shape)} vs '
                                     f'{tuple(tensor.shape)}')
        elif is_fresh(name):
            report.fresh.append(name)
        else:
            report.missing.append(name)
    report.unexpected = [k for k in state_dict if k not in own]
    return report


def group_of(name):
    """The first name component with the block index: ``blocks3.0.attn.qkv.weight`` ->
    ``blocks3``; ``backbone.fpn_lateral2.weight`` -> ``backbone.fpn_lateral2``."""
    parts = name.split('.')
    if parts[0] == 'backbone' and len(parts) > 2:
        return '.'.join(parts[:2])
    return parts[0]


def status_table(rows, columns):
    """A text table: one line per group, one column per status, and a total line.

    Args:
        rows (list[tuple[str, str]]): (group, status) pairs, one per tensor.
        columns (tuple[str]): the statuses, in column order.
    """
    counts = Counter(rows)
    groups = list(dict.fromkeys(group for group, _ in rows))
    width = max([len(g) for g in groups] + [5])
    lines = ['  ' + 'group'.ljust(width) + ''.join(f'{c:>11}' for c in columns)]
    for group in groups:
        lines.append('  ' + group.ljust(width) + ''.join(f'{counts[group, c]:>11}'
                                                         for c in columns))
    lines.append('  ' + 'total'.ljust(width) + ''.join(
        f'{sum(counts[g, c] for g in groups):>11}' for c in columns))
    return '\n'.join(lines)
