"""Published reference numbers, each with the protocol that produced it and its source.

These are other people's reported results, not measurements of this toolkit; the leaderboard
shows them only on request and marks every such row as published. Values are in percent,
keyed by :data:`~mixedconv.results.metrics.COLUMNS` keys. A value's protocol (detector or
segmentor and schedule, :mod:`mixedconv.results.protocols`) and its pretraining epochs decide
what it may be compared with; a value whose source states no protocol has ``None`` and is
shown apart, never compared. Where a paper states only gains over another method,
:class:`PublishedGain` keeps them as gains.
"""
from dataclasses import dataclass, field
from typing import Dict, Optional

from ..families import CONVMAE, CONVVIT, IBOT, MAE, MIXEDAE, PLAINVIT
from ..results import protocols as P


@dataclass(frozen=True)
class Reported:
    """One published value.

    Attributes:
        value: Percent.
        protocol: How it was obtained (a :mod:`~mixedconv.results.protocols` text); None
            when the source does not state it.
        source: The table or document it is read from.
    """
    value: float
    protocol: Optional[str]
    source: str


@dataclass(frozen=True)
class PublishedResult:
    """One published row: a method, its encoder and pretraining epochs, and values.

    Attributes:
        variant: Tells apart two rows of one method, backbone and epochs (another
            detection protocol), shown as the row's tag.
        notes: Remarks shown under the table.
    """
    method: str
    backbone: str
    pretrain_epochs: Optional[int]
    values: Dict[str, Reported] = field(default_factory=dict)
    variant: Optional[str] = None
    notes: str = ''


@dataclass(frozen=True)
class PublishedGain:
    """Gains a paper states over another method, without absolute values.

    Attributes:
        gains: Metric (a column title, or a name the source uses) -> gain in points.
        baseline: The method and backbone the gains are over.
        protocol: What the source says of the protocol of both.
    """
    method: str
    backbone: str
    baseline: str
    gains: Dict[str, float]
    protocol: str
    source: str


VIT_B = PLAINVIT.backbone_label('b')
CONVVIT_B = CONVVIT.backbone_label('b')
MAE_PAPER = 'MAE paper'
CONVMAE_README = 'Alpha-VL/ConvMAE README'

PUBLISHED = (
    PublishedResult(MAE.name, VIT_B, 1600, dict(
        coco_box_ap=Reported(51.6, P.VITDET_100EP, 'detectron2 ViTDet README'),
        coco_mask_ap=Reported(45.9, P.VITDET_100EP, 'detectron2 ViTDet README'),
        ade20k_miou=Reported(48.1, P.UPERNET_160K,
                             'mmsegmentation configs/mae README (48.13); MAE paper Table 5'),
        in1k_top1=Reported(83.6, P.FINETUNE_100EP, f'{MAE_PAPER} Table 3'),
        in1k_linear=Reported(68.0, P.LINEAR_90EP, f'{MAE_PAPER} (facebookresearch/mae '
                             'FINETUNE.md: 68.0 TF/TPU, 67.8 PyTorch)'))),
    PublishedResult(MAE.name, VIT_B, 1600, dict(
        coco_box_ap=Reported(50.3, P.MAE_PAPER_FPN_100EP, f'{MAE_PAPER} Table 4'),
        coco_mask_ap=Reported(44.9, P.MAE_PAPER_FPN_100EP, f'{MAE_PAPER} Table 4')),
        variant='MAE-paper detection'),
    PublishedResult(CONVMAE.name, CONVVIT_B, 1600, dict(
        coco_box_ap=Reported(53.9, P.CONVMAE_VITDET_25EP, 'OpenGVLab/Official-ConvMAE-Det '
                             'README'),
        coco_mask_ap=Reported(47.6, P.CONVMAE_VITDET_25EP, 'OpenGVLab/Official-ConvMAE-Det '
                              'README'),
        ade20k_miou=Reported(51.7, P.UPERNET_160K, f'{CONVMAE_README}, ADE20K table (SEG '
                             'config upernet_convmae_base_512_slide_160k_ade20k)'),
        in1k_top1=Reported(85.0, P.FINETUNE_100EP, f'{CONVMAE_README}, ImageNet-1K table'),
        in1k_linear=Reported(70.9, P.LINEAR_90EP, f'{CONVMAE_README}, ImageNet-1K table'))),
    PublishedResult(CONVMAE.name, CONVVIT_B, 1600, dict(
        coco_box_ap=Reported(53.2, P.CONVMAE_FPN_25EP, f'{CONVMAE_README}, COCO table'),
        coco_mask_ap=Reported(47.1, P.CONVMAE_FPN_25EP, f'{CONVMAE_README}, COCO table')),
        variant='DET FPN'),
    PublishedResult(CONVMAE.name, CONVVIT_B, 200, dict(
        in1k_top1=Reported(84.4, P.FINETUNE_100EP, 'Alpha-VL/FastConvMAE README'),
        coco_box_ap=Reported(50.8, None, 'Alpha-VL/FastConvMAE README'),
        coco_mask_ap=Reported(45.4, None, 'Alpha-VL/FastConvMAE README'),
        ade20k_miou=Reported(48.5, None, 'Alpha-VL/FastConvMAE README')),
        notes='COCO (25 ep) and ADE20K: the source names neither detector nor segmentor'),
    PublishedResult(MIXEDAE.name, VIT_B, None, dict(
        in1k_top1=Reported(83.9, None, 'MixedAE leaderboard entry'),
        coco_mask_ap=Reported(43.5, None, 'a results-aggregator site'),
        ade20k_miou=Reported(48.7, None, 'MixedAE leaderboard entry')),
        notes='pretraining epochs and transfer protocols not stated; ADE20K is also '
              'reported as 49.8'),
    PublishedResult(IBOT.name, VIT_B, 400, dict(
        coco_box_ap=Reported(51.2, 'Cascade Mask R-CNN, iBOT\'s schedule', 'iBOT paper'),
        coco_mask_ap=Reported(44.2, 'Cascade Mask R-CNN, iBOT\'s schedule', 'iBOT paper'),
        ade20k_miou=Reported(50.0, 'UperNet, iBOT\'s schedule', 'iBOT paper'),
        in1k_top1=Reported(83.8, 'fine-tuning, iBOT\'s schedule', 'iBOT paper'),
        in1k_linear=Reported(79.5, 'linear probing, iBOT\'s schedule', 'iBOT paper')),
        notes='400 epochs (1600 effective, counting its two global crops)'),
)

GAINS = (
    PublishedGain(MIXEDAE.name, VIT_B, f'{MAE.name} {VIT_B}',
                  {'IN-1K top-1': 0.3, 'ADE20K mIoU': 1.7, 'COCO AP (box or mask not stated)': 0.9},
                  protocol='the same protocol for both; epochs and recipes not stated there',
                  source='MixedAE paper (arXiv 2303.17152), abstract'),
)
