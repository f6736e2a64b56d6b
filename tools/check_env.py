"""Print the environment report of ``mixedconv.env`` and exit non-zero on a problem."""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout

from mixedconv.env import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
