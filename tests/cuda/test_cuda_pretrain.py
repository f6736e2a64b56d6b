"""One bf16 AMP step of the ConvMAE and MixedAE pretraining recipes on the GPU."""
import math

import pytest

pytestmark = pytest.mark.cuda


@pytest.mark.parametrize('method', ['convmae', 'mixedae'])
def test_pretraining_step_runs_on_cuda_in_bf16(method, cuda_pretrained, record_property):
    run = cuda_pretrained(method)
    assert run.on_cuda
    assert math.isfinite(run.loss), run.loss
    assert 'bfloat16' in run.layer_dtypes, f'the backbone layers ran in {run.layer_dtypes}'
    record_property('result', f'{method}: loss {run.loss:.3f}, backbone layers '
                    f'{"/".join(sorted(run.layer_dtypes))}')
