"""Generate small datasets in the formats the real recipes read.

Images are smooth random textures (sums of a few coloured blobs) rather than white noise, so
that a few optimisation steps visibly reduce a reconstruction loss.
"""
import os
import os.path as osp

import numpy as np
from PIL import Image


def random_image(rng, height, width):
    """A uint8 (H, W, 3) image of a few soft coloured blobs on a coloured background."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.broadcast_to(rng.uniform(0, 255, 3), (height, width, 3)).copy()
    for _ in range(rng.integers(2, 5)):
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        radius = rng.uniform(0.1, 0.4) * min(height, width)
        weight = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * radius ** 2))[..., None]
        img = img * (1 - weight) + rng.uniform(0, 255, 3) * weight
    return img.clip(0, 255).astype(np.uint8)


def make_image_folder(root, num_images=16, size=(64, 64), num_classes=2, seed=0):
    """An ImageNet-style folder ``root/<class>/<i>.png`` (mmpretrain ``CustomDataset``).

    Returns:
        str: ``root``.
    """
    rng = np.random.default_rng(seed)
    for i in range(num_images):
        cls_dir = osp.join(root, f'class{i % num_classes}')
        os.makedirs(cls_dir, exist_ok=True)
        Image.fromarray(random_image(rng, *size)).save(osp.join(cls_dir, f'{i:04d}.png'))
    return root


SHAPES = ('rectangle', 'ellipse', 'triangle')


def _shape_polygon(rng, kind, height, width):
    """A random polygon (K, 2) of ``kind`` lying inside the image, in (x, y) pixels."""
    size = rng.uniform(0.2, 0.45) * min(height, width)
    cx = rng.uniform(size / 2 + 1, width - size / 2 - 1)
    cy = rng.uniform(size / 2 + 1, height - size / 2 - 1)
    if kind == 'rectangle':
        hw, hh = size / 2, rng.uniform(0.5, 1.0) * size / 2
        pts = [(-hw, -hh), (hw, -hh), (hw, hh), (-hw, hh)]
    elif kind == 'ellipse':
        t = np.linspace(0, 2 * np.pi, 16, endpoint=False)
        pts = np.stack([np.cos(t) * size / 2, np.sin(t) * size / 2.5], 1)
    else:
        pts = [(0, -size / 2), (size / 2, size / 2), (-size / 2, size / 2)]
    return np.asarray(pts, dtype=np.float64) + (cx, cy)


def _draw(img, label, polygon, colour, value):
    from PIL import ImageDraw
    pil = Image.fromarray(img)
    ImageDraw.Draw(pil).polygon([tuple(p) for p in polygon], fill=tuple(int(c) for c in colour))
    img[:] = np.asarray(pil)
    if label is not None:
        lab = Image.fromarray(label)
        ImageDraw.Draw(lab).polygon([tuple(p) for p in polygon], fill=int(value))
        label[:] = np.asarray(lab)


def make_coco(root, num_train=8, num_val=4, size=(64, 64), seed=0):
    """A COCO-format instance segmentation set of coloured shapes, one class per shape.

    Layout (as mmdet's COCO configs expect under ``data_root``)::

        root/annotations/instances_{train,val}2017.json
        root/{train,val}2017/<id>.jpg

    Every object has a polygon ``segmentation``, ``bbox`` (x, y, w, h) and ``area``.

    Returns:
        tuple[str]: the class names, in category-id order (ids 1..K).
    """
    import json
    rng = np.random.default_rng(seed)
    height, width = size
    categories = [dict(id=i + 1, name=name) for i, name in enumerate(SHAPES)]
    os.makedirs(osp.join(root, 'annotations'), exist_ok=True)
    ann_id = 1
    for split, count in (('train2017', num_train), ('val2017', num_val)):
        os.makedirs(osp.join(root, split), exist_ok=True)
        images, annotations = [], []
        for _ in range(count):
            img_id = len(images) + 1
            img = np.full((height, width, 3), rng.integers(0, 80, 3), dtype=np.uint8)
            for _ in range(rng.integers(1, 4)):
                cat = int(rng.integers(len(SHAPES)))
                poly = _shape_polygon(rng, SHAPES[cat], height, width)
                _draw(img, None, poly, rng.integers(120, 256, 3), 0)
                x0, y0 = poly.min(0)
                x1, y1 = poly.max(0)
                area = 0.5 * abs(np.dot(poly[:, 0], np.roll(poly[:, 1], 1)) -
                                 np.dot(poly[:, 1], np.roll(poly[:, 0], 1)))
                annotations.append(dict(
                    id=ann_id, image_id=img_id, category_id=cat + 1, iscrowd=0,
                    segmentation=[poly.round(2).ravel().tolist()], area=float(area),
                    bbox=[float(x0), float(y0), float(x1 - x0), float(y1 - y0)]))
                ann_id += 1
            name = f'{img_id:06d}.jpg'
            Image.fromarray(img).save(osp.join(root, split, name), quality=95)
            images.append(dict(id=img_id, file_name=name, height=height, width=width))
        with open(osp.join(root, 'annotations', f'instances_{split}.json'), 'w') as f:
            json.dump(dict(images=images, annotations=annotations, categories=categories), f)
    return SHAPES


def make_ade20k(root, num_train=8, num_val=4, size=(64, 64), num_classes=4, seed=0):
    """An ADE20K-format semantic segmentation set (``ADEChallengeData2016`` layout)::

        root/images/{training,validation}/ADE_<split>_<i>.jpg
        root/annotations/{training,validation}/ADE_<split>_<i>.png

    Label PNGs hold 0 for "other" (ignored by ``reduce_zero_label``) and 1..num_classes for
    shapes, like ADE20K's 0..150.

    Returns:
        str: ``root``.
    """
    rng = np.random.default_rng(seed)
    height, width = size
    for split, tag, count in (('training', 'train', num_train),
                              ('validation', 'val', num_val)):
        for sub in ('images', 'annotations'):
            os.makedirs(osp.join(root, sub, split), exist_ok=True)
        for i in range(count):
            img = random_image(rng, height, width)
            label = np.zeros((height, width), dtype=np.uint8)
            for _ in range(rng.integers(2, 5)):
                cls = int(rng.integers(1, num_classes + 1))
                poly = _shape_polygon(rng, SHAPES[cls % len(SHAPES)], height, width)
                _draw(img, label, poly, rng.integers(0, 256, 3), cls)
            name = f'ADE_{tag}_{i:08d}'
            Image.fromarray(img).save(osp.join(root, 'images', split, name + '.jpg'), quality=95)
            Image.fromarray(label).save(osp.join(root, 'annotations', split, name + '.png'))
    return root
