"""Fixtures of the CUDA tests: the real pretraining recipes, shrunk, trained for one bf16 AMP
step on the GPU; their checkpoints are what the transfer tests load."""
import pytest
from cuda_runs import pretrain_on_cuda


@pytest.fixture(scope='session')
def cuda_pretrained(imagenet_root, tmp_path_factory):
    """``method`` (a key of ``PRETRAIN_CONFIGS``) -> its :class:`cuda_runs.PretrainRun`, run
    on first request."""
    runs = {}

    def get(method):
        if method not in runs:
            work_dir = str(tmp_path_factory.mktemp(f'pretrain_{method}'))
            runs[method] = pretrain_on_cuda(method, imagenet_root, work_dir)
        return runs[method]
    return get

