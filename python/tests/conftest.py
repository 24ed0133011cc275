import json
import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]

# Without CUDA the Triton kernels run in Triton's interpreter (numpy on the CPU). Triton reads this when a
# kernel is defined, so it is set here, before any test module imports ttt_video.kernels.triton_scan; it
# changes nothing for code that does not use Triton (the eager path never imports it).
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


def read_vector(name: str):
    return json.loads((ROOT / "test" / "vectors" / name).read_text(encoding="utf-8"))


def read_cases(name: str) -> list[dict]:
    """A bad-input corpus of test/vectors: one case a line, each with the expected error code and field."""
    text = (ROOT / "test" / "vectors" / name).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory) -> Path:
    from ttt_video.demo.tiny_bundle import make_tiny_bundle

    return make_tiny_bundle(tmp_path_factory.mktemp("bundle") / "tiny", seed=0)


@pytest.fixture
def single_thread():
    """One torch thread for the test: on two shared cores tiny matmuls are much faster without the pool."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
