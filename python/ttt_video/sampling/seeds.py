"""Per-video seeding: each video's noise depends only on ``job.seed`` and its global index.

The reference seeds one stream per rank (``seed + rank``), so a video's noise depends on which prompts
that rank sampled before it (spec 12.25). Here every video gets its own generator:

    video_seed(seed, index) = int.from_bytes(blake2b(b"ttt-video/video-noise/v1:" + f"{seed}:{index}",
                                                    digest_size=8).digest(), "big") & (2**63 - 1)

The initial noise is the generator's first draw; the sampler's step noise follows from the same one.
"""

from __future__ import annotations

import hashlib

import torch

_SEED_DOMAIN = b"ttt-video/video-noise/v1:"
_SEED_MASK = (1 << 63) - 1


def video_seed(seed: int, video_index: int) -> int:
    """A 63-bit seed from ``(job.seed, global video index)``, stable across Python versions and machines."""
    for name, value in (("job.seed", seed), ("video_index", video_index)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, got {value!r}")
    if video_index < 0:
        raise ValueError(f"video_index must be >= 0, got {video_index}")
    digest = hashlib.blake2b(_SEED_DOMAIN + f"{seed}:{video_index}".encode("ascii"), digest_size=8).digest()
    return int.from_bytes(digest, "big") & _SEED_MASK


def video_generator(seed: int, video_index: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A fresh generator for one video. Keep the default CPU device for noise that is identical on
    CPU and CUDA runs; a CUDA generator is faster for the step noise but gives a different stream."""
    generator = torch.Generator(device=device)
    generator.manual_seed(video_seed(seed, video_index))
    return generator


def initial_noise(
    shape: tuple[int, ...] | torch.Size, generator: torch.Generator, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """``x_T``: standard normal float32, always drawn on the CPU, then moved to ``device``."""
    if generator.device.type != "cpu":
        raise ValueError(
            f"initial_noise needs a CPU generator (got one on {generator.device}) so that CPU and CUDA "
            "runs draw the same noise; create it with video_generator(seed, index) (device='cpu')"
        )
    return torch.randn(tuple(shape), generator=generator, dtype=torch.float32).to(device)
