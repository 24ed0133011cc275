import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


def read_vector(name: str):
    return json.loads((ROOT / "test" / "vectors" / name).read_text(encoding="utf-8"))


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
