"""Check what a dataset will give the run before its first iteration.

The mm libraries accept much that cannot give a meaningful result: mmdet's ``CocoDataset``
silently drops boxes with a negative width and annotations whose category is not in the
file (the run trains on what is left and its metrics read 0.0 or -1.0) and stops with
``KeyError: 'images'`` on a file without images; mmseg reads a label map of another size or
an RGB label map and fails deep inside an augmentation, or trains on wrong labels. The
checks here name the file, the problem and the fix:

* :func:`check_coco_file`: a COCO instance annotation file (the dataset's and the
  ``CocoMetric``'s), before mmdet reads it.
* :func:`check_label_maps`: every label map of an mmseg dataset (size and mode, from the
  file headers), when the dataset's pipeline reads label maps.
* :func:`probe_first_sample`: the first sample through the dataset's own pipeline, so that a
  file the run reads but cannot find is named with the config key that points at it, and
  only the paths the pipeline really reads are required.

:func:`checked_dataloader_builder` runs them where the runner builds each dataloader.
"""
import json
import math
import os
import os.path as osp
import random

import numpy as np
import torch

from .layout import LAYOUTS, base_dataset_configs, missing_path_error

LABEL_MODES = ('L', 'P')  # one 8-bit class index per pixel, what mmseg's LoadAnnotations reads


class DatasetError(ValueError):
    """The data a run would read cannot give a meaningful result; the message names the file
    and the fix."""


# ----------------------------------------------------------------------------------------
# COCO annotation files


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and \
        math.isfinite(value)


def _ids(items, path, what):
    """``{id: item}`` of a COCO list, every item a dict with a unique integer ``id``."""
    found = {}
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get('id'), int):
            raise DatasetError(f'{path}: entry {i} of "{what}" has no integer "id"')
        if item['id'] in found:
            raise DatasetError(f'{path}: {what} id {item["id"]} appears twice')
        found[item['id']] = item
    return found


def check_coco_file(path, classes=None):
    """Raise when a COCO instance annotation file cannot train or score a detector.

    Checked: ``images``, ``categories`` (and ``annotations``, when present) are lists of
    dicts with unique integer ids; every image has ``file_name``, ``width`` and ``height``;
    every annotation names an image and a category of the file, and has a ``bbox``
    ``[x, y, width, height]`` of finite numbers with no negative side and an ``area``;
    every class in ``classes`` is a category name. Panoptic files (annotations with
    ``segments_info``) are checked for their images and categories only.

    Args:
        path (str): the JSON file.
        classes (Sequence[str], optional): the class names the dataset trains and scores.

    Raises:
        DatasetError: naming the file, the first offending entry and the fix.
    """
    try:
        with open(path, 'rb') as f:
            content = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DatasetError(f'{path}: not a JSON file ({err}); a COCO annotation file is JSON '
                           'with "images", "annotations" and "categories" lists') from None
    if not isinstance(content, dict):
        raise DatasetError(f'{path}: a COCO annotation file is a JSON object with "images", '
                           f'"annotations" and "categories" lists; this one is a '
                           f'{type(content).__name__}')
    for key in ('images', 'categories'):
        if not isinstance(content.get(key), list):
            raise DatasetError(
                f'{path}: has no "{key}" list; a COCO annotation file holds "images" '
                '(id, file_name, width, height), "annotations" and "categories" (id, name). '
                'Point ann_file at the instances_*.json of the split')
    images = _ids(content['images'], path, 'images')
    for image in images.values():
        missing = [k for k in ('file_name', 'width', 'height') if k not in image]
        if missing:
            raise DatasetError(f'{path}: image id {image["id"]} has no {", ".join(missing)}')
    categories = _ids(content['categories'], path, 'categories')
    names = [str(c.get('name')) for c in categories.values()]
    for name in classes or ():
        if name not in names:
            raise DatasetError(
                f'{path}: class {name!r} of the dataset is not among its categories '
                f'({", ".join(names)}); it would be neither trained nor scored. Set the '
                "dataset's metainfo=dict(classes=...) to category names of the file")
    annotations = content.get('annotations', [])
    if not isinstance(annotations, list):
        raise DatasetError(f'{path}: "annotations" is not a list')
    if annotations and isinstance(annotations[0], dict) and 'segments_info' in annotations[0]:
        return  # panoptic: segments are read from the PNGs
    category_ids = ', '.join(str(i) for i in sorted(categories))
    _ids(annotations, path, 'annotations')
    for ann in annotations:
        where = f'{path}: annotation id {ann["id"]}'
        if ann.get('image_id') not in images:
            raise DatasetError(f'{where} has image_id {ann.get("image_id")}, which is not in '
                               'its "images"; remove the annotation or add the image')
        if ann.get('category_id') not in categories:
            raise DatasetError(
                f'{where} has category_id {ann.get("category_id")}, which is not in its '
                f'"categories" (ids {category_ids}); mmdet would drop it silently. Add the '
                'category or fix the id')
        box = ann.get('bbox')
        if not (isinstance(box, list) and len(box) == 4 and all(map(_is_number, box))):
            raise DatasetError(f'{where} has bbox {box!r}; a COCO box is [x, y, width, '
                               'height], four finite numbers')
        if box[2] < 0 or box[3] < 0:
            raise DatasetError(
                f'{where} has a negative box width or height: bbox {box} (x, y, width, '
                'height); mmdet would drop it silently. Boxes given as corners [x1, y1, x2, '
                'y2] must be converted to [x1, y1, x2 - x1, y2 - y1]')
        if not _is_number(ann.get('area')):
            raise DatasetError(f'{where} has no "area" (a finite number: the mask or box area, '
                               'which mmdet and the COCO evaluation read)')


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


def check_label_maps(dataset, split='train'):
    """Check every (image, label map) pair of an mmseg dataset from the file headers: the
    label map exists, has the image's size, and holds one 8-bit class index per pixel
    (mode L or P).

    Raises:
        FileNotFoundError: a label map is missing.
        DatasetError: a label map has another size or mode; the message names it.
    """
    from PIL import Image
    for i in range(len(dataset)):
        info = dataset.get_data_info(i)
        image, label = info.get('img_path'), info.get('seg_map_path')
        if not label or '://' in str(label) or '://' in str(image):
            continue
        if not osp.isfile(label):
            raise FileNotFoundError(f'{split} dataset: label map {label} does not exist (for '
                                    f'image {image}); every image needs its label map')
        with Image.open(label) as lab, Image.open(image) as img:
            if lab.mode not in LABEL_MODES:
                raise DatasetError(
                    f'label map {label} has mode {lab.mode}; a label map holds one class '
                    'index per pixel (a single-channel 8-bit PNG, mode L or P). Convert it '
                    'to class indices, not colours')
            if lab.size != img.size:
                raise DatasetError(
                    f'label map {label} is {lab.size[0]}x{lab.size[1]} pixels, its image '
                    f'{image} is {img.size[0]}x{img.size[1]}; a label map has the same size '
                    'as its image. Replace the label map, or the image')


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
