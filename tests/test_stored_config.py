"""Config text found in a checkpoint or a results folder is read as data and never run: the
literal reader, the benchmark's checkpoint inspection, ``tools/train.py --resume`` and the
leaderboard's reading of dumped configs."""
import glob
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config

from mixedconv.benchmark import describe_checkpoint
from mixedconv.checkpoint import safe_load
from mixedconv.config_data import ConfigTextError, parse_config_text
from mixedconv.fileio import create_temporary
from mixedconv.leaderboard import collect
from mixedconv.models.backbones.convvit import ConvViT

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIGS = sorted(glob.glob(osp.join(ROOT, 'configs', '*', '*.py')))
CONFIGS = [c for c in CONFIGS if '/_base_/' not in c]


def payload(marker):
    """Config text that creates ``marker`` when executed, and also looks like a config."""
    return (f"import os\nopen({str(marker)!r}, 'w').close()\n"
            "model = dict(type='ConvMAE', backbone=dict(type='PlainViT', arch='huge'))\n"
            'gpu_ids = [0]\n')


def test_payload_runs_when_executed(tmp_path):
    """Guards the premise: mmengine's Config.fromstring executes such text."""
    marker = tmp_path / 'ran'
    Config.fromstring(payload(marker), file_format='.py')
    assert marker.exists()


@pytest.mark.parametrize('config', CONFIGS, ids=lambda p: osp.basename(p))
def test_every_dumped_recipe_reads_back_as_data(config):
    """What mmengine dumps (Config.pretty_text) for each of our recipes is literal data and
    reads back equal to the config."""
    cfg = Config.fromfile(config)
    assert parse_config_text(cfg.pretty_text) == cfg.to_dict()


@pytest.mark.parametrize('text, problem', [
    ('import os\n', 'only "name = value" assignments'),
    ("x = __import__('os').system('true')\n", 'not literal data'),
    ("x = dict(a=open('f'))\n", 'not literal data'),
    ('x = (lambda: 0)\n', 'lambda'),
    ('x = [i for i in range(3)]\n', 'listcomp'),
    ('x = y\n', 'name'),
    ('x = 1 + 2\n', 'binop'),
    ('x.y = 1\n', 'only "name = value"'),
    ('x = {**y}\n', 'unpacking'),
    ('x = dict(**y)\n', 'not literal data'),
    ('x = dict(\n', 'is not Python'),
    ('x = 1\nif True:\n    y = 2\n', 'line 2'),
])
def test_reader_refuses_anything_but_literals(text, problem):
    with pytest.raises(ConfigTextError, match=problem):
        parse_config_text(text)


def test_reader_keeps_literal_types():
    text = ("a = dict(b=(1, -2.5), c=[None, True], d={'k': 'v', 3: b'x'}, e={1, 2})\n"
            "'''a docstring'''\n")
    assert parse_config_text(text) == dict(a=dict(b=(1, -2.5), c=[None, True],
                                                  d={'k': 'v', 3: b'x'}, e={1, 2}))


def test_benchmark_reads_checkpoint_config_as_data(tmp_path):
    """A checkpoint whose meta['cfg'] would create a file: inspecting it runs nothing, and the
    tensors (a ConvViT, not the PlainViT the text claims) decide."""
    marker = tmp_path / 'ran'
    path = tmp_path / 'convmae_crafted.pth'
    torch.save({'state_dict': ConvViT(arch='s').state_dict(),
                'meta': {'cfg': payload(marker)}}, path)
    with pytest.warns(UserWarning, match='the stored config is ignored'):
        info = describe_checkpoint(str(path))
    assert not marker.exists()
    assert (info.family, info.method) == ('ConvViT', 'ConvMAE')
    cli = subprocess.run([sys.executable, osp.join(ROOT, 'tools', 'benchmark.py'), str(path),
                          '--tasks', 'in1k-linear', '--data-root', str(tmp_path / 'none'),
                          '--work-dir', str(tmp_path / 'wd'), '--arch', 'PlainViT'],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert not marker.exists()
    assert cli.returncode == 2 and 'holds a ConvViT encoder, not the PlainViT' in cli.stderr


def _crafted(trained, tmp_path, config_text):
    """The run's ``iter_2.pth`` with ``config_text`` as its stored config."""
    checkpoint = safe_load(trained / 'iter_2.pth')
    checkpoint['meta']['config'] = config_text
    path = tmp_path / 'crafted.pth'
    torch.save(checkpoint, path)
    return path


def gpu_ids_payload(marker):
    """The stored config of a resumed run as mmengine reads it: ``gpu_ids`` computed by a
    call that creates ``marker``."""
    return f"gpu_ids = [__import__('os').system('touch {marker}')]\n"


@pytest.mark.parametrize('runner_type', ['Runner', 'FlexibleRunner'])
def test_resume_does_not_run_checkpoint_config(trained_classifier, train_classifier,
                                               image_folder, tmp_path, runner_type):
    """--resume from a checkpoint whose meta['config'] would create a file, under the default
    Runner and under FlexibleRunner (which resumes through its strategy): the run resumes
    from iteration 2 to 4 and the file is never created. A stale checkpoint temporary is
    removed at the start."""
    marker = tmp_path / 'ran'
    crafted = _crafted(trained_classifier, tmp_path, gpu_ids_payload(marker))
    work_dir = tmp_path / 'resumed'
    work_dir.mkdir()
    fd, stale = create_temporary(work_dir / 'iter_4.pth')
    os.write(fd, b'half a checkpoint')
    os.close(fd)
    out = train_classifier(work_dir, image_folder, '--cfg-options', 'train_cfg.max_iters=4',
                           f'runner_type={runner_type}', '--resume', str(crafted))
    assert out.returncode == 0, out.stderr[-3000:]
    assert not marker.exists()
    assert 'resumed epoch: 0, iter: 2' in out.stdout + out.stderr
    assert not osp.exists(stale)
    assert safe_load(work_dir / 'iter_4.pth')['meta']['iter'] == 4


@pytest.mark.parametrize('runner_type, message', [
    ('Runner', 'Number of GPUs used for current experiment is not consistent'),
    ('FlexibleRunner', 'Cannot automatically rescale lr in resuming')])
def test_resume_still_checks_the_stored_gpu_count(trained_classifier, train_classifier,
                                                  image_folder, tmp_path, runner_type,
                                                  message):
    """The stored config is read as data, not dropped: mmengine's check that the GPU count
    matches the one the checkpoint was trained with still runs."""
    crafted = _crafted(trained_classifier, tmp_path, 'gpu_ids = [0, 1, 2, 3]\n')
    out = train_classifier(tmp_path / 'resumed', image_folder, '--cfg-options',
                           'train_cfg.max_iters=4', f'runner_type={runner_type}',
                           '--resume', str(crafted))
    assert out.returncode != 0
    assert message in out.stderr


def test_no_mmengine_reader_runs_checkpoint_config(trained_classifier, tmp_path):
    """mmengine hands a checkpoint's config text to ``Config.fromstring`` in three places:
    ``Runner.resume`` and ``FlexibleRunner.resume`` (``meta['config']``) and an inferencer
    built from weights alone (``message_hub['runtime_info']['cfg']``, then ``meta['cfg']``).
    Every checkpoint mmengine loads reaches them without runnable text: here the
    inferencer, which then asks for a config."""
    from mmdet.apis import DetInferencer
    from mmengine.runner.checkpoint import _load_checkpoint
    marker = tmp_path / 'ran'
    checkpoint = safe_load(trained_classifier / 'iter_2.pth')
    checkpoint['meta']['config'] = gpu_ids_payload(marker)
    checkpoint['meta']['cfg'] = payload(marker)
    checkpoint['message_hub']['runtime_info']['cfg'] = payload(marker)
    path = tmp_path / 'crafted.pth'
    torch.save(checkpoint, path)

    loaded = _load_checkpoint(str(path), map_location='cpu')
    assert 'cfg' not in loaded['meta'] and 'cfg' not in loaded['message_hub']['runtime_info']
    assert loaded['meta']['config'] == ''
    assert torch.equal(next(iter(loaded['state_dict'].values())),
                       next(iter(checkpoint['state_dict'].values())))
    with pytest.raises(ValueError, match='Cannot find the config in the checkpoint'):
        DetInferencer(model=None, weights=str(path), device='cpu')
    assert not marker.exists()


def test_leaderboard_never_runs_python_files_in_work_dirs(trained_classifier, tmp_path):
    """A helper script beside a real mmengine run is neither run nor taken as its config."""
    import shutil
    work_dir = tmp_path / 'shared_results'
    shutil.copytree(trained_classifier, work_dir)
    (run_dir,) = [d for d in os.listdir(work_dir) if d[:8].isdigit()]
    marker = tmp_path / 'ran'
    helper = work_dir / 'plot_helper.py'
    helper.write_text(payload(marker))
    os.utime(helper, (2e9, 2e9))  # the newest .py file of the folder
    (result,) = collect([str(work_dir)])
    assert not marker.exists()
    assert result.record.config == str(work_dir / run_dir / 'vis_data' / 'config.py')
    assert result.record.backbone == 'unknown'  # ResNet: what the real config says

    # without the visualizer's copy, the runner's dump is found; the helper is passed over
    os.remove(work_dir / run_dir / 'vis_data' / 'config.py')
    with pytest.warns(UserWarning, match="plot_helper.py, line 1.*not taken as the run"):
        (result,) = collect([str(work_dir)])
    assert not marker.exists()
    assert result.record.config == str(work_dir / 'tiny_resnet_classifier.py')
