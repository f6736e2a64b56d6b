"""Which config runs each benchmark task and pretraining method, and how a backbone config
is adapted to the architecture of the checkpoint it loads."""
import os.path as osp

from ..config_files import config_path
from ..families import FAMILIES
from ..leaderboard.metrics import TASKS

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

# task -> backbone family -> config (paths in the repository; config_path() finds the file,
# also in an installed package)
TASK_CONFIGS = {
    'coco-maskrcnn': {
        'ConvViT': 'configs/convmae/mask-rcnn_convvit-base-p16_sfp_8xb2-amp-lsj-1024-25e_coco.py',
        'PlainViT': 'configs/mixedae/mask-rcnn_vit-base-p16_sfp_16xb4-amp-lsj-1024-100e_coco.py',
    },
    'ade20k-upernet': {
        'ConvViT': 'configs/convmae/upernet_convvit-base-p16_8xb2-amp-160k_ade20k-512x512.py',
        'PlainViT': 'configs/mixedae/upernet_vit-base-p16_8xb2-amp-160k_ade20k-512x512.py',
    },
    'in1k-finetune': {
        'ConvViT': 'configs/convmae/convmae_convvit-base-p16_8xb128-coslr-100e_in1k.py',
        'PlainViT': 'configs/mixedae/mixedae_vit-base-p16_8xb128-coslr-100e_in1k.py',
    },
    'in1k-linear': {
        'ConvViT': 'configs/convmae/convmae_convvit-base-p16_8xb512-linear-coslr-90e_in1k.py',
    },
}
assert set(TASK_CONFIGS) == set(TASKS)
# the other transfer recipes, which no benchmark task runs (the speed tool times them)
TRANSFER_CONFIGS = {
    'coco-maskrcnn-fpn': {
        'ConvViT': 'configs/convmae/mask-rcnn_convvit-base-p16_fpn_8xb4-amp-lsj-1024-25e_coco.py',
    },
}

# method -> pretraining config
PRETRAIN_CONFIGS = {
    'convmae': 'configs/convmae/convmae_convvit-base-p16_8xb384-amp-coslr-1600e_in1k.py',
    'mixedae': 'configs/mixedae/mixedae_vit-base-p16_8xb256-amp-coslr-1600e_in1k.py',
    'mae': 'configs/mae/mae_vit-base-p16_8xb512-amp-coslr-1600e_in1k.py',
}

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
    """Channels of a ConvViT / PlainViT config's output maps, in output order (the
    backbones' default ``out_indices``: ConvViT stage 3, PlainViT the last block)."""
    family = FAMILIES[backbone['type']]
    default = (2, ) if family.per_stage else (0, )
    return family.out_channels(backbone.get('arch', family.default_arch),
                               backbone.get('out_indices') or default)


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
