"""The package stands on its own: a built wheel ships the configs, resolves them (also by
``mixedconv::`` names) and trains through ``python -m mixedconv.train``, without the checkout."""
import os
import os.path as osp
import subprocess
import sys

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


@pytest.fixture(scope='module')
def installed(tmp_path_factory):
    """``pip install --target`` of a wheel built from the checkout (not editable)."""
    tmp = tmp_path_factory.mktemp('wheel')
    pip = [sys.executable, '-m', 'pip', '--disable-pip-version-check', '-q']
    subprocess.run(pip + ['wheel', '--no-deps', '--no-build-isolation', '-w', str(tmp), REPO],
                   check=True, capture_output=True)
    (wheel, ) = [p for p in tmp.iterdir() if p.suffix == '.whl']
    target = tmp / 'site'
    subprocess.run(pip + ['install', '--no-deps', '--target', str(target), str(wheel)],
                   check=True, capture_output=True)
    return target


def run_installed(target, args, cwd):
    env = dict(os.environ, PYTHONPATH=str(target))
    return subprocess.run([sys.executable, '-W', 'ignore', *args], cwd=str(cwd), env=env,
                          capture_output=True, text=True, timeout=600)


def test_installed_package_resolves_every_recipe(installed, tmp_path):
    user_cfg = tmp_path / 'my_upernet.py'
    user_cfg.write_text("_base_ = 'mixedconv::convmae/"
                        "upernet_convvit-base-p16_8xb2-amp-160k_ade20k-512x512.py'\n"
                        'train_cfg = dict(max_iters=10)\n')
    code = f'''
import os.path as osp, torch, mixedconv
from mmengine.config import Config
from mixedconv.benchmark.recipes import PRETRAIN_CONFIGS, TASK_CONFIGS, TRANSFER_CONFIGS
from mixedconv.config_files import config_path
assert mixedconv.__file__.startswith({str(installed)!r}), mixedconv.__file__
names = list(PRETRAIN_CONFIGS.values()) + [c for t in (TASK_CONFIGS, TRANSFER_CONFIGS)
                                          for f in t.values() for c in f.values()]
for name in names:
    path = config_path(name)
    assert path.startswith({str(installed)!r}) and osp.isfile(path), path
    Config.fromfile(path)
cfg = Config.fromfile({str(user_cfg)!r})
assert cfg.model.backbone.type == 'ConvViT' and cfg.train_cfg.max_iters == 10
print(len(names))
'''
    out = run_installed(installed, ['-c', code], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert int(out.stdout.split()[-1]) >= 9


def test_installed_train_entry_point_names_a_missing_shipped_config(installed, tmp_path):
    out = run_installed(installed, ['-m', 'mixedconv.train', 'mixedconv::convmae/nope.py'],
                        tmp_path)
    assert out.returncode != 0
    assert 'mixedconv ships no such config' in out.stderr and '.mim/configs' in out.stderr


def test_installed_slurm_launch_needs_no_checkout(installed, recording_srun, tmp_path):
    """``python -m mixedconv.slurm`` of the wheel hands srun (a recording stand-in) the
    installed train module."""
    bin_dir, recorded = recording_srun
    env = dict(os.environ, PYTHONPATH=str(installed), GPUS='4',
               PATH=os.pathsep.join([str(bin_dir), os.environ['PATH']]))
    config = 'mixedconv::convmae/upernet_convvit-base-p16_8xb2-amp-160k_ade20k-512x512.py'
    out = subprocess.run([sys.executable, '-m', 'mixedconv.slurm', 'gpu', 'job', config, 'wd',
                          '--amp'], cwd=str(tmp_path), env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    args = recorded.read_text().splitlines()
    assert args[:5] == ['-p', 'gpu', '--job-name=job', '--gres=gpu:4', '--ntasks=4']
    assert args[-6:] == ['-m', 'mixedconv.train', config, '--work-dir=wd', '--launcher=slurm',
                         '--amp']


def test_installed_embedded_benchmark_runs_a_task(installed, tmp_path):
    """The embedded benchmark (generated data, tiny models) through the installed package:
    it runs ``python -m mixedconv.train`` on a shipped recipe."""
    code = f'''
import torch
from mixedconv.benchmark.runner import run_chain
run = run_chain(['mae'], ['ade20k-upernet'], {str(tmp_path / 'bench')!r})
assert [r.status for r in run.records] == ['done'], [(r.status, r.error) for r in run.records]
print(open(run.leaderboard['md']).read())
'''
    out = run_installed(installed, ['-c', code], tmp_path)
    assert out.returncode == 0, (out.stdout[-2000:], out.stderr[-3000:])
    assert '| MAE (reduced) | ViT-tiny |' in out.stdout

