"""The rows of the speed benchmark: which recipe each builds, its settings and one step."""
import contextlib
from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from ..benchmark.recipes import PRETRAIN_CONFIGS, TASK_CONFIGS, TRANSFER_CONFIGS
from ..config_files import config_path
from ..families import CONVMAE, CONVVIT, MAE, MIXEDAE, PLAINVIT
from .timing import conv_backward_flops

# the recipes the rows build, paths relative to the repository
DETECTION_CONFIGS = {
    'convvit': TASK_CONFIGS['coco-maskrcnn']['ConvViT'],
    'convvit_fpn': TRANSFER_CONFIGS['coco-maskrcnn-fpn']['ConvViT'],
    'plainvit': TASK_CONFIGS['coco-maskrcnn']['PlainViT'],
}
SEGMENTATION_CONFIGS = {
    'convvit': TASK_CONFIGS['ade20k-upernet']['ConvViT'],
    'plainvit': TASK_CONFIGS['ade20k-upernet']['PlainViT'],
}
# the Settings attribute with the image side of each kind (a 'train' row names its own)
SIDES = dict(pretrain='img_size', inference='det_size')


@dataclass(frozen=True)
class Workload:
    """One row of the benchmark.

    Attributes:
        key (str): row id (``mae``, ``convmae_skip``, ...).
        label (str): row name in the tables.
        kind (str): ``'pretrain'`` (pretraining step), ``'inference'`` (backbone forward) or
            ``'train'`` (backbone forward + backward).
        config (str): config path relative to the repository.
        overrides (tuple): ``(name, value)`` pairs set on the model config (``skip_masked``).
        side (str | None): the :class:`Settings` attribute with the image side; None: the
            kind's (``SIDES``).
    """
    key: str
    label: str
    kind: str
    config: str
    overrides: tuple = ()
    side: str = None

    def image_side(self, settings):
        """The image side this row runs at."""
        return getattr(settings, self.side or SIDES[self.kind])


def workloads(arch):
    """The rows of the benchmark, in table order, for ``arch`` in ('base', 'tiny'); the row
    labels are the families' backbone labels and the methods' names."""
    conv, plain = (f.backbone_label(f.tiny if arch == 'tiny' else 'base')
                   for f in (CONVVIT, PLAINVIT))
    return [
        Workload('mae', f'{MAE.name} {plain} (mmpretrain)', 'pretrain', PRETRAIN_CONFIGS['mae']),
        Workload('convmae_skip', f'{CONVMAE.name} {conv}, skip masked', 'pretrain',
                 PRETRAIN_CONFIGS['convmae'], (('skip_masked', True),)),
        Workload('convmae_dense', f'{CONVMAE.name} {conv}, dense', 'pretrain',
                 PRETRAIN_CONFIGS['convmae'], (('skip_masked', False),)),
        Workload('mixedae', f'{MIXEDAE.name} {plain}', 'pretrain', PRETRAIN_CONFIGS['mixedae']),
        Workload('convvit_det', f'{conv} backbone, detection', 'inference',
                 DETECTION_CONFIGS['convvit']),
        Workload('plainvit_det', f'{plain} backbone, detection', 'inference',
                 DETECTION_CONFIGS['plainvit']),
        Workload('convvit_fpn_train', f'{conv} backbone, FPN detection, train step',
                 'train', DETECTION_CONFIGS['convvit_fpn'], side='det_size'),
        Workload('convvit_sfp_train', f'{conv} backbone, SFP detection, train step',
                 'train', DETECTION_CONFIGS['convvit'], side='det_size'),
        Workload('plainvit_sfp_train', f'{plain} backbone, ViTDet, train step', 'train',
                 DETECTION_CONFIGS['plainvit'], side='det_size'),
        Workload('convvit_seg_train', f'{conv} backbone, UperNet, train step', 'train',
                 SEGMENTATION_CONFIGS['convvit'], side='seg_size'),
        Workload('plainvit_seg_train', f'{plain} backbone, UperNet, train step', 'train',
                 SEGMENTATION_CONFIGS['plainvit'], side='seg_size'),
    ]


@dataclass(frozen=True)
class Settings:
    """What every row runs on.

    Attributes:
        arch (str): 'base' (the configs' sizes) or 'tiny' (``tiny.ARCHS`` sizes).
        batch (int): pretraining batch of source images.
        img_size (int): pretraining image side (a multiple of 16).
        det_size (int): image side of the detection backbone rows (batch 1; 1024 in the
            recipes, 512 keeps a CPU run of the training steps to minutes).
        seg_size (int): image side of the segmentation backbone rows (batch 1; 512 in the
            recipes).
        device (str): 'cpu' or 'cuda'.
    """
    arch: str = 'base'
    batch: int = 8
    img_size: int = 224
    det_size: int = 1024
    seg_size: int = 512
    device: str = 'cpu'

    def __post_init__(self):
        if self.arch not in ('base', 'tiny'):
            raise ValueError(f"arch must be 'base' or 'tiny', got {self.arch!r}")
        for name in ('img_size', 'det_size', 'seg_size'):
            if getattr(self, name) % 16:
                raise ValueError(f'{name} must be a multiple of 16 (the patch size), got '
                                 f'{getattr(self, name)}')
        if self.batch % 4:
            raise ValueError(f'batch must be a multiple of 4 (MixedAE mixes groups of 4 '
                             f'images), got {self.batch}')

    def autocast(self):
        """bfloat16 autocast on CUDA, nothing on CPU."""
        if self.device == 'cuda':
            return torch.autocast('cuda', dtype=torch.bfloat16)
        return contextlib.nullcontext()


def resolve_device(device):
    """'auto' -> 'cuda' when available, else 'cpu'; raises for 'cuda' without a GPU."""
    if device == 'auto':
        return 'cuda' if torch.cuda.is_available() else 'cpu'
    if device == 'cuda' and not torch.cuda.is_available():
        raise ValueError('--device cuda, but torch sees no CUDA device; use --device cpu')
    return device


# ------------------------------------------------------------------------------- building
def model_config(workload, settings):
    """The model config of a row: the recipe's, with only the sizes changed for 'tiny'."""
    from mmengine.config import Config

    from ..benchmark.recipes import adapt_backbone
    from ..benchmark.tiny import ARCHS, shrink_pretrain, shrink_windows, sync_bn_to_bn
    cfg = Config.fromfile(config_path(workload.config))
    if workload.kind == 'pretrain':
        if settings.arch == 'tiny':
            cfg = shrink_pretrain(cfg, data_root='unused')
        model = cfg.model
        model.backbone.img_size = settings.img_size
        if model.type == 'MAE':  # mmpretrain's decoder has a fixed number of patches
            model.neck.num_patches = (settings.img_size // 16) ** 2
        model.pop('data_preprocessor', None)  # the benchmark feeds normalised tensors
        for name, value in workload.overrides:
            model[name] = value
        return model
    backbone = cfg.model.backbone
    backbone.pop('init_cfg', None)
    backbone.img_size = workload.image_side(settings)
    if settings.arch == 'tiny':
        shrink_windows(adapt_backbone(backbone, ARCHS[backbone.type]))
    if settings.device == 'cpu':
        sync_bn_to_bn(backbone)
    return backbone


def build(workload, settings):
    """A row's model on the device (eval mode for inference rows, train mode otherwise)."""
    import mmpretrain.models  # noqa: F401  (registers mmpretrain's MAE)
    from mmpretrain.registry import MODELS

    from mixedconv import register_all_modules
    register_all_modules()
    torch.manual_seed(0)
    model = MODELS.build(model_config(workload, settings)).to(settings.device)
    return model.train(workload.kind != 'inference')


def make_inputs(workload, settings):
    """Normalised random images: (batch, 3, img, img) for pretraining, else (1, 3, side, side)."""
    g = torch.Generator().manual_seed(0)
    side = workload.image_side(settings)
    shape = (settings.batch if workload.kind == 'pretrain' else 1, 3, side, side)
    return torch.randn(shape, generator=g).to(settings.device)


def backbone_loss(outputs):
    """A scalar that depends on every output element of a backbone: the sum of the means of
    its output maps (its gradient reaches every output, as a detection or segmentation loss
    does)."""
    return sum(out.float().mean() for out in outputs)


class RowStep:
    """One row, ready to run: ``step()`` = one training step or one inference forward."""

    def __init__(self, workload, settings):
        self.workload = workload
        self.settings = settings
        self.model = build(workload, settings)
        self.inputs = make_inputs(workload, settings)
        self.optimizer = None
        if workload.kind == 'pretrain':
            params = [p for p in self.model.parameters() if p.requires_grad]
            self.optimizer = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.95),
                                               weight_decay=0.05)

    @property
    def images(self):
        """Source images per step."""
        return self.inputs.shape[0]

    def forward_backward(self):
        """Forward (and backward but for inference rows); returns nothing."""
        if self.workload.kind == 'inference':
            with torch.no_grad(), self.settings.autocast():
                self.model(self.inputs)
            return
        if self.workload.kind == 'train':
            self.model.zero_grad(set_to_none=True)
            with self.settings.autocast():
                loss = backbone_loss(self.model(self.inputs))
            loss.backward()
            return
        self.optimizer.zero_grad(set_to_none=True)
        with self.settings.autocast():
            losses = self.model.loss(self.inputs, None)
        sum(v for k, v in losses.items() if 'loss' in k).backward()

    def step(self):
        """One timed unit: forward + backward (+ AdamW step for pretraining), or one inference
        forward."""
        self.forward_backward()
        if self.optimizer is not None:
            self.optimizer.step()

    def count_flops(self):
        """FLOPs of one forward + backward (one forward for inference)."""
        mapping = {torch.ops.aten.convolution_backward: conv_backward_flops}
        with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
            self.forward_backward()
        self.release_grads()
        return counter.get_total_flops()

    def release_grads(self):
        """Free the gradients, so that the memory held between steps is parameters, buffers
        and optimizer state only."""
        self.model.zero_grad(set_to_none=True)

    def grad_bytes(self):
        """Bytes of the gradients of one step (one per trainable parameter)."""
        if self.workload.kind == 'inference':
            return 0
        return sum(p.numel() * p.element_size() for p in self.model.parameters()
                   if p.requires_grad)

    def held_bytes(self):
        """Bytes held between steps: parameters, buffers and optimizer state."""
        tensors = list(self.model.parameters()) + list(self.model.buffers())
        if self.optimizer is not None:
            tensors += [t for state in self.optimizer.state.values()
                        for t in state.values() if torch.is_tensor(t)]
        return sum(t.numel() * t.element_size() for t in tensors)


