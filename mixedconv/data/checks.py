"""Check each dataset of a run as the runner builds it, before the first iteration.

:func:`checked_dataloader_builder` wraps a runner's ``build_dataloader``; for each split it
runs, in this order:

* :func:`check_annotation_files`: the COCO files of the split (its datasets' and its
  ``CocoMetric``'s, :func:`~.annotations.check_coco_file`), before mmdet reads them.
* the dataset build itself, with a missing folder it lists named by its config key
  (:func:`explain_missing`).
* :func:`probe_first_sample`: the first sample through the dataset's own pipeline, so that a
  file the run reads but cannot find is named with the config key that points at it, and
  only the paths the pipeline really reads are required.
* :func:`~.annotations.check_label_maps`: every label map of an mmseg dataset, when its
  pipeline reads label maps.
"""
import os
import os.path as osp
import random

import numpy as np
import torch

from .annotations import DatasetError, check_coco_file, check_label_maps
from .layout import LAYOUTS, base_dataset_configs, missing_path_error


def _classes(dataset_cfg, dataset_cls):
    metainfo = dataset_cfg.get('metainfo') or {}
    classes = metainfo.get('classes') or getattr(dataset_cls, 'METAINFO', {}).get('classes')
    return [classes] if isinstance(classes, str) else list(classes or ())


_checked_coco_files = set()


def _check_coco_once(path, classes):
    """:func:`check_coco_file`, once per process for a file unchanged since its check."""
    if '://' in path or not osp.isfile(path):
        return
    stat = osp.getsize(path), int(osp.getmtime(path) * 1e9)
    key = (osp.realpath(path), stat, tuple(classes))
    if key not in _checked_coco_files:
        check_coco_file(path, classes)
        _checked_coco_files.add(key)


def _derives(cls, module, name):
    """Whether ``cls`` is or derives from the class ``name`` of package ``module``."""
    return isinstance(cls, type) and any(
        base.__name__ == name and base.__module__.split('.')[0] == module
        for base in cls.__mro__)


def _registered(registry, cfg):
    """The class a component config names, looked up as the runner builds it: in the
    registry of its ``_scope_`` or of the default scope."""
    type_name = cfg.get('type')
    if not isinstance(type_name, str):
        return type_name
    with registry.switch_scope_and_registry(cfg.get('_scope_')) as scoped:
        try:
            return scoped.get(type_name)
        except KeyError:
            return None


def check_annotation_files(cfg, split):
    """:func:`check_coco_file` for the COCO files a split reads: those of its datasets
    (mmdet ``CocoDataset`` and the classes derived from it) and of its ``CocoMetric``
    evaluators. Call it under the config's default scope (the runner sets it)."""
    from mmengine.registry import DATASETS, METRICS
    loader = cfg.get(f'{split}_dataloader')
    if not loader:
        return
    classes = []
    for _, dataset in base_dataset_configs(loader['dataset'], f'{split}_dataloader.dataset'):
        cls = _registered(DATASETS, dataset)
        if _derives(cls, 'mmdet', 'CocoDataset') and dataset.get('ann_file'):
            classes = _classes(dataset, cls)
            _check_coco_once(_join(dataset.get('data_root'), dataset['ann_file']), classes)
    if split == 'train':
        return
    evaluators = cfg.get(f'{split}_evaluator') or []
    for evaluator in evaluators if isinstance(evaluators, list) else [evaluators]:
        cls = _registered(METRICS, evaluator)
        if _derives(cls, 'mmdet', 'CocoMetric') and evaluator.get('ann_file'):
            _check_coco_once(evaluator['ann_file'], classes)


def _join(root, path):
    return path if osp.isabs(path) or not root else osp.join(root, path)


# ----------------------------------------------------------------------------------------
# the built dataset


def _base_datasets(dataset):
    """The datasets under wrappers (RepeatDataset, ClassBalancedDataset, ConcatDataset,
    MultiImageMixDataset), in the order of :func:`~.layout.base_dataset_configs`."""
    if isinstance(getattr(dataset, 'datasets', None), (list, tuple)):
        return [base for child in dataset.datasets for base in _base_datasets(child)]
    if hasattr(dataset, 'dataset'):
        return _base_datasets(dataset.dataset)
    return [dataset]


class _RandomState:
    """Restores Python's, numpy's and torch's global random generators on exit."""

    def __enter__(self):
        self.states = random.getstate(), np.random.get_state(), torch.random.get_rng_state()

    def __exit__(self, *exc):
        random.setstate(self.states[0])
        np.random.set_state(self.states[1])
        torch.random.set_rng_state(self.states[2])


def explain_missing(err, split, dataset_key, dataset_cfg, kind):
    """The error to raise for ``err``, a file a dataset could not find: naming the
    ``data_prefix`` key whose folder holds it, with the expected layout when that folder
    itself is missing. ``err`` itself when no data_prefix folder holds the file."""
    missing = err.filename or ''
    if not isinstance(missing, str) or not missing:
        return err
    prefixes = dataset_cfg.get('data_prefix') or {}
    if isinstance(prefixes, str):
        prefixes = dict(img_path=prefixes)
    root = dataset_cfg.get('data_root') or ''
    holders = []
    for key, prefix in prefixes.items():
        if isinstance(prefix, str):
            folder = osp.normpath(_join(root, prefix))
            if missing == folder or missing.startswith(folder.rstrip('/') + '/'):
                holders.append((len(folder), key, folder))
    if not holders:
        return err
    _, key, folder = max(holders)
    if not osp.exists(folder):
        return missing_path_error(split, kind, f'data_prefix.{key}', folder, dataset_key)
    ann = dataset_cfg.get('ann_file')
    named_by = f'the annotations ({_join(root, ann)}) name it' if ann else \
        'the dataset pairs it with a file it listed'
    return FileNotFoundError(
        f'{split} dataset ({kind}): {missing} does not exist; {named_by} under '
        f'data_prefix.{key} {folder}. Restore the file, or remove it from the dataset.\n'
        f'Expected layout:\n{LAYOUTS.get(kind, "see the dataset class documentation")}')


def _reads_field(dataset, info, field):
    """Whether the dataset's pipeline opens ``info[field]``: the pipeline is run with that
    path replaced by one that does not exist."""
    absent = osp.join(osp.dirname(str(info[field])), '.mixedconv-absent-probe')
    with _RandomState():
        try:
            dataset.pipeline(dict(info, **{field: absent}))
        except FileNotFoundError as err:
            return err.filename == absent or absent in str(err)
    return False


def probe_first_sample(dataset, split, dataset_cfg, dataset_key='dataset'):
    """Load the first sample of ``dataset`` (a built mmengine ``BaseDataset``) through its own
    pipeline, leaving the global random generators as they were.

    Returns:
        dict: the first sample's data info (its paths, as the dataset built them).

    Raises:
        DatasetError: the dataset holds no sample.
        FileNotFoundError: a file the pipeline reads is missing, named with its config key
            (:func:`explain_missing`).
    """
    kind = type(dataset).__name__
    if not dataset._fully_initialized:
        dataset.full_init()
    if len(dataset) == 0:
        raise DatasetError(
            f'{split} dataset ({kind}) holds no sample (after its filter_cfg); check '
            f'{dataset_key}.data_root, ann_file and data_prefix')
    with _RandomState():
        try:
            dataset.prepare_data(0)
        except FileNotFoundError as err:
            raise explain_missing(err, split, dataset_key, dataset_cfg, kind) from None
    return dataset.get_data_info(0)


def checked_dataloader_builder(build, cfg):
    """Wrap a runner's ``build_dataloader`` so that each split's data is checked as it is
    built, before the first iteration: the COCO files before mmdet reads them, then a
    missing folder named with its config key, the label maps and the first sample.

    Args:
        build: the runner's ``build_dataloader``.
        cfg (Config): the config the runner was built from (its ``*_dataloader`` entries
            tell which split a dataloader config is).
    """

    def split_of(dataloader):
        for split in ('train', 'val', 'test'):
            if cfg.get(f'{split}_dataloader') is dataloader:
                return split
        for split in ('train', 'val', 'test'):
            if cfg.get(f'{split}_dataloader') == dataloader:
                return split
        return None

    def build_dataloader(dataloader, *args, **kwargs):
        split = split_of(dataloader) if isinstance(dataloader, dict) else None
        if split is None:
            return build(dataloader, *args, **kwargs)
        # the whole-file checks once per machine (torchrun stops every process when one
        # fails); every process loads its first sample
        whole = int(os.environ.get('LOCAL_RANK', 0) or 0) == 0
        if whole:
            check_annotation_files(cfg, split)
        configs = base_dataset_configs(dataloader['dataset'], f'{split}_dataloader.dataset')
        try:
            loader = build(dataloader, *args, **kwargs)
        except FileNotFoundError as err:
            for key, dataset_cfg in configs:
                kind = str(dataset_cfg.get('type', '')).split('.')[-1]
                explained = explain_missing(err, split, key, dataset_cfg, kind)
                if explained is not err:
                    raise explained from None
            raise
        for (key, dataset_cfg), dataset in zip(configs, _base_datasets(loader.dataset)):
            info = probe_first_sample(dataset, split, dataset_cfg, key)
            if whole and _derives(type(dataset), 'mmseg', 'BaseSegDataset') and \
                    info.get('seg_map_path') and _reads_field(dataset, info, 'seg_map_path'):
                check_label_maps(dataset, split)
        return loader

    return build_dataloader
