"""Which config runs each benchmark task and pretraining method, and how a recipe is adapted
to the architecture of the checkpoint it loads and to the machine it runs on."""
import os.path as osp

from ..config_files import config_path
from ..families import FAMILIES, METHODS, PRETRAINABLE, family_recipes
from ..results.metrics import TASKS

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

# task -> backbone family -> config (paths in the repository; config_path() finds the file,
# also in an installed package): the recipes of each family, whichever method pretrained the
# checkpoint (families.family_recipes)
TASK_CONFIGS = {task: {name: family_recipes(name)[task] for name in FAMILIES
                       if task in family_recipes(name)} for task in TASKS}
# the other transfer recipes, which no benchmark task runs (the speed tool times them)
TRANSFER_CONFIGS = {}
for _method in METHODS.values():
    for _task, _config in _method.transfer_configs.items():
        if _task not in TASKS and _method.family_recipes:
            TRANSFER_CONFIGS.setdefault(_task, {})[_method.family.name] = _config

# method key ('convmae', as --pretrain takes it) -> the benchmark's pretraining config
PRETRAIN_CONFIGS = {key: method.pretrain_configs[0] for key, method in PRETRAINABLE.items()}

# dataset of each task -> folder under --data-root (the mm conventions)
DATA_DIRS = {'coco': 'coco', 'ade20k': 'ade/ADEChallengeData2016', 'imagenet': 'imagenet'}
TASK_DATA = {'coco-maskrcnn': 'coco', 'ade20k-upernet': 'ade20k', 'in1k-finetune': 'imagenet',
             'in1k-linear': 'imagenet'}


def parse_names(text, valid, what):
    """Split a comma-separated list and check every name against ``valid``."""
    names = [n.strip() for n in text.split(',') if n.strip()]
    unknown = [n for n in names if n not in valid]
    if unknown or not names:
        raise ValueError(f'unknown {what} {unknown or text!r}; valid: {", ".join(valid)}')
    return names


def task_config(task, family):
    """Absolute path of the config that runs ``task`` for a ``family`` backbone."""
    if task not in TASK_CONFIGS:
        raise ValueError(f'unknown task {task!r}; valid: {", ".join(TASK_CONFIGS)}')
    configs = TASK_CONFIGS[task]
    if family not in configs:
        raise ValueError(f'no {task} recipe for a {family} backbone; it has '
                         f'{", ".join(configs)}')
    return config_path(configs[family])


def backbone_channels(backbone):
    """Channels of a ConvViT / PlainViT config's output maps, in output order (without
    ``out_indices``, the backbone's default outputs: :meth:`~mixedconv.families.Family.
    default_out_indices`)."""
    family = FAMILIES[backbone['type']]
    arch = backbone.get('arch', family.default_arch)
    out_indices = backbone.get('out_indices') or family.default_out_indices(
        arch, backbone.get('out_type', 'featmap'))
    return family.out_channels(arch, out_indices)


def adapt_heads(cfg):
    """Set the input channels of what reads the backbone (neck, decode/auxiliary heads, the
    classifier head) to the backbone's output channels."""
    model = cfg.model
    channels = backbone_channels(model.backbone)
    neck = model.get('neck')
    if neck and 'in_channels' in neck:
        neck.in_channels = channels if isinstance(neck.in_channels, (list, tuple)) \
            else channels[-1]
    if model.get('decode_head'):
        model.decode_head.in_channels = channels
    if model.get('auxiliary_head'):
        model.auxiliary_head.in_channels = channels[model.auxiliary_head.in_index]
    if cfg.default_scope == 'mmpretrain' and model.get('head', {}).get('in_channels'):
        model.head.in_channels = channels[-1]
    return cfg


def adapt_backbone(backbone, arch):
    """Point a recipe's backbone config at another ``arch`` of the same family, moving the
    block indices the recipe chose for its own depth (outputs, global attention blocks) to the
    same relative places in the new depth."""
    family = backbone['type']
    old, new = FAMILIES[family].depth(backbone['arch']), FAMILIES[family].depth(arch)
    backbone['arch'] = arch
    if old == new:
        return backbone

    def move(index):
        return min(new - 1, max(0, round((index + 1) * new / old) - 1))

    if backbone.get('global_blocks'):
        backbone['global_blocks'] = tuple(sorted({move(i) for i in backbone['global_blocks']}))
    if family == 'PlainViT' and backbone.get('out_indices'):
        backbone['out_indices'] = tuple(sorted({move(i) for i in backbone['out_indices']}))
    return backbone


def base_dataset(loader):
    """The dataset config of a dataloader config, under any wrappers (RepeatDataset...)."""
    dataset = loader.dataset
    while 'dataset' in dataset:
        dataset = dataset.dataset
    return dataset


def set_data_root(cfg, data_root):
    """Point every dataloader (and the evaluators' annotation files) at ``data_root``."""
    for split in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        if cfg.get(split):
            dataset = base_dataset(cfg[split])
            old = dataset.get('data_root', '')
            dataset.data_root = data_root
            for evaluator in ('val_evaluator', 'test_evaluator'):
                ann_file = (cfg.get(evaluator) or {}).get('ann_file')
                if ann_file and old and ann_file.startswith(old):
                    cfg[evaluator].ann_file = osp.join(data_root, ann_file[len(old):].lstrip('/'))


def uses_amp(cfg):
    """Whether ``cfg`` trains with mixed precision (``AmpOptimWrapper``), which mmengine runs
    only on an accelerator."""
    return (cfg.get('optim_wrapper') or {}).get('type') == 'AmpOptimWrapper'


def disable_amp(cfg):
    """Train ``cfg`` in float32: ``AmpOptimWrapper`` -> ``OptimWrapper`` (its dtype and loss
    scale dropped). Returns whether it changed anything."""
    if not uses_amp(cfg):
        return False
    wrapper = cfg.optim_wrapper
    wrapper.type = 'OptimWrapper'
    for key in ('dtype', 'loss_scale'):
        wrapper.pop(key, None)
    return True
