"""Pretrained backbone loads that say exactly what matched and refuse what does not fit."""
from mmengine.logging import print_log
from mmengine.runner.checkpoint import CheckpointLoader

from ..families import FAMILIES
from .errors import CheckpointError
from .recognise import find_encoder, unwrap_state_dict
from .report import compare_state_dict
from .safe_load import install_safe_loader


def load_pretrained(module, filename, prefix=None, min_matched=0.5, logger='current'):
    """Load the encoder of ``filename`` into the backbone ``module`` and report what matched.

    The file may be any accepted layout (:func:`~.recognise.unwrap_state_dict`,
    :func:`~.recognise.find_encoder`): ``prefix`` selects the encoder's sub-dict
    (``'backbone.'``), None finds it. The tensors are read in their source layout and
    adapted to ``module`` by that layout's function (:mod:`.sources`: renames, position
    tables resized). The module's family (``module.family``) gives the rules.

    Raises:
        CheckpointError: a tensor of the checkpoint has the module's name but another shape
            (the checkpoint was trained with other sizes); the checkpoint holds a tensor that
            changes what the backbone computes (relative position, layer scale, the /32 level:
            :attr:`~mixedconv.families.Family.must_load`) which the module could not take;
            or fewer than ``min_matched`` of the module's pretrainable tensors were found (a
            checkpoint of another architecture).
    """
    install_safe_loader()
    checkpoint = CheckpointLoader.load_checkpoint(filename, map_location='cpu')
    state_dict = unwrap_state_dict(checkpoint)
    family = FAMILIES[module.family]
    encoder = find_encoder(state_dict, family.name, prefix, filename)
    adapted = encoder.adapted(module)
    report = compare_state_dict(module, adapted, filename, encoder.source.producer)
    report.skipped = len(state_dict) - len(adapted)

    untaken = [k for k in report.unexpected if family.is_must_load(k)] + \
        [m for m in report.mismatched if family.is_must_load(m.split(' ')[0])]
    if untaken:
        raise CheckpointError(
            f'{filename}: the backbone has a place for these tensors of the checkpoint but could '
            f'not take them (name or shape): {untaken[:8]}. Check the backbone options '
            '(rel_pos_type, layer_scale_init, out_level4/level4_cfg, window_size, img_size) '
            f'against the recipe the checkpoint was trained with.\n{report.summary()}')
    if report.mismatched:
        raise CheckpointError(
            f'{filename} does not fit {type(module).__name__}: {len(report.mismatched)} of its '
            f'tensors have the backbone\'s names but other shapes ({report.mismatched[:4]}); '
            'it was trained with other sizes or options. Check the backbone type/arch and '
            f'options against the checkpoint.\n{report.summary()}')
    expected = len(module.state_dict()) - len(report.fresh)
    if len(report.matched) < min_matched * expected:
        raise CheckpointError(
            f'{filename} does not fit {type(module).__name__}: only {len(report.matched)} of '
            f'{expected} tensors matched. Is it a checkpoint of another architecture (or arch '
            f'size)? Check the backbone type/arch.\n{report.summary()}')
    module.load_state_dict({k: adapted[k] for k in report.matched}, strict=False)
    print_log(report.summary(), logger=logger)
    return report
