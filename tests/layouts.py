"""Checkpoint files in the layouts people hand us, built with random weights and tiny models.

Each builder writes one file under a directory and returns a :class:`Layout`: the path, the
backbone that loads it completely, and the counts a ``Pretrained`` load must report. The
layouts follow the files their producers write:

* official MAE / ConvMAE ``util/misc.py save_model``: ``{'model', 'optimizer', 'epoch',
  'scaler', 'args'}`` with ``args`` an ``argparse.Namespace``; ConvMAE's pretraining model
  (``models_convmae.py``: encoder, ``stage1/2_output_decode``, ``decoder_*``, ``mask_token``),
  its fine-tuned model (``models_convvit.py``: ``fc_norm`` instead of ``norm``, ``head``), MAE's
  (``models_mae.py``, ``models_vit.py``);
* MAE's released ``mae_pretrain_vit_base.pth``: ``{'model': encoder}`` under timm names;
* detectron2 ``model_final.pth``: ``{'model', 'trainer', 'iteration'}``, the backbone under
  ``backbone.bottom_up.`` (ConvMAE DET) or ``backbone.net.`` (ViTDet);
* mmcv 1.x (mmseg 0.x): ``{'state_dict', 'meta', 'optimizer'}``, ``meta`` with
  ``mmcv_version``, the config text, ``CLASSES`` and ``PALETTE``;
* a bare timm state dict;
* real mmengine Runner checkpoints (:func:`mmengine_runs`): our ConvMAE pretraining and
  mmpretrain's MAE, as the checkpoint hook writes them, with an empty ``HistoryBuffer`` in
  the message hub, and without optimizer and schedulers;
* any of them in the legacy (non-zip) torch format (``writer=save_legacy``) or pickled as
  numpy 1 does (``writer=save_as_numpy1``; :func:`rewritten` for files already written).

Usage::

    layout = LAYOUTS['convmae_pretrain_official'](tmp_path)
    model = build_backbone(layout, init_cfg=dict(type='Pretrained', checkpoint=layout.path))
    model.init_weights()
    assert len(model.load_report.matched) == layout.matched
"""
import argparse
import glob
import os.path as osp
import pickle
import re
import types
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field, replace

import torch

from mixedconv.checkpoint import find_encoder
from mixedconv.models.backbones import ConvViT, PlainViT

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TINY_CONV = dict(embed_dims=(16, 24, 32), depths=(1, 1, 4), num_heads=2, mlp_ratios=(2, 2, 2))
TINY_VIT = dict(embed_dim=32, depth=4, num_heads=2)
CLASSES = {'ConvViT': ConvViT, 'PlainViT': PlainViT}


@dataclass
class Layout:
    """One written checkpoint and what loading it must report.

    Attributes:
        name: the builder's name.
        path: the file.
        family: ``'ConvViT'`` or ``'PlainViT'``.
        backbone: keyword arguments of the backbone that takes every encoder tensor.
        weights: the encoder tensors written, under our names (after the backbone's
            conversion), to compare loaded values with.
        matched: tensors a ``Pretrained`` load into ``backbone`` matches (all of its own).
        skipped: tensors of the file outside the backbone (decoders, heads, necks) plus
            derived index buffers.
        derived: of those, index buffers inside the encoder (what a load of the exported
            encoder still skips).
        missing, unexpected, fresh: the other counts of the load report (0 for every
            layout here).
        transfer: encoder tensors that a backbone of default options has no place for
            (relative position tables); :func:`mixedconv.checkpoint.convert_checkpoint` keeps
            them.
    """
    name: str
    path: str
    family: str
    backbone: dict
    weights: dict
    matched: int
    skipped: int
    derived: int = 0
    missing: int = 0
    unexpected: int = 0
    fresh: int = 0
    transfer: int = 0
    extra: dict = field(default_factory=dict)


def build_backbone(layout, **kwargs):
    """The backbone of ``layout`` (``kwargs`` added, e.g. ``init_cfg``)."""
    return CLASSES[layout.family](**layout.backbone, **kwargs)


def randomized(cls, seed=0, **kwargs):
    """``cls(**kwargs)`` with every parameter drawn uniformly from [-0.1, 0.1)."""
    model = cls(**kwargs)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.rand(param.shape, generator=gen) * 0.2 - 0.1)
    return model.eval()


def save(obj, path, legacy=False):
    """``torch.save`` in the zip format, or the legacy one."""
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
    return str(path)


def save_as_arrays(obj, path):
    """``torch.save`` of ``obj`` with the tensors of its state dict as numpy arrays, as
    detectron2's model zoo stores weights."""
    def arrays(state):
        return {k: v.numpy() if isinstance(v, torch.Tensor) else v for k, v in state.items()}
    key = next((k for k in ('model', 'state_dict') if isinstance(obj.get(k), dict)), None)
    obj = {**obj, key: arrays(obj[key])} if key else arrays(obj)
    return save(obj, path)


def save_legacy(obj, path):
    """``torch.save(obj, path, _use_new_zipfile_serialization=False)``."""
    return save(obj, path, legacy=True)


def _rand(*shape, seed=0):
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


def _vit_block(prefix, dim, hidden):
    """Random tensors of one timm-named transformer block (MAE's decoder blocks)."""
    shapes = {'norm1.weight': (dim,), 'norm1.bias': (dim,), 'attn.qkv.weight': (3 * dim, dim),
              'attn.qkv.bias': (3 * dim,), 'attn.proj.weight': (dim, dim),
              'attn.proj.bias': (dim,), 'norm2.weight': (dim,), 'norm2.bias': (dim,),
              'mlp.fc1.weight': (hidden, dim), 'mlp.fc1.bias': (hidden,),
              'mlp.fc2.weight': (dim, hidden), 'mlp.fc2.bias': (dim,)}
    return {prefix + k: _rand(*s, seed=i) for i, (k, s) in enumerate(shapes.items())}


def mae_decoder(width, tokens, patch_pixels, dec_dim=16, depth=2, convmae_dims=None):
    """The pretraining decoder of models_mae.py (and of models_convmae.py with its
    ``stage1/2_output_decode`` fusion convolutions when ``convmae_dims`` are given)."""
    sd = {'decoder_embed.weight': _rand(dec_dim, width), 'decoder_embed.bias': _rand(dec_dim),
          'mask_token': _rand(1, 1, dec_dim), 'decoder_pos_embed': _rand(1, tokens, dec_dim),
          'decoder_norm.weight': _rand(dec_dim), 'decoder_norm.bias': _rand(dec_dim),
          'decoder_pred.weight': _rand(patch_pixels, dec_dim),
          'decoder_pred.bias': _rand(patch_pixels)}
    for i in range(depth):
        sd.update(_vit_block(f'decoder_blocks.{i}.', dec_dim, 4 * dec_dim))
    if convmae_dims:
        d1, d2, d3 = convmae_dims
        sd.update({'stage1_output_decode.weight': _rand(d3, d1, 4, 4),
                   'stage1_output_decode.bias': _rand(d3),
                   'stage2_output_decode.weight': _rand(d3, d2, 2, 2),
                   'stage2_output_decode.bias': _rand(d3)})
    return sd


def adamw_state(tensors):
    """A real AdamW state dict after one step over ``tensors`` (copies)."""
    params = [torch.nn.Parameter(t.detach().clone().float()) for t in tensors]
    opt = torch.optim.AdamW(params, lr=1e-3)
    for p in params:
        p.grad = torch.ones_like(p)
    opt.step()
    return opt.state_dict()


def official_args(model_name, **extra):
    """The ``args`` namespace of the official main_pretrain.py / main_finetune.py runs:
    their argparse options plus what init_distributed_mode adds."""
    args = argparse.Namespace(
        batch_size=64, epochs=1600, accum_iter=1, model=model_name, input_size=224,
        mask_ratio=0.75, norm_pix_loss=True, weight_decay=0.05, lr=None, blr=1.5e-4,
        min_lr=0., warmup_epochs=40, data_path='/datasets01/imagenet_full_size/061417/',
        output_dir='./output_dir', log_dir='./output_dir', device='cuda', seed=0, resume='',
        start_epoch=0, num_workers=10, pin_mem=True, world_size=8, local_rank=-1,
        dist_on_itp=False, dist_url='env://', rank=0, gpu=0, distributed=True,
        dist_backend='nccl')
    vars(args).update(extra)
    return args


def save_model_layout(model_sd, args, epoch=1599):
    """What util/misc.py save_model writes (the loss-scaler branch)."""
    scaler = torch.amp.GradScaler('cpu')
    return {'model': model_sd, 'optimizer': adamw_state(list(model_sd.values())[:4]),
            'epoch': epoch, 'scaler': scaler.state_dict(), 'args': args}


# ----------------------------------------------------------------------------------------
# official MAE / ConvMAE files


def convmae_pretrain_official(directory, writer=save):
    """ConvMAE main_pretrain.py checkpoint: encoder + fusion convs + decoder, save_model."""
    encoder = randomized(ConvViT, arch=TINY_CONV, img_size=64).state_dict()
    decoder = mae_decoder(32, 16, 16 * 16 * 3, convmae_dims=TINY_CONV['embed_dims'])
    ckpt = save_model_layout(OrderedDict({**encoder, **decoder}),
                             official_args('convmae_convvit_base_patch16'))
    path = writer(ckpt, osp.join(directory, 'convmae_checkpoint-1599.pth'))
    return Layout('convmae_pretrain_official', path, 'ConvViT',
                  dict(arch=TINY_CONV, img_size=64), dict(encoder), matched=len(encoder),
                  skipped=len(decoder))


def convmae_finetune_official(directory, writer=save):
    """ConvMAE main_finetune.py checkpoint (models_convvit.py, global_pool): fc_norm, head."""
    kwargs = dict(arch=TINY_CONV, img_size=64, out_type='avg_featmap')
    encoder = randomized(ConvViT, **kwargs).state_dict()
    head = {'head.weight': _rand(10, 32), 'head.bias': _rand(10)}
    ckpt = save_model_layout(OrderedDict({**encoder, **head}),
                             official_args('convvit_base_patch16', epochs=100, smoothing=0.1,
                                           mixup=0.8, cutmix=1.0, nb_classes=10))
    path = writer(ckpt, osp.join(directory, 'convmae_finetuned.pth'))
    return Layout('convmae_finetune_official', path, 'ConvViT', kwargs, dict(encoder),
                  matched=len(encoder), skipped=len(head))


def mae_pretrain_release(directory, writer=save):
    """MAE's mae_pretrain_vit_base.pth: ``{'model': encoder}`` under timm names."""
    encoder = randomized(PlainViT, arch=TINY_VIT, img_size=64).state_dict()
    path = writer({'model': encoder}, osp.join(directory, 'mae_pretrain_vit_base.pth'))
    return Layout('mae_pretrain_release', path, 'PlainViT', dict(arch=TINY_VIT, img_size=64),
                  dict(encoder), matched=len(encoder), skipped=0)


def mae_pretrain_official(directory, writer=save):
    """MAE main_pretrain.py checkpoint: encoder + decoder (class row in its position table)."""
    encoder = randomized(PlainViT, arch=TINY_VIT, img_size=64).state_dict()
    decoder = mae_decoder(32, 17, 16 * 16 * 3)
    ckpt = save_model_layout(OrderedDict({**encoder, **decoder}),
                             official_args('mae_vit_base_patch16'))
    path = writer(ckpt, osp.join(directory, 'mae_checkpoint-1599.pth'))
    return Layout('mae_pretrain_official', path, 'PlainViT', dict(arch=TINY_VIT, img_size=64),
                  dict(encoder), matched=len(encoder), skipped=len(decoder))


def _mae_finetuned(directory, writer, name, filename, save_model):
    kwargs = dict(arch=TINY_VIT, img_size=64, out_type='avg_featmap', final_norm=False)
    encoder = randomized(PlainViT, **kwargs).state_dict()
    head = {'head.weight': _rand(10, 32), 'head.bias': _rand(10)}
    model = OrderedDict({**encoder, **head})
    ckpt = save_model_layout(model, official_args(
        'vit_base_patch16', epochs=100, nb_classes=10, global_pool=True, drop_path=0.1)) \
        if save_model else {'model': model}
    path = writer(ckpt, osp.join(directory, filename))
    return Layout(name, path, 'PlainViT', kwargs, dict(encoder), matched=len(encoder),
                  skipped=len(head))


def mae_finetune_official(directory, writer=save):
    """MAE main_finetune.py checkpoint (models_vit.py, global_pool): fc_norm, no norm, head,
    in save_model's layout."""
    return _mae_finetuned(directory, writer, 'mae_finetune_official', 'mae_checkpoint-99.pth',
                          save_model=True)


def mae_finetune_release(directory, writer=save):
    """The released fine-tuned MAE files (mae_finetuned_vit_base.pth):
    ``{'model': encoder + fc_norm + head}``."""
    return _mae_finetuned(directory, writer, 'mae_finetune_release',
                          'mae_finetuned_vit_base.pth', save_model=False)


def timm_bare(directory, writer=save):
    """``torch.save(timm_vit.state_dict())``: timm names, a classifier head, no wrapper."""
    encoder = randomized(PlainViT, arch=TINY_VIT, img_size=64).state_dict()
    head = OrderedDict({'head.weight': _rand(10, 32), 'head.bias': _rand(10)})
    path = writer(OrderedDict({**encoder, **head}), osp.join(directory, 'vit_tiny_timm.pth'))
    return Layout('timm_bare', path, 'PlainViT', dict(arch=TINY_VIT, img_size=64),
                  dict(encoder), matched=len(encoder), skipped=len(head))


# ----------------------------------------------------------------------------------------
# transfer checkpoints: detectron2 and mmseg 0.x


def _seg_names(key):
    """Our ConvViT names -> the ConvMAE SEG backbone's (SEG/backbone/convmae.py)."""
    key = re.sub(r'\.attn\.rel_pos\.relative_position_bias_table$',
                 '.attn.relative_position_bias_table', key)
    key = re.sub(r'\.ls([12])\.gamma$', r'.gamma_\1', key)
    return key.replace('level4_conv.conv.', 'fpn.0.').replace('level4_conv.bn.', 'fpn.1.')


def _vitdet_names(key):
    """Ours -> detectron2 ViTDet's (decomposed tables directly under attn)."""
    return key.replace('.attn.rel_pos.rel_pos_', '.attn.rel_pos_')


def _mmseg_mae_names(key):
    """Our PlainViT names -> mmseg's MAE backbone (mmseg/models/backbones/mae.py)."""
    for ours, theirs in ((r'^blocks\.(\d+)\.norm1\.', r'layers.\1.ln1.'),
                         (r'^blocks\.(\d+)\.norm2\.', r'layers.\1.ln2.'),
                         (r'^blocks\.(\d+)\.ls([12])\.gamma$', r'layers.\1.gamma_\2'),
                         (r'^blocks\.(\d+)\.attn\.rel_pos\.', r'layers.\1.attn.'),
                         (r'^blocks\.(\d+)\.attn\.', r'layers.\1.attn.'),
                         (r'^blocks\.(\d+)\.mlp\.fc1\.', r'layers.\1.ffn.layers.0.0.'),
                         (r'^blocks\.(\d+)\.mlp\.fc2\.', r'layers.\1.ffn.layers.1.'),
                         (r'^patch_embed\.proj\.', 'patch_embed.projection.')):
        key, count = re.subn(ours, theirs, key)
        if count:
            break
    return key


def _detector_heads(prefix):
    """A few FPN / RPN / RoI head tensors next to the backbone of a detectron2 model."""
    return {f'{prefix}fpn_lateral2.weight': _rand(8, 16, 1, 1),
            f'{prefix}fpn_output2.weight': _rand(8, 8, 3, 3),
            'proposal_generator.rpn_head.conv.weight': _rand(8, 8, 3, 3),
            'roi_heads.box_predictor.cls_score.weight': _rand(4, 8),
            'pixel_mean': _rand(3, 1, 1), 'pixel_std': _rand(3, 1, 1)}


def _detectron2_layout(name, directory, family, kwargs, prefix, rename, buffers, writer,
                       class_row=False):
    weights = randomized(CLASSES[family], seed=1, **kwargs).state_dict()
    state = OrderedDict((prefix + rename(k), v) for k, v in weights.items())
    if class_row:  # detectron2's ViT keeps the pretraining class row of pos_embed
        pos = state[prefix + 'pos_embed']
        state[prefix + 'pos_embed'] = torch.cat([torch.zeros_like(pos[:, :1]), pos], 1)
    for key, shape in buffers.items():
        state[prefix + key] = torch.zeros(shape, dtype=torch.long)
    heads = _detector_heads('backbone.' if prefix == 'backbone.bottom_up.' else 'backbone.sfp.')
    state.update(heads)
    sgd = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.02, momentum=0.9)
    trainer = {'iteration': 89999, 'optimizer': sgd.state_dict(),
               'hooks': {'LRScheduler': {'base_lrs': [0.02], 'last_epoch': 89999}}}
    path = writer({'model': state, 'trainer': trainer, 'iteration': 89999},
                osp.join(directory, f'{name}_model_final.pth'))
    transfer = sum(1 for k in weights if re.search(r'relative_position_bias_table|rel_pos_[hw]',
                                                   k))
    return Layout(name, path, family, kwargs, dict(weights), matched=len(weights),
                  skipped=len(heads) + len(buffers), derived=len(buffers), transfer=transfer)


def detectron2_convmae_det(directory, writer=save):
    """ConvMAE DET (detectron2 FPN): ``backbone.bottom_up.``, shared tables, index buffers."""
    kwargs = dict(arch=TINY_CONV, img_size=128, out_indices=(0, 1, 2, 3), window_size=4,
                  global_blocks=(0, 3), rel_pos_type='shared', final_norm=False)
    buffers = {'windowed_rel_pos_bias.relative_position_index': (16, 16),
               'global_rel_pos_bias.relative_position_index': (64, 64)}
    return _detectron2_layout('detectron2_convmae_det', directory, 'ConvViT', kwargs,
                              'backbone.bottom_up.', lambda k: k, buffers, writer)


def detectron2_vitdet(directory, writer=save):
    """detectron2 ViTDet: ``backbone.net.``, decomposed tables, a class row in pos_embed."""
    kwargs = dict(arch=TINY_VIT, img_size=128, out_indices=(3,), window_size=3,
                  global_blocks=(1,), rel_pos_type='decomposed', final_norm=False,
                  pretrain_img_size=224)
    return _detectron2_layout('detectron2_vitdet', directory, 'PlainViT', kwargs,
                              'backbone.net.', _vitdet_names, {}, writer, class_row=True)


MMSEG0_META = dict(
    mmseg_version='0.20.2', mmcv_version='1.4.2', seed=0, exp_name='upernet_convmae.py',
    config="norm_cfg = dict(type='SyncBN', requires_grad=True)\nmodel = dict(type="
           "'EncoderDecoder', backbone=dict(type='ConvViT'))\n",
    CLASSES=('wall', 'building', 'sky', 'floor'),
    PALETTE=[(120, 120, 120), (180, 120, 120), (6, 230, 230), (80, 50, 50)],
    env_info='sys.platform: linux\nPython: 3.7.11\nCUDA available: True\nMMCV: 1.4.2',
    hook_msgs=dict(last_ckpt='work_dirs/upernet/iter_160000.pth'), epoch=1, iter=160000,
    time='Mon Jun  6 12:00:00 2022')


def _mmseg0_layout(name, directory, family, kwargs, rename, buffers, writer):
    weights = randomized(CLASSES[family], seed=2, **kwargs).state_dict()
    state = OrderedDict(('backbone.' + rename(k), v) for k, v in weights.items())
    for key, shape in buffers.items():
        state['backbone.' + key] = torch.zeros(shape, dtype=torch.long)
    heads = {'decode_head.conv_seg.weight': _rand(4, 8, 1, 1),
             'decode_head.conv_seg.bias': _rand(4),
             'decode_head.bottleneck.bn.running_mean': _rand(8),
             'auxiliary_head.conv_seg.weight': _rand(4, 8, 1, 1),
             'neck.fpn1.0.weight': _rand(8, 8, 2, 2)}
    state.update(heads)
    ckpt = {'meta': dict(MMSEG0_META), 'state_dict': state,
            'optimizer': adamw_state(list(weights.values())[:3])}
    path = writer(ckpt, osp.join(directory, f'{name}_iter_160000.pth'))
    transfer = sum(1 for k in weights if 'relative_position_bias_table' in k)
    return Layout(name, path, family, kwargs, dict(weights), matched=len(weights),
                  skipped=len(heads) + len(buffers), derived=len(buffers), transfer=transfer)


def mmseg0_convmae_seg(directory, writer=save):
    """ConvMAE SEG (mmseg 0.x): gamma_1/2, per-block tables, the fpn.0/fpn.1 /32 level."""
    kwargs = dict(arch=TINY_CONV, img_size=128, out_indices=(0, 1, 2, 3), out_level4='conv',
                  rel_pos_type='bias', final_norm=False, layer_scale_init=1.0, norm_eps=1e-5,
                  level4_cfg=dict(padding=0, norm_cfg=dict(type='BN'),
                                  act_cfg=dict(type='GELU')))
    buffers = {f'blocks3.{i}.attn.relative_position_index': (64, 64) for i in range(4)}
    return _mmseg0_layout('mmseg0_convmae_seg', directory, 'ConvViT', kwargs, _seg_names,
                          buffers, writer)


def mmseg0_mae(directory, writer=save):
    """mmseg 0.x MAE backbone: mmseg names, class token, BEiT tables with class rows."""
    kwargs = dict(arch=TINY_VIT, img_size=128, out_indices=(1, 3), rel_pos_type='bias',
                  with_cls_token=True, final_norm=False, layer_scale_init=1.0)
    buffers = {f'layers.{i}.attn.relative_position_index': (65, 65) for i in range(4)}
    return _mmseg0_layout('mmseg0_mae', directory, 'PlainViT', kwargs, _mmseg_mae_names,
                          buffers, writer)


LAYOUTS = {f.__name__: f for f in (
    convmae_pretrain_official, convmae_finetune_official, mae_pretrain_release,
    mae_pretrain_official, mae_finetune_official, mae_finetune_release, timm_bare,
    detectron2_convmae_det, detectron2_vitdet, mmseg0_convmae_seg, mmseg0_mae)}


# ----------------------------------------------------------------------------------------
# real mmengine Runner checkpoints


def _pretrain_config(pattern):
    found = sorted(glob.glob(osp.join(ROOT, 'configs', pattern)))
    if not found:
        raise FileNotFoundError(f'no config matches configs/{pattern}')
    return found[0]


def mmengine_runs(directory):
    """Run our ConvMAE pretraining and mmpretrain's MAE for one iteration each through the
    real Runner (the configs shrunk by :func:`mixedconv.benchmark.tiny.shrink_pretrain`) and
    return their checkpoints as layouts:

    * ``mmengine_convmae``: ``iter_1.pth`` as the checkpoint hook wrote it (meta, state_dict,
      message_hub, optimizer, param_schedulers, the RNG states of our RNGStateHook);
    * ``mmengine_convmae_empty_buffer``: saved again after a scalar whose ``HistoryBuffer``
      holds no value entered the message hub (it pickles an empty ``bytes``);
    * ``mmengine_convmae_weights``: ``save_optimizer=False, save_param_scheduler=False``;
    * ``mmengine_mmpretrain_mae``: mmpretrain's MAE (``backbone.`` + MAEViT names).
    """
    from mmengine.config import Config
    from mmengine.logging import HistoryBuffer
    from mmengine.runner import Runner

    from mixedconv.benchmark.tiny import shrink_pretrain
    from mixedconv.data import make_image_folder

    data_root = osp.join(directory, 'imagenet')
    make_image_folder(osp.join(data_root, 'train'), num_images=4)
    layouts = {}
    for name, pattern in (('convmae', 'convmae/convmae_convvit-base-p16_*-amp-coslr-1600e_in1k.py'),
                          ('mmpretrain_mae', 'mae/mae_vit-base-p16_*-amp-coslr-1600e_in1k.py')):
        cfg = shrink_pretrain(Config.fromfile(_pretrain_config(pattern)), data_root, iters=1,
                              batch_size=4)
        work_dir = osp.join(directory, name)
        cfg.work_dir = work_dir
        runner = Runner.from_cfg(cfg)
        runner.train()
        backbone = cfg.model.backbone
        if backbone.type == 'MAEViT':
            arch = backbone.arch
            family, kwargs = 'PlainViT', dict(arch=dict(
                embed_dim=arch.embed_dims, depth=arch.num_layers, num_heads=arch.num_heads,
                mlp_ratio=arch.feedforward_channels / arch.embed_dims), img_size=64)
        else:
            family, kwargs = 'ConvViT', dict(arch=backbone.arch, img_size=64)
        model = runner.model.module if hasattr(runner.model, 'module') else runner.model
        weights = dict(model.backbone.state_dict())
        total = len(model.state_dict())
        if family == 'PlainViT':  # mmpretrain's MAEViT names, as ours
            weights = find_encoder(weights, 'PlainViT').adapted(PlainViT(**kwargs))

        def layout(label, path):
            return Layout(label, path, family, kwargs, weights, matched=len(weights),
                          skipped=total - len(weights))
        if name == 'convmae':
            layouts['mmengine_convmae'] = layout('mmengine_convmae',
                                                 osp.join(work_dir, 'iter_1.pth'))
            # a scalar that was registered but never updated, entered as a resume does
            runner.message_hub.load_state_dict(dict(
                log_scalars={'val/accuracy': HistoryBuffer()}, runtime_info={},
                resumed_keys={'val/accuracy': True}))
            runner.save_checkpoint(work_dir, 'empty_buffer.pth', by_epoch=False)
            layouts['mmengine_convmae_empty_buffer'] = layout(
                'mmengine_convmae_empty_buffer', osp.join(work_dir, 'empty_buffer.pth'))
            runner.save_checkpoint(work_dir, 'weights.pth', save_optimizer=False,
                                   save_param_scheduler=False, by_epoch=False)
            layouts['mmengine_convmae_weights'] = layout('mmengine_convmae_weights',
                                                         osp.join(work_dir, 'weights.pth'))
        else:
            layouts['mmengine_mmpretrain_mae'] = layout('mmengine_mmpretrain_mae',
                                                        osp.join(work_dir, 'iter_1.pth'))
    return layouts


# ----------------------------------------------------------------------------------------
# numpy 1 pickles


class _Numpy1Pickler(pickle._Pickler):
    """A pickler that names numpy's reconstructors as numpy 1 did (``numpy.core.*``);
    numpy 2 moved them to ``numpy._core`` and keeps ``numpy.core`` as an alias."""

    def save_global(self, obj, name=None):
        module = getattr(obj, '__module__', '') or ''
        if module.startswith('numpy._core'):
            name = name or obj.__qualname__
            self.write(pickle.GLOBAL + f'{module.replace("numpy._core", "numpy.core")}\n'
                       f'{name}\n'.encode('utf-8'))
            self.memoize(obj)
            return
        super().save_global(obj, name)


def _pickle_module(pickler_cls, name):
    def dump(obj, f, protocol=2):
        pickler_cls(f, protocol=protocol).dump(obj)
    return types.SimpleNamespace(__name__=name, Pickler=pickler_cls, dump=dump)


NUMPY1 = _pickle_module(_Numpy1Pickler, 'numpy1_pickle')


def save_as_numpy1(obj, path, legacy=False):
    """``torch.save`` whose pickle names ``numpy.core.multiarray._reconstruct`` and
    ``numpy.core.multiarray.scalar``, as a checkpoint written under numpy 1.x does."""
    torch.save(obj, path, pickle_module=NUMPY1, _use_new_zipfile_serialization=not legacy)
    return str(path)


def pickled_globals(path):
    """The ``module.name`` globals the pickle(s) of a torch file name (zip or legacy)."""
    with open(path, 'rb') as f:
        data = f.read()
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            data = b''.join(archive.read(n) for n in archive.namelist() if n.endswith('.pkl'))
    return {f'{m.decode()}.{n.decode()}'
            for m, n in re.findall(rb'c([\w.]+)\n([\w.]+)\n', data)}


def rewritten(layout, directory, writer, label):
    """``layout``'s checkpoint read back (weights-only) and written again by ``writer``
    (:func:`save_legacy`, :func:`save_as_numpy1`): same content, another encoding."""
    from mixedconv.checkpoint import safe_load
    path = writer(safe_load(layout.path), osp.join(directory,
                                                   f'{label}_{osp.basename(layout.path)}'))
    return replace(layout, name=f'{label}_{layout.name}', path=path)


__all__ = ['Layout', 'LAYOUTS', 'TINY_CONV', 'TINY_VIT', 'build_backbone', 'randomized',
           'save', 'save_legacy', 'save_as_numpy1', 'save_as_arrays', 'mmengine_runs',
           'rewritten',
           'pickled_globals']
