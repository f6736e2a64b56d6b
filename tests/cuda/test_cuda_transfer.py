"""10 iterations and one evaluation of the Mask R-CNN (ConvViT) and UperNet (PlainViT)
recipes, shrunk, on the GPU with the recipes' bf16 AMP, from the checkpoints of the GPU
pretraining steps, on generated COCO / ADE20K-format data."""
import math

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

from cuda_runs import assert_bf16_amp, watch_layer_dtypes
from mixedconv.benchmark.recipes import task_config
from mixedconv.benchmark.tiny import shrink_transfer
from mixedconv.results.metrics import COLUMNS, metric_in_range

pytestmark = pytest.mark.cuda
ITERS = 10
# recipe -> (task, the pretraining method whose encoder it loads, data fixture)
TRANSFERS = {'Mask R-CNN': ('coco-maskrcnn', 'convmae', 'coco_root'),
             'UperNet': ('ade20k-upernet', 'mixedae', 'ade20k_root')}


@pytest.mark.parametrize('recipe', sorted(TRANSFERS))
def test_transfer_trains_and_evaluates_on_cuda(recipe, cuda_pretrained, request, tmp_path,
                                               record_property):
    task, method, data = TRANSFERS[recipe]
    run = cuda_pretrained(method)
    cfg = shrink_transfer(Config.fromfile(task_config(task, run.family)),
                          request.getfixturevalue(data), iters=ITERS)
    assert_bf16_amp(cfg)
    cfg.model.backbone.init_cfg.checkpoint = run.checkpoint
    cfg.work_dir = str(tmp_path)
    torch.cuda.reset_peak_memory_stats()
    runner = Runner.from_cfg(cfg)
    dtypes = watch_layer_dtypes(runner.model.backbone)
    runner.train()
    assert next(runner.model.parameters()).is_cuda
    assert runner.iter == ITERS
    report = runner.model.backbone.load_report
    assert report is not None, 'the pretrained checkpoint was not loaded'
    assert report.missing == [] and report.mismatched == [], report
    loss = runner.message_hub.get_scalar('train/loss').current()
    assert math.isfinite(loss), loss
    assert 'bfloat16' in dtypes, f'the backbone layers ran in {dtypes}'
    metrics = {}
    for column in COLUMNS:
        if column.task == task:
            value = runner.message_hub.get_scalar(f'val/{column.metric}').current()
            assert metric_in_range(column.metric, value), (column.metric, value)
            metrics[column.metric] = value
    assert metrics, f'no leaderboard metric of {task}'
    peak = torch.cuda.max_memory_allocated() / 2 ** 20
    record_property('result', f'{recipe}: {runner.iter} it, loss {loss:.3f}, ' + ', '.join(
        f'{k} {v:.3f}' for k, v in metrics.items()) + f', peak {peak:.0f} MiB')
