"""Nothing lost, nothing silent: atomic checkpoints, a stop at the first non-finite loss, and
runs that are SIGKILLed after a checkpoint and resumed ending with the weights of an
uninterrupted run (ConvMAE and MixedAE pretraining, Mask R-CNN transfer; tools/train.py)."""
import os
import os.path as osp
import resource
import signal
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.fileio import LocalBackend
from mmengine.fileio.backends import registry_utils
from mmengine.hooks import Hook
from mmengine.runner import Runner
from mmengine.runner.checkpoint import find_latest_checkpoint

from mixedconv.benchmark.tiny import shrink_pretrain, shrink_transfer
from mixedconv.checkpoint import safe_load
from mixedconv.data import make_coco, make_image_folder
from mixedconv.engine.hooks import NonFiniteLossError
from mixedconv.fileio import AtomicLocalBackend, atomic_write
from mixedconv.registry import HOOKS

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONVMAE = 'configs/convmae/convmae_convvit-base-p16_8xb384-amp-coslr-1600e_in1k.py'
MIXEDAE = 'configs/mixedae/mixedae_vit-base-p16_8xb256-amp-coslr-1600e_in1k.py'
MASK_RCNN = 'configs/mixedae/mask-rcnn_vit-base-p16_sfp_16xb4-amp-lsj-1024-100e_coco.py'


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    """8 images (2 batches of 4 per epoch) and a 4-image COCO set (2 batches of 2)."""
    root = tmp_path_factory.mktemp('data')
    make_image_folder(str(root / 'imagenet' / 'train'), num_images=8)
    make_coco(str(root / 'coco'), num_train=4, num_val=2)
    return root


def pretrain_cfg(config, data, iters):
    cfg = shrink_pretrain(Config.fromfile(osp.join(ROOT, config)), str(data / 'imagenet'),
                          iters=iters, batch_size=4)
    # a schedule that does not depend on the run's length, with a learning rate large enough
    # that other masks give visibly other weights
    cfg.param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0,
                                end=4)]
    return cfg


def detection_cfg(data, iters):
    cfg = shrink_transfer(Config.fromfile(osp.join(ROOT, MASK_RCNN)), str(data / 'coco'),
                          iters=iters)
    cfg.model.backbone.init_cfg = None
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.train_cfg.pop('val_interval')
    return cfg


# ----------------------------------------------------------------------------------------
# atomic checkpoints


def test_atomic_write_replaces_whole_file(tmp_path):
    path = tmp_path / 'sub' / 'f.bin'
    atomic_write(path, b'old')
    atomic_write(path, b'new content')
    assert path.read_bytes() == b'new content'
    assert os.listdir(path.parent) == ['f.bin']
    assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_atomic_backend_is_what_mmengine_saves_with():
    from mmengine.fileio import get_file_backend
    assert isinstance(get_file_backend('/some/work_dir/iter_2.pth'), AtomicLocalBackend)


@HOOKS.register_module()
class _FileSizeLimitHook(Hook):
    """Before saving the checkpoint of iteration ``at``, limit the size of any file this
    process writes to half of the previous checkpoint: the write fails part-way (EFBIG), as
    on a full disk."""

    def __init__(self, at):
        self.at = at

    def before_save_checkpoint(self, runner, checkpoint):
        if checkpoint['meta']['iter'] == self.at:
            previous = osp.join(runner.work_dir, f'iter_{self.at - 1}.pth')
            limit = os.path.getsize(previous) // 2
            hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))


@pytest.fixture
def file_size_limit_guard():
    """Writes past the limit fail with EFBIG instead of killing the process (SIGXFSZ); the
    fixture's value lifts the limit again."""
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    yield lambda: resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
    resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
    signal.signal(signal.SIGXFSZ, old_handler)


@pytest.mark.parametrize('backend', ['atomic', 'mmengine'])
def test_crash_while_saving_keeps_previous_checkpoint(backend, data, tmp_path, monkeypatch,
                                                      file_size_limit_guard):
    """A real runner whose 2nd checkpoint write fails half-way. With mmengine's own local
    backend this leaves a truncated ``iter_2.pth`` (the hazard is real); with ours nothing is
    left under that name and ``last_checkpoint`` still names the intact ``iter_1.pth``."""
    if backend == 'mmengine':
        monkeypatch.setitem(registry_utils.prefix_to_backends, '', LocalBackend)
    cfg = pretrain_cfg(CONVMAE, data, iters=2)
    cfg.default_hooks.checkpoint.interval = 1
    cfg.custom_hooks.append(dict(type='_FileSizeLimitHook', at=2))
    cfg.work_dir = str(tmp_path)
    with pytest.raises(OSError, match='File too large'):
        Runner.from_cfg(cfg).train()
    file_size_limit_guard()  # lift the limit again

    assert find_latest_checkpoint(str(tmp_path)) == str(tmp_path / 'iter_1.pth')
    assert safe_load(tmp_path / 'iter_1.pth')['meta']['iter'] == 1
    if backend == 'mmengine':
        assert (tmp_path / 'iter_2.pth').stat().st_size < (tmp_path / 'iter_1.pth').stat().st_size
    else:
        assert not (tmp_path / 'iter_2.pth').exists()
        assert not [name for name in os.listdir(tmp_path) if name.endswith('.part')]


# ----------------------------------------------------------------------------------------
# non-finite loss


def test_hooks_do_not_clash_with_mm_libraries():
    import importlib
    for lib in ('mmpretrain', 'mmdet', 'mmseg'):
        importlib.import_module(f'{lib}.utils').register_all_modules(init_default_scope=False)
        child = importlib.import_module(f'{lib}.registry').HOOKS
        for name in ('FiniteLossHook', 'RNGStateHook'):
            assert name not in child.module_dict
            assert child.get(name) is HOOKS.get(name)


@pytest.mark.parametrize('config', [CONVMAE, MIXEDAE])
def test_nan_loss_stops_training_naming_the_iteration(config, data, tmp_path):
    """A learning rate of 1e30 makes the second step's loss non-finite: training stops
    there, before that state is checkpointed."""
    cfg = pretrain_cfg(config, data, iters=4)
    cfg.optim_wrapper.optimizer.lr = 1e30
    cfg.default_hooks.checkpoint.interval = 1
    cfg.work_dir = str(tmp_path)
    runner = Runner.from_cfg(cfg)
    with pytest.raises(NonFiniteLossError,
                       match=r'training loss is (nan|inf) at iteration 2 \(epoch 1, batch 2\)'):
        runner.train()
    assert sorted(p for p in os.listdir(tmp_path) if p.endswith('.pth')) == ['iter_1.pth']


def test_without_the_hook_nan_training_goes_on(data, tmp_path):
    """The premise: mmengine itself trains on with NaN weights to the end."""
    cfg = pretrain_cfg(CONVMAE, data, iters=3)
    cfg.optim_wrapper.optimizer.lr = 1e30
    cfg.custom_hooks = []
    cfg.work_dir = str(tmp_path)
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert runner.iter == 3
    assert not torch.isfinite(torch.tensor(runner.message_hub.get_scalar('train/loss').current()))


# ----------------------------------------------------------------------------------------
# resume after SIGKILL

KILLER = '''
import os
import signal

from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class KillAfterCheckpointHook(Hook):
    """SIGKILL this process right after the checkpoint of iteration ``at`` is written."""
    priority = 'LOWEST'

    def __init__(self, at):
        self.at = at

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter + 1 == self.at:
            os.kill(os.getpid(), signal.SIGKILL)
'''


def write_configs(cfg, out_dir, rng_hook=True):
    """The tiny config, and the same with a hook that SIGKILLs the run after iteration 2."""
    cfg.default_hooks.checkpoint.interval = 2
    cfg.randomness = dict(seed=0, deterministic=True)
    if not rng_hook:
        cfg.custom_hooks = [h for h in cfg.custom_hooks if h['type'] != 'RNGStateHook']
    cfg.dump(str(out_dir / 'tiny.py'))
    (out_dir / 'killer.py').write_text(KILLER)
    cfg.custom_imports.imports.append('killer')
    cfg.custom_hooks.append(dict(type='KillAfterCheckpointHook', at=2))
    cfg.dump(str(out_dir / 'tiny_killed.py'))
    return out_dir / 'tiny.py', out_dir / 'tiny_killed.py'


def start_training(config, work_dir, *args):
    """tools/train.py in a subprocess with one intra-op thread (runs that are compared use
    the same thread count; two such runs share the 2-core machine in parallel)."""
    env = dict(os.environ, PYTHONPATH=str(osp.dirname(config)), OMP_NUM_THREADS='1')
    return subprocess.Popen([sys.executable, osp.join(ROOT, 'tools', 'train.py'), str(config),
                             '--work-dir', str(work_dir), *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(process, returncode=0):
    log, _ = process.communicate(timeout=300)
    assert process.returncode == returncode, log[-3000:]
    return log


def uninterrupted_and_resumed(tiny, killed, work_dir):
    """Checkpoint iteration 4 of an uninterrupted run, and of a run SIGKILLed right after its
    iteration-2 checkpoint and restarted with ``--resume`` (the two first runs in parallel)."""
    uninterrupted = start_training(tiny, work_dir / 'uninterrupted')
    interrupted = start_training(killed, work_dir / 'resumed')
    finish(uninterrupted)
    finish(interrupted, returncode=-signal.SIGKILL)
    assert sorted(p for p in os.listdir(work_dir / 'resumed') if p.endswith('.pth')) == \
        ['iter_2.pth']
    log = finish(start_training(tiny, work_dir / 'resumed', '--resume'))
    assert 'resumed epoch: 0, iter: 2' in log
    return (safe_load(work_dir / 'uninterrupted' / 'iter_4.pth'),
            safe_load(work_dir / 'resumed' / 'iter_4.pth'), log)


def max_difference(a, b):
    """Largest absolute difference over weights, optimizer state and scheduler state."""
    diffs = [0.0]
    for key, value in a['state_dict'].items():
        diffs.append((value.double() - b['state_dict'][key].double()).abs().max().item())
    for pid, state in a['optimizer']['state'].items():
        for name, value in state.items():
            other = b['optimizer']['state'][pid][name]
            diffs.append((torch.as_tensor(value).double() -
                          torch.as_tensor(other).double()).abs().max().item())
    assert a['param_schedulers'] == b['param_schedulers']
    return max(diffs)


@pytest.mark.parametrize('kind', ['convmae', 'mixedae', 'mask-rcnn'])
def test_resume_after_sigkill_matches_uninterrupted_run(kind, data, tmp_path):
    if kind == 'mask-rcnn':
        cfg = detection_cfg(data, iters=4)
    else:
        cfg = pretrain_cfg(CONVMAE if kind == 'convmae' else MIXEDAE, data, iters=4)
    reference, resumed, log = uninterrupted_and_resumed(*write_configs(cfg, tmp_path),
                                                        tmp_path)
    assert 'RNGStateHook: restored the RNG state of epoch 0, iteration 2' in log
    assert max_difference(reference, resumed) <= 1e-6
    # the steps after the resume did train
    before = safe_load(tmp_path / 'resumed' / 'iter_2.pth')['state_dict']
    assert any(not torch.equal(v, resumed['state_dict'][k]) for k, v in before.items())


def test_without_rng_hook_resume_differs(data, tmp_path):
    """The premise (in-process, same seed and schedule): mmengine's own resume restores
    weights, optimizer and schedulers but draws other ConvMAE masks, so it ends elsewhere."""
    def run(work_dir, resume_from=None):
        cfg = pretrain_cfg(CONVMAE, data, iters=4)
        cfg.default_hooks.checkpoint.interval = 2
        cfg.custom_hooks = [h for h in cfg.custom_hooks if h['type'] != 'RNGStateHook']
        cfg.work_dir = str(work_dir)
        cfg.resume, cfg.load_from = resume_from is not None, resume_from
        Runner.from_cfg(cfg).train()
        return safe_load(work_dir / 'iter_4.pth')

    reference = run(tmp_path / 'uninterrupted')
    resumed = run(tmp_path / 'resumed', str(tmp_path / 'uninterrupted' / 'iter_2.pth'))
    assert max_difference(reference, resumed) > 1e-4


def test_epoch_based_resume_matches_uninterrupted_run(data, tmp_path):
    """The real recipes train by epoch (no batches are replayed on resume): numpy, Python and
    torch states are all restored before the next epoch's data iterator starts (in-process
    runs; 2 epochs of 2 iterations, resumed from the end of epoch 1)."""
    def run(work_dir, resume_from=None):
        cfg = pretrain_cfg(MIXEDAE, data, iters=4)
        cfg.train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=2)
        cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=1)
        cfg.work_dir = str(work_dir)
        cfg.resume, cfg.load_from = resume_from is not None, resume_from
        Runner.from_cfg(cfg).train()
        return safe_load(work_dir / 'epoch_2.pth')

    reference = run(tmp_path / 'uninterrupted')
    resumed = run(tmp_path / 'resumed', str(tmp_path / 'uninterrupted' / 'epoch_1.pth'))
    assert max_difference(reference, resumed) <= 1e-6
