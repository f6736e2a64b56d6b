"""The benchmark tasks and the metric columns of their results.

Each column reads one metric of one task, under the key the OpenMMLab evaluator logs it with,
and states the factor that brings it to percent: mmdet's ``CocoMetric`` reports mAP in [0, 1],
while mmseg's ``IoUMetric`` and mmpretrain's ``Accuracy`` already report percent.
"""
from dataclasses import dataclass

TASKS = ('coco-maskrcnn', 'ade20k-upernet', 'in1k-finetune', 'in1k-linear')


@dataclass(frozen=True)
class Column:
    """One metric column of the leaderboard.

    Attributes:
        key: Short machine name, used in CSV headers and published data.
        title: Human-readable header.
        task: The benchmark task (one of :data:`TASKS`) whose run produces the metric.
        metric: The metric key as the mm evaluator logs it (e.g. ``'coco/bbox_mAP'``).
        scale: Factor turning the logged value into percent.
    """
    key: str
    title: str
    task: str
    metric: str
    scale: float

    def percent(self, metrics):
        """The column's value in percent from a task's ``metrics`` dict, or None if absent
        or undefined (:data:`UNDEFINED`)."""
        value = metrics.get(self.metric)
        return None if value is None or value == UNDEFINED else float(value) * self.scale


# pycocotools reports -1 for an AP it cannot define (no ground truth to match)
UNDEFINED = -1.0


COLUMNS = (
    Column('coco_box_ap', 'COCO box AP', 'coco-maskrcnn', 'coco/bbox_mAP', 100.0),
    Column('coco_mask_ap', 'COCO mask AP', 'coco-maskrcnn', 'coco/segm_mAP', 100.0),
    Column('ade20k_miou', 'ADE20K mIoU', 'ade20k-upernet', 'mIoU', 1.0),
    Column('in1k_top1', 'IN-1K top-1', 'in1k-finetune', 'accuracy/top1', 1.0),
    Column('in1k_linear', 'IN-1K linear', 'in1k-linear', 'accuracy/top1', 1.0),
)
COLUMNS_BY_KEY = {column.key: column for column in COLUMNS}
# the range each evaluator reports a metric in: CocoMetric's mAPs in [0, 1] (or UNDEFINED),
# mmseg's IoUMetric and mmpretrain's Accuracy in percent
METRIC_RANGES = {column.metric: (0.0, 100.0 / column.scale) for column in COLUMNS}


def metric_in_range(key, value):
    """Whether ``value`` is a value the evaluator of ``key`` can report."""
    if key not in METRIC_RANGES:
        return True
    low, high = METRIC_RANGES[key]
    return low <= value <= high or (key.startswith('coco/') and value == UNDEFINED)


def tasks_for_metrics(metric_keys):
    """Tasks whose columns read any of ``metric_keys`` (in :data:`TASKS` order).

    ``accuracy/top1`` matches both ImageNet tasks; the caller disambiguates.
    """
    keys = set(metric_keys)
    return [task for task in TASKS if any(c.task == task and c.metric in keys for c in COLUMNS)]
