"""Train on a Slurm cluster, one task per GPU, from the installed package:

    [GPUS=16] [GPUS_PER_NODE=8] [CPUS_PER_TASK=5] [SRUN_ARGS="..."] \\
        python -m mixedconv.slurm PARTITION JOB_NAME CONFIG WORK_DIR [train args...]

It replaces itself with ``srun ... python -u -m mixedconv.train CONFIG --work-dir WORK_DIR
--launcher slurm [train args...]``; the train arguments are those of
``python -m mixedconv.train`` (``--resume``, ``--amp``, ``--cfg-options``). ``GPUS`` is the
number of tasks (default 8), ``GPUS_PER_NODE`` the tasks and GPUs per node (default
``min(GPUS, 8)``), ``PYTHON`` the interpreter of the tasks (default this one).
``tools/slurm_train.sh`` runs the same from a checkout. Imports neither torch nor mmengine.
"""
import argparse
import os
import shlex
import shutil
import sys

USAGE = ('[GPUS=N] python -m mixedconv.slurm PARTITION JOB_NAME CONFIG WORK_DIR '
         '[train args...]')


def srun_command(partition, job_name, config, work_dir, train_args=(), gpus=8,
                 gpus_per_node=None, cpus_per_task=5, srun_args='', python=sys.executable):
    """The ``srun`` command line that trains ``config`` into ``work_dir`` with ``gpus`` tasks.

    Returns:
        list[str]: the command, ``srun`` first.
    """
    if gpus < 1:
        raise ValueError(f'GPUS must be at least 1, got {gpus}')
    gpus_per_node = min(gpus, 8) if gpus_per_node is None else gpus_per_node
    return ['srun', '-p', partition, f'--job-name={job_name}', f'--gres=gpu:{gpus_per_node}',
            f'--ntasks={gpus}', f'--ntasks-per-node={gpus_per_node}',
            f'--cpus-per-task={cpus_per_task}', '--kill-on-bad-exit=1',
            *shlex.split(srun_args), python, '-u', '-m', 'mixedconv.train', config,
            f'--work-dir={work_dir}', '--launcher=slurm', *train_args]


def _env_int(env, name, default):
    value = env.get(name)
    if value in (None, ''):
        return default
    try:
        return int(value)
    except ValueError:
        raise SystemExit(f'error: {name} must be an integer, got {value!r}') from None


def main(argv=None, env=None):
    """Parse ``argv`` and the environment, then exec ``srun`` (never returns on success)."""
    env = os.environ if env is None else env
    p = argparse.ArgumentParser(prog='mixedconv.slurm', usage=USAGE,
                                description='Train a config on Slurm, one task per GPU.')
    p.add_argument('partition')
    p.add_argument('job_name')
    p.add_argument('config')
    p.add_argument('work_dir')
    p.add_argument('train_args', nargs=argparse.REMAINDER)
    args = p.parse_args(argv)
    try:
        cmd = srun_command(args.partition, args.job_name, args.config, args.work_dir,
                           args.train_args,
                           gpus=_env_int(env, 'GPUS', 8),
                           gpus_per_node=_env_int(env, 'GPUS_PER_NODE', None),
                           cpus_per_task=_env_int(env, 'CPUS_PER_TASK', 5),
                           srun_args=env.get('SRUN_ARGS', ''),
                           python=env.get('PYTHON') or sys.executable)
    except ValueError as err:
        raise SystemExit(f'error: {err}') from None
    if shutil.which('srun', path=env.get('PATH')) is None:
        raise SystemExit('error: srun not found on PATH; run this on a Slurm login node, or '
                         'train with python -m mixedconv.train / tools/dist_train.sh')
    os.execvpe('srun', cmd, dict(env))


if __name__ == '__main__':
    main()
