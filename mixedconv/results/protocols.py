"""Protocols: how a transfer number was obtained, in a few words.

Two values compare (a delta, bars side by side) only when they were obtained the same way:
the same detector or segmentor, schedule and evaluation, after the same pretraining. A shipped
recipe carries the protocol of the official run it reproduces (docs/recipes.md lists every
setting); a published row cites its own; a run at a reduced size on generated data has a
protocol of its own and compares only with its kind, and so does a released fine-tuned model
evaluated here (never compared with a model trained here).
"""
import os.path as osp

from ..families import CONVMAE, MAE, MIXEDAE

# detectron2 projects/ViTDet mask_rcnn_vitdet_b_100ep
VITDET_100EP = 'Mask R-CNN, ViTDet simple pyramid, LSJ 1024, 100 ep'
# OpenGVLab/Official-ConvMAE-Det mask_rcnn_vitdet_convmae_b_25ep
CONVMAE_VITDET_25EP = 'Mask R-CNN, ViTDet-style simple pyramid, LSJ 1024, 25 ep'
# Alpha-VL/ConvMAE DET (built on MIMDet)
CONVMAE_FPN_25EP = 'Mask R-CNN, multi-scale FPN, 25 ep'
# MAE paper, Table 4 (its own ViT-with-FPN adaptation)
MAE_PAPER_FPN_100EP = 'Mask R-CNN, ViT with FPN (MAE paper), 100 ep'
# mmsegmentation configs/mae, Alpha-VL/ConvMAE SEG upernet_convmae_base_512_slide_160k_ade20k
UPERNET_160K = 'UperNet, 512 crop, 160k iters, slide inference'
# facebookresearch/mae FINETUNE.md, Alpha-VL/ConvMAE FINETUNE.md
FINETUNE_100EP = 'fine-tuning, 224 px, 100 ep'
LINEAR_90EP = 'linear probing, 90 ep'
# a fine-tuned model as its authors released it, evaluated here without training
RELEASED = 'released weights, evaluated here'

RECIPE_PROTOCOLS = {
    CONVMAE.transfer_configs['coco-maskrcnn']: CONVMAE_VITDET_25EP,
    CONVMAE.transfer_configs['coco-maskrcnn-fpn']: CONVMAE_FPN_25EP,
    CONVMAE.transfer_configs['ade20k-upernet']: UPERNET_160K,
    CONVMAE.transfer_configs['in1k-finetune']: FINETUNE_100EP,
    CONVMAE.transfer_configs['in1k-linear']: LINEAR_90EP,
    **{method.transfer_configs[task]: protocol for method in (MIXEDAE, MAE)
       for task, protocol in (('coco-maskrcnn', VITDET_100EP),
                              ('ade20k-upernet', UPERNET_160K),
                              ('in1k-finetune', FINETUNE_100EP))},
}
_BY_NAME = {osp.basename(config): protocol for config, protocol in RECIPE_PROTOCOLS.items()}


def protocol_of_recipe(config):
    """The protocol of a shipped recipe, given its path (in the repository, installed, a
    ``mixedconv::`` name or a copy with the same file name); None for other configs."""
    return _BY_NAME.get(osp.basename(str(config)))


def reduced_protocol(image_size, iters):
    """The protocol of a recipe shrunk to ``image_size`` px images and ``iters`` training
    iterations on generated data: a check that the chain runs, comparable only with runs of
    the same reduction."""
    return f'reduced to {image_size} px generated images and {iters} training iterations'


def released_protocol(config, generated=False):
    """The protocol of a released fine-tuned model evaluated with ``config``'s test loop:
    the protocol the model was trained with (the recipe reproduces it), then
    :data:`RELEASED` and, for ``generated`` data, that the numbers are not results."""
    trained = protocol_of_recipe(config) or f'trained as {osp.basename(str(config))}'
    return f'{trained}; {RELEASED}' + (' on generated data' if generated else '')
