"""Train any mmpretrain, mmdet or mmseg config that uses mixedconv components.

A checkout's wrapper of ``python -m mixedconv.train`` (same arguments; see its help).
"""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout

from mixedconv.launch import run_cli  # noqa: E402
from mixedconv.train import main  # noqa: E402

if __name__ == '__main__':
    run_cli(main)
