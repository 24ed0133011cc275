"""The compiled TTT step (``compile=True``) is traced once per forward, not once more for its first step.

The first mini-batch's state comes from the parameters (an expanded view), every later one from the step's
own outputs; the scan clones the initial state into the later steps' layout so that dynamo's guards hold
for all of them. Without that clone the step compiles twice in every forward. Dynamo runs here with a
counting backend (no code generation), so the test counts traces, not time.
"""

from __future__ import annotations

import pytest
import torch
from torch._dynamo.testing import CompileCounter

from ttt_video.models import TTTVideoDiT, build_config
from ttt_video.models.ttt import TTTBase


@pytest.mark.parametrize("ssm", ["ttt_mlp", "ttt_linear"])
def test_step_is_traced_once_per_grad_mode(ssm, single_thread):
    torch._dynamo.reset()  # the step's code object is shared with other tests' compiled steps
    counter = CompileCounter()
    model = TTTVideoDiT(build_config("tiny", ssm_layer=ssm), seed=0).eval()
    for module in model.modules():
        if isinstance(module, TTTBase):
            module._step = torch.compile(type(module).step, backend=counter, dynamic=False)
    g = torch.Generator().manual_seed(0)
    args = (
        torch.randn(1, 13, 16, 8, 12, generator=g),
        torch.randn(1, 1, 8, 32, generator=g),
        torch.tensor([500.0]),
    )
    with torch.inference_mode():
        want = model(*args)
        model(*args)
    assert counter.frame_count == 1  # both layers, both directions, 20 mini-batches, two forwards
    out = model(*args)  # training: autograd records, a new trace
    out.square().mean().backward()
    assert counter.frame_count == 2
    torch.testing.assert_close(out.detach(), want, rtol=1e-6, atol=1e-6)
    torch._dynamo.reset()
