"""Published reference numbers (from the papers cited per row) for the leaderboard.

These are other people's reported results, not measurements of this toolkit; the leaderboard
shows them only on request and marks every such row as published, with its source. Values are
in percent, keyed by :data:`~mixedconv.leaderboard.metrics.COLUMNS` keys. Where the source gives
two numbers for different protocols, the first is the value and the other is in ``notes``.
"""
from dataclasses import dataclass, field
from typing import Dict, Optional


@dataclass(frozen=True)
class PublishedResult:
    """One published result row.

    Attributes:
        method: Pretraining method.
        backbone: Encoder.
        pretrain_epochs: Pretraining epochs as reported.
        values: Percent values by column key; absent keys were not reported.
        source: Where the numbers come from.
        notes: Protocol details and alternative numbers.
    """
    method: str
    backbone: str
    pretrain_epochs: Optional[int]
    values: Dict[str, float] = field(default_factory=dict)
    source: str = ''
    notes: str = ''


PUBLISHED = (
    PublishedResult(
        'MAE', 'ViT-B', 1600,
        dict(in1k_top1=83.6, in1k_linear=68.0, coco_box_ap=51.6, coco_mask_ap=45.9,
             ade20k_miou=48.1),
        source='MAE paper',
        notes='COCO: ViTDet recipe, 100 ep (MAE-paper protocol: 50.3 box / 44.9 mask)'),
    PublishedResult(
        'ConvMAE', 'ConvViT-B', 1600,
        dict(in1k_top1=85.0, in1k_linear=70.9, coco_box_ap=53.2, coco_mask_ap=47.1,
             ade20k_miou=51.7),
        source='ConvMAE README',
        notes='COCO: 25 ep, multi-scale FPN (ViTDet-style: 53.9 box / 47.6 mask)'),
    PublishedResult(
        'ConvMAE', 'ConvViT-B', 200,
        dict(in1k_top1=84.4, coco_box_ap=50.8, coco_mask_ap=45.4, ade20k_miou=48.5),
        source='FastConvMAE README'),
    PublishedResult(
        'MixedAE', 'ViT-B', 1600,
        dict(in1k_top1=83.9, coco_mask_ap=43.5, ade20k_miou=48.7),
        source='MixedAE paper leaderboard entry',
        notes='COCO mask AP: protocol not stated; ADE20K: also reported 49.8'),
    PublishedResult(
        'iBOT', 'ViT-B', 400,
        dict(in1k_top1=83.8, in1k_linear=79.5, coco_box_ap=51.2, coco_mask_ap=44.2,
             ade20k_miou=50.0),
        source='iBOT paper',
        notes='400 ep (1600 effective); COCO: Cascade Mask R-CNN'),
)
