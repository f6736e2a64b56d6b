"""The benchmark: task recipes, checkpoint inspection, the task runner and the tiny presets of
the embedded default benchmark."""
from .checkpoints import CheckpointInfo, describe_checkpoint
from .recipes import PRETRAIN_CONFIGS, TASK_CONFIGS, adapt_backbone, set_data_root, task_config
from .runner import Launch, build_task_config, pretrain, run_benchmark, run_task
from .tiny import shrink_pretrain, shrink_transfer

__all__ = ['CheckpointInfo', 'Launch', 'PRETRAIN_CONFIGS', 'TASK_CONFIGS', 'adapt_backbone',
           'build_task_config', 'describe_checkpoint', 'pretrain', 'run_benchmark', 'run_task',
           'set_data_root', 'shrink_pretrain', 'shrink_transfer', 'task_config']
