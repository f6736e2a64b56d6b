"""Check a config's dataset paths before a run starts, and say which layout is expected.

Without the check a missing ``data_root`` or annotation file surfaces as a bare
``FileNotFoundError`` from deep inside a dataset's ``load_data_list``; with it the error names
the split, the config key, the path and the directory layout the dataset type reads.
"""
import os.path as osp

LAYOUTS = {
    'CocoDataset': ('data_root/\n'
                    '  annotations/instances_train2017.json, instances_val2017.json\n'
                    '  train2017/<id>.jpg, val2017/<id>.jpg'),
    'ADE20KDataset': ('data_root/ (ADEChallengeData2016)\n'
                      '  images/training/*.jpg, images/validation/*.jpg\n'
                      '  annotations/training/*.png, annotations/validation/*.png'),
    'CustomDataset': ('data_root/\n'
                      '  train/<class>/<image>.jpg (an ImageNet-style folder; '
                      'ann_file, when set, lists the images)'),
    'ImageNet': ('data_root/\n'
                 '  train/<class>/<image>.JPEG, val/<image>.JPEG\n'
                 '  meta/train.txt, meta/val.txt (when ann_file is set)'),
}
SPLITS = ('train', 'val', 'test')


def _base_datasets(dataset, key):
    """``(config key, dataset)`` of the datasets under wrappers (RepeatDataset,
    ClassBalancedDataset, ConcatDataset), keyed as ``--cfg-options`` addresses them."""
    if 'datasets' in dataset:
        return [found for i, child in enumerate(dataset['datasets'])
                for found in _base_datasets(child, f'{key}.datasets.{i}')]
    if 'dataset' in dataset:
        return _base_datasets(dataset['dataset'], f'{key}.dataset')
    return [(key, dataset)]


def dataset_paths(dataset):
    """``(config key, path)`` of the root, annotation file and data prefixes a dataset reads,
    joined with ``data_root`` the way mmengine's ``BaseDataset`` joins them."""
    root = dataset.get('data_root') or ''

    def join(path):
        return path if osp.isabs(path) or not root else osp.join(root, path)

    paths = [('data_root', root)] if root else []
    if dataset.get('ann_file'):
        paths.append(('ann_file', join(dataset['ann_file'])))
    prefix = dataset.get('data_prefix') or {}
    if isinstance(prefix, str):
        prefix = dict(img_path=prefix)
    paths += [(f'data_prefix.{key}', join(value)) for key, value in prefix.items() if value]
    return paths


def _is_local(path):
    return '://' not in path


def check_dataset_paths(cfg, splits=('train', 'val')):
    """Raise when a path that the given splits' datasets (or COCO evaluators) read is missing.

    Splits whose dataloader is absent, and the val split when ``val_cfg`` is None, are
    skipped, as are paths on remote storage.

    Raises:
        FileNotFoundError: naming the split, the config key, the path and the expected layout.
    """
    for split in splits:
        loader = cfg.get(f'{split}_dataloader')
        if not loader or (split != 'train' and cfg.get(f'{split}_cfg') is None):
            continue
        for dataset_key, dataset in _base_datasets(loader['dataset'],
                                                   f'{split}_dataloader.dataset'):
            kind = str(dataset.get('type', '')).split('.')[-1]
            for key, path in dataset_paths(dataset):
                if _is_local(path) and not osp.exists(path):
                    raise FileNotFoundError(
                        f'{split} dataset ({kind}): {key} {path} does not exist. Expected '
                        f'layout:\n{LAYOUTS.get(kind, "see the dataset class documentation")}'
                        f'\nCreate it in that layout, or point the config at the data, e.g. '
                        f'--cfg-options {dataset_key}.data_root=/path/to/data/ (the '
                        'benchmark: --data-root).')
        evaluators = cfg.get(f'{split}_evaluator') or []
        for evaluator in evaluators if isinstance(evaluators, list) else [evaluators]:
            path = evaluator.get('ann_file')
            if path and _is_local(path) and not osp.exists(path):
                raise FileNotFoundError(
                    f'{split}_evaluator ({evaluator.get("type")}): ann_file {path} does not '
                    f'exist; it is the annotation file of the {split} images (for COCO '
                    f'data_root/annotations/instances_{split}2017.json).')
