"""Gradient all-reduce in float16 for distributed (DDP) training, as the official detection
runs do."""
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import MMSeparateDistributedDataParallel, is_model_wrapper
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
from torch.nn.parallel import DistributedDataParallel

from ..registry import HOOKS


@HOOKS.register_module()
class Fp16CompressionHook(Hook):
    """Register torch's ``fp16_compress_hook`` on the DDP-wrapped model before training.

    The official detection runs set ``train.ddp.fp16_compression=True`` (detectron2
    ``projects/ViTDet/configs/COCO/mask_rcnn_vitdet_b_100ep.py``, Official-ConvMAE-Det
    ``mask_rcnn_vitdet_convmae_b_25ep.py``, Alpha-VL/ConvMAE ``DET/configs/convmae/
    convmae_base_mask_rcnn_FPN_100ep.py``), and detectron2's ``create_ddp_model`` then
    registers ``fp16_compress_hook``: each gradient bucket is cast to float16, divided by the
    world size, summed across processes and cast back. The recipes add this hook under the
    ``default_hooks`` key ``fp16_compression``; ``--cfg-options
    default_hooks.fp16_compression.enabled=False`` turns it off (all-reduce in float32).

    The gradients are compressed as the backward pass leaves them: under mmengine's
    ``AmpOptimWrapper`` (float16 or bfloat16 autocast) they are multiplied by the dynamic loss
    scale, as under the official runs' ``GradScaler``, and a bucket that overflows float16
    becomes inf, which the scaler detects: it skips that step and lowers the scale.

    Backends: NCCL (CUDA runs) and gloo (CPU runs, the tests) both all-reduce float16 tensors,
    so the hook behaves the same on both. A single-process run has no all-reduce: the hook
    says so and does nothing. A model wrapper other than ``DistributedDataParallel`` (FSDP,
    ``MMSeparateDistributedDataParallel``) has no DDP communication hook: the hook raises.

    Args:
        enabled (bool): register the communication hook (default) or leave DDP's float32
            all-reduce.
    """

    priority = 'VERY_HIGH'

    def __init__(self, enabled=True):
        if not isinstance(enabled, bool):
            raise TypeError(f'Fp16CompressionHook(enabled=...) takes True or False, got '
                            f'{enabled!r}')
        self.enabled = enabled

    def before_train(self, runner):
        if not self.enabled:
            print_log('Fp16CompressionHook: off, DDP gradients are all-reduced in float32',
                      logger='current')
            return
        model = runner.model
        if not is_model_wrapper(model):
            print_log('Fp16CompressionHook: not a distributed run, no gradient all-reduce to '
                      'compress', logger='current')
            return
        # MMSeparateDistributedDataParallel subclasses DDP but wraps each submodule instead
        if (not isinstance(model, DistributedDataParallel)
                or isinstance(model, MMSeparateDistributedDataParallel)):
            raise TypeError(
                f'Fp16CompressionHook needs a DistributedDataParallel model, got '
                f'{type(model).__name__}; turn it off with --cfg-options '
                'default_hooks.fp16_compression.enabled=False')
        model.register_comm_hook(state=None, hook=default_hooks.fp16_compress_hook)
        print_log('Fp16CompressionHook: DDP gradients are all-reduced in float16',
                  logger='current')
