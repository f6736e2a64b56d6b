"""The benchmark: task recipes, checkpoint inspection and staging, the task runner and the
tiny presets of the embedded default benchmark. Its results are :mod:`mixedconv.results`
records; the leaderboard reads them."""
from .checkpoints import CheckpointInfo, describe_checkpoint
from .layout import Staged, stage_checkpoint
from .processes import Launch
from .released import evaluate_released
from .recipes import PRETRAIN_CONFIGS, TASK_CONFIGS, adapt_backbone, set_data_root, task_config
from .runner import (BenchmarkRun, build_task_config, pretrain, run_benchmark, run_chain,
                     run_task, try_checkpoints)
from .tiny import shrink_pretrain, shrink_transfer

__all__ = ['BenchmarkRun', 'CheckpointInfo', 'Launch', 'PRETRAIN_CONFIGS', 'Staged',
           'TASK_CONFIGS', 'adapt_backbone', 'build_task_config', 'describe_checkpoint',
           'evaluate_released',
           'pretrain', 'run_benchmark', 'run_chain', 'run_task', 'set_data_root',
           'shrink_pretrain', 'shrink_transfer', 'stage_checkpoint', 'task_config',
           'try_checkpoints']
