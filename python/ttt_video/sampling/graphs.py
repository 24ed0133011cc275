"""CUDA graphs for sampling: the DiT forward of a denoising step recorded once per input shape, then replayed.

Every denoising step of a video calls the velocity model with the same shapes, so its kernels can be
recorded once into a CUDA graph and replayed with one launch, instead of the thousands of launches from
Python that one forward issues (the eager TTT scan alone issues a few dozen per mini-batch).

``GraphedModel(model, recorder)`` has the velocity model's signature ``(latents, text, timesteps) -> v``.
Per input signature (shapes, dtypes, inference mode) it keeps static input buffers on the model's device
and a recording. A call copies the inputs into the buffers, replays, and returns a copy of the static
output (the next replay overwrites it, and ``cfg_batch = false`` calls the model twice per step). The first
call of a signature runs the model once on the buffers (warm-up: lazy initialisation, Triton compilation,
the DiT's sequence plan), records, and returns the warm-up's output.

How a recording is made is the ``recorder``: ``cuda_graph_recorder`` captures a ``torch.cuda.CUDAGraph``;
``eager_recorder`` (CPU) "replays" by calling the model on the buffers into a fixed output tensor, so the
buffer, copy and cache code is the same on both, and CPU tests exercise it.

``cuda_graphs_enabled`` decides ``eval.cuda_graphs`` ("auto" | true | false) for a run.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

Run = Callable[[], torch.Tensor]
"""The model applied to the static input buffers; returns its output."""
Replay = Callable[[], torch.Tensor]
"""Runs the recording again; returns the static output tensor (the same tensor every time)."""
Recorder = Callable[[Run], tuple[torch.Tensor, Replay]]
"""``recorder(run) -> (output of a first run, replay)``."""


def eager_recorder(run: Run) -> tuple[torch.Tensor, Replay]:
    """No graph: a replay calls ``run`` and writes its result into one fixed output tensor, as a graph
    replay overwrites its static output. For CPUs and for testing the wrapper without CUDA."""
    static_output = run()
    first = static_output.clone()

    def replay() -> torch.Tensor:
        static_output.copy_(run())
        return static_output

    return first, replay


def cuda_graph_recorder(warmup: int = 1) -> Recorder:
    """Records ``run`` into a CUDA graph after ``warmup`` eager runs on a side stream (as PyTorch's CUDA
    graph notes require). The caching allocator's blocks freed by the warm-up are returned to the driver
    before the capture, so that the graph's private memory pool does not come on top of them."""
    if warmup < 1:
        raise ValueError(f"cuda_graph_recorder: warmup must be at least 1, got {warmup}")

    def record(run: Run) -> tuple[torch.Tensor, Replay]:
        current = torch.cuda.current_stream()
        side = torch.cuda.Stream()
        side.wait_stream(current)
        with torch.cuda.stream(side):
            for _ in range(warmup):
                first = run()
        current.wait_stream(side)
        first.record_stream(current)
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        graph = torch.cuda.CUDAGraph()
        # thread_local: NCCL's watchdog thread (CFG parallelism) may query events while this thread captures
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            static_output = run()

        def replay() -> torch.Tensor:
            graph.replay()
            return static_output

        return first, replay

    return record


@dataclass
class Recording:
    """One input signature's static buffers, its replay, and what the recording reads but does not own."""

    inputs: tuple[torch.Tensor, ...]
    replay: Replay
    pinned: Any  # e.g. the DiT's sequence plan: its index and RoPE tensors are read by the recorded kernels


def _signature(inputs: tuple[torch.Tensor, ...]) -> tuple:
    return (
        tuple((tuple(t.shape), t.dtype) for t in inputs),
        torch.is_inference_mode_enabled(),
    )


class GraphedModel:
    """A velocity model ``(latents (B,T,C,H,W), text (B,n,L,D), timesteps (B,)) -> v`` that replays a
    recording of ``model`` per input signature (see the module docstring).

    ``max_recordings`` bounds the signatures kept (default 1: a sampling run has one video length and one
    batch layout); the oldest is dropped first, and with it its graph's memory pool. Gradients are refused:
    a recording holds no autograd graph.
    """

    def __init__(
        self, model: Any, recorder: Recorder, device: torch.device, *, max_recordings: int = 1
    ) -> None:
        if max_recordings < 1:
            raise ValueError(f"GraphedModel: max_recordings must be at least 1, got {max_recordings}")
        self.model = model
        self.recorder = recorder
        self.device = torch.device(device)
        self.max_recordings = max_recordings
        self._recordings: OrderedDict[tuple, Recording] = OrderedDict()
        self.recorded = 0  # recordings made so far (a new signature, or one dropped and seen again)

    def __call__(self, latents: torch.Tensor, text: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():
            raise RuntimeError(
                "GraphedModel replays a recorded forward without autograd; call it under torch.inference_mode() "
                "or torch.no_grad() (sampling does), or use the model itself for training"
            )
        inputs = (latents, text, timesteps)
        key = _signature(inputs)
        recording = self._recordings.get(key)
        if recording is None:
            return self._record(key, inputs)
        self._recordings.move_to_end(key)
        for buffer, value in zip(recording.inputs, inputs, strict=True):
            buffer.copy_(value)
        return recording.replay().clone()

    def _record(self, key: tuple, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
        while len(self._recordings) >= self.max_recordings:
            self._recordings.popitem(last=False)
        buffers = tuple(t.to(self.device, copy=True) for t in inputs)
        first, replay = self.recorder(lambda: self.model(*buffers))
        self._recordings[key] = Recording(buffers, replay, self._pin(buffers))
        self.recorded += 1
        return first

    def _pin(self, buffers: tuple[torch.Tensor, ...]) -> Any:
        """The DiT's sequence plan for these inputs (built by the first run): its cache keeps only the
        latest few, and a recording must keep the tensors it reads alive."""
        plan_of = getattr(self.model, "sequence_plan", None)
        if plan_of is None:
            return None
        weight = self.model.patch_embedding.vid_proj.weight
        return plan_of(self.model.layout_for(*buffers), weight.device, weight.dtype)

    def release(self) -> None:
        """Drops every recording (and so the graphs' memory); the next call records again."""
        self._recordings.clear()

    @property
    def signatures(self) -> list[tuple]:
        return list(self._recordings)


def cuda_graphs_enabled(setting: str | bool, device: torch.device, sharded: bool) -> bool:
    """Whether sampling replays CUDA graphs, for ``eval.cuda_graphs`` = ``setting``.

    ``"auto"``: on for a CUDA device with an unsharded DiT, off otherwise. ``True`` where graphs cannot be
    used (a CPU, or a DiT sharded by tensor parallelism or FSDP, whose forward runs collectives) is a
    CONFIG error; ``False`` is always off. CFG parallelism is fine: each rank records its own branch and the
    exchange of the two predictions stays outside the graph.
    """
    if setting not in ("auto", True, False):
        raise _config_error(f'must be "auto", true or false, got {setting!r}')
    if setting is False:
        return False
    if device.type != "cuda":
        if setting is True:
            raise _config_error(
                f"is true but the run is on {device.type}; CUDA graphs need a CUDA device. "
                'Set eval.cuda_graphs = "auto" (on for CUDA, off elsewhere) or false'
            )
        return False
    if sharded:
        if setting is True:
            raise _config_error(
                "is true but the DiT is sharded (parallelism.tp_sharding or dp_sharding > 1), and a sharded "
                'forward runs collectives that are not recorded. Set eval.cuda_graphs = "auto" or false'
            )
        return False
    return True


def _config_error(message: str) -> Exception:
    # imported here: the config contract needs jsonschema, which the sampling math does not
    from ..contracts.config import ConfigError, Issue

    return ConfigError([Issue("eval.cuda_graphs", message)])
