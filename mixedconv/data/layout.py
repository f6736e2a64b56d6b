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


def base_dataset_configs(dataset, key):
    """``(config key, dataset)`` of the datasets under wrappers (RepeatDataset,
    ClassBalancedDataset, ConcatDataset), keyed as ``--cfg-options`` addresses them."""
    if 'datasets' in dataset:
        return [found for i, child in enumerate(dataset['datasets'])
                for found in base_dataset_configs(child, f'{key}.datasets.{i}')]
    if 'dataset' in dataset:
        return base_dataset_configs(dataset['dataset'], f'{key}.dataset')
    return [(key, dataset)]


def dataset_paths(dataset):
    """``(config key, path)`` of the root and the annotation file, joined with ``data_root``
    the way mmengine's ``BaseDataset`` joins them: the paths every dataset reads as it is
    built. Its ``data_prefix`` folders are checked where they are read (by the dataset as it
    lists them, or by its pipeline: :mod:`mixedconv.data.checks`), since which of them a
    dataset reads depends on the dataset class and the pipeline."""
    root = dataset.get('data_root') or ''
    paths = [('data_root', root)] if root else []
    if dataset.get('ann_file'):
        ann_file = dataset['ann_file']
        paths.append(('ann_file', ann_file if osp.isabs(ann_file) or not root
                      else osp.join(root, ann_file)))
    return paths


def _is_local(path):
    return '://' not in path


def missing_path_error(split, kind, key, path, dataset_key):
    """The error for a dataset path that does not exist: the split, the config key, the
    path, the layout the dataset type reads and the ``--cfg-options`` that points the
    config elsewhere."""
    return FileNotFoundError(
        f'{split} dataset ({kind}): {key} {path} does not exist. Expected '
        f'layout:\n{LAYOUTS.get(kind, "see the dataset class documentation")}'
        f'\nCreate it in that layout, or point the config at the data, e.g. '
        f'--cfg-options {dataset_key}.data_root=/path/to/data/ (the '
        'benchmark: --data-root).')


def check_dataset_paths(cfg, splits=('train', 'val')):
    """Raise when the root or annotation file of the given splits' datasets (or of their
    COCO evaluators) is missing.

    Splits whose dataloader is absent, and the val split when ``val_cfg`` is None, are
    skipped, as are paths on remote storage.

    Raises:
        FileNotFoundError: naming the split, the config key, the path and the expected layout.
    """
    for split in splits:
        loader = cfg.get(f'{split}_dataloader')
        if not loader or (split != 'train' and cfg.get(f'{split}_cfg') is None):
            continue
        for dataset_key, dataset in base_dataset_configs(loader['dataset'],
                                                         f'{split}_dataloader.dataset'):
            kind = str(dataset.get('type', '')).split('.')[-1]
            for key, path in dataset_paths(dataset):
                if _is_local(path) and not osp.exists(path):
                    raise missing_path_error(split, kind, key, path, dataset_key)
        evaluators = cfg.get(f'{split}_evaluator') or []
        for evaluator in evaluators if isinstance(evaluators, list) else [evaluators]:
            path = evaluator.get('ann_file')
            if path and _is_local(path) and not osp.exists(path):
                raise FileNotFoundError(
                    f'{split}_evaluator ({evaluator.get("type")}): ann_file {path} does not '
                    f'exist; it is the annotation file of the {split} images (for COCO '
                    f'data_root/annotations/instances_{split}2017.json).')
