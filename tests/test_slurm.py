"""Slurm launch: ``python -m mixedconv.slurm`` and ``tools/slurm_train.sh`` exec ``srun`` with
one task per GPU running ``python -m mixedconv.train --launcher=slurm``. A recording ``srun``
on PATH (conftest ``recording_srun``) stands in for the cluster's."""
import os
import os.path as osp
import subprocess
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


SLURM_ENV = ('GPUS', 'GPUS_PER_NODE', 'CPUS_PER_TASK', 'SRUN_ARGS')
SYSTEM_PATH = [osp.dirname(sys.executable), '/usr/bin', '/bin']


def launch(cmd, cwd, path_dirs, **env):
    """Run ``cmd`` with only ``path_dirs`` on PATH and only the given Slurm variables (None:
    unset), none inherited from the caller's environment."""
    base = {k: v for k, v in os.environ.items() if k not in SLURM_ENV}
    env = dict(base, PATH=os.pathsep.join(map(str, path_dirs)), PYTHON=sys.executable,
               **{k: v for k, v in env.items() if v is not None})
    return subprocess.run(cmd, cwd=str(cwd), env=env, capture_output=True, text=True,
                          timeout=120)


def srun_part(gpus, per_node, extra=()):
    return ['-p', 'gpu', '--job-name=convmae', f'--gres=gpu:{per_node}', f'--ntasks={gpus}',
            f'--ntasks-per-node={per_node}', '--cpus-per-task=5', '--kill-on-bad-exit=1',
            *extra, sys.executable, '-u', '-m', 'mixedconv.train', 'cfg.py',
            '--work-dir=wd', '--launcher=slurm']


@pytest.mark.parametrize('gpus, per_node', [('16', 8), ('2', 2), (None, 8)])
def test_checkout_script_execs_srun_with_the_train_module(recording_srun, tmp_path, gpus,
                                                          per_node):
    bin_dir, recorded = recording_srun
    out = launch(['bash', osp.join(ROOT, 'tools', 'slurm_train.sh'), 'gpu', 'convmae',
                  'cfg.py', 'wd', '--amp', '--cfg-options', 'train_cfg.max_iters=10'],
                 tmp_path, [bin_dir, *SYSTEM_PATH], GPUS=gpus,
                 SRUN_ARGS='--exclusive --time=1:00:00')
    assert out.returncode == 0, out.stderr
    expected = srun_part(int(gpus or 8), per_node, ['--exclusive', '--time=1:00:00'])
    assert recorded.read_text().splitlines() == expected + [
        '--amp', '--cfg-options', 'train_cfg.max_iters=10']


def test_without_srun_the_error_names_the_alternatives(tmp_path):
    out = launch([sys.executable, '-m', 'mixedconv.slurm', 'gpu', 'job', 'cfg.py', 'wd'],
                 ROOT, [tmp_path])  # an empty PATH directory, also on a Slurm machine
    assert out.returncode != 0 and 'Traceback' not in out.stderr
    assert 'srun not found on PATH' in out.stderr and 'mixedconv.train' in out.stderr


@pytest.mark.parametrize('env, message', [
    (dict(GPUS='eight'), "GPUS must be an integer, got 'eight'"),
    (dict(GPUS='0'), 'GPUS must be at least 1, got 0'),
])
def test_bad_gpu_counts_are_named(recording_srun, env, message):
    bin_dir, recorded = recording_srun
    out = launch([sys.executable, '-m', 'mixedconv.slurm', 'gpu', 'job', 'cfg.py', 'wd'],
                 ROOT, [bin_dir, *SYSTEM_PATH], **env)
    assert out.returncode != 0 and message in out.stderr and 'Traceback' not in out.stderr
    assert not recorded.exists()
