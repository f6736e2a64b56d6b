"""Read a dataset's annotations as data and refuse what cannot give a meaningful result.

mmdet's ``CocoDataset`` silently drops boxes with a negative width and annotations whose
category is not in the file (the run trains on what is left and its metrics read 0.0 or
-1.0), and stops with ``KeyError: 'images'`` on a file without images; mmseg reads a label map
of another size, or an RGB label map, and fails deep inside an augmentation or trains on wrong
labels. :func:`check_coco_file` and :func:`check_label_maps` name the file, the problem and
the fix.
"""
import json
import math
import os.path as osp

LABEL_MODES = ('L', 'P')  # one 8-bit class index per pixel, what mmseg's LoadAnnotations reads


class DatasetError(ValueError):
    """The data a run would read cannot give a meaningful result; the message names the file
    and the fix."""


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
