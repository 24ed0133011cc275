import json
import os
import pickle
from pathlib import Path

import pytest
import tomli_w
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


def write_config(run: Path, config: dict[str, dict], **overrides: dict) -> None:
    """Writes ``config`` (sections of fields), each section of ``overrides`` merged in, as run/config.toml."""
    for section, values in overrides.items():
        config.setdefault(section, {}).update(values)
    (run / "config.toml").write_text(tomli_w.dumps(config))


@pytest.fixture
def no_unpickling(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fails the test if anything unpickles: torch.load, pickle.load and pickle.loads raise."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("something unpickled during the test")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)


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
