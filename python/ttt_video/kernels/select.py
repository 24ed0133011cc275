"""Which TTT scan runs: ``DiTConfig.ttt_kernel`` / ``TTTBase.kernel`` is "auto", "triton" or "eager".

Nothing here imports Triton unless a Triton scan is asked for or could be used (a CUDA input).
"""

from __future__ import annotations

import functools

import torch

TTT_KERNELS = ("auto", "triton", "eager")
INSTALL_HINT = (
    "install the optional extra: pip install 'ttt-video[triton]' (in a checkout: pip install -e 'python[triton]'), "
    "or choose ttt_kernel='eager'"
)
TRITON_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


@functools.cache
def triton_import_error() -> str | None:
    """None when ``import triton`` works, else the ImportError's message (cached)."""
    try:
        import triton  # noqa: F401
    except ImportError as error:
        return str(error)
    return None


def triton_interpreting() -> bool:
    """Whether Triton kernels defined from now on run in its CPU interpreter (``TRITON_INTERPRET=1``).

    Triton reads the variable when a kernel is defined (``@triton.jit``), so it must be set before
    ``ttt_video.kernels.triton_scan`` is first imported. False when Triton is not installed."""
    if triton_import_error() is not None:
        return False
    from triton import knobs

    return bool(knobs.runtime.interpret)


def require_triton(what: str) -> None:
    """Raise a RuntimeError saying how to install Triton when it cannot be imported."""
    error = triton_import_error()
    if error is not None:
        raise RuntimeError(
            f"{what} needs the Triton package, which cannot be imported ({error}); {INSTALL_HINT}"
        )


def select_ttt_kernel(choice: str, device: torch.device, dtype: torch.dtype) -> str:
    """ "triton" or "eager" for a scan whose inputs are on ``device`` in ``dtype``.

    ``auto``: Triton on CUDA when triton imports and the dtype is fp32/bf16/fp16 (bf16 from sm_80 on),
    else eager (CPU, float64). ``triton``: always Triton, with a clear error where it cannot run. ``eager``: PyTorch.
    """
    if choice not in TTT_KERNELS:
        raise ValueError(f"ttt_kernel must be one of {TTT_KERNELS}, got {choice!r}")
    if choice == "eager":
        return "eager"
    if choice == "auto":
        usable = device.type == "cuda" and dtype in TRITON_DTYPES and triton_import_error() is None
        if usable and dtype == torch.bfloat16:
            usable = torch.cuda.get_device_capability(device)[0] >= 8  # bf16 tl.dot needs sm_80+
        return "triton" if usable else "eager"
    require_triton("ttt_kernel='triton'")
    if dtype not in TRITON_DTYPES:
        raise ValueError(
            f"ttt_kernel='triton' supports {[str(t) for t in TRITON_DTYPES]}, got {dtype}; use ttt_kernel='eager'"
        )
    if device.type != "cuda" and not triton_interpreting():
        raise RuntimeError(
            f"ttt_kernel='triton' needs CUDA tensors, got device {device}; on a CPU it runs only in the Triton "
            "interpreter (TRITON_INTERPRET=1 set before triton is imported, as the tests do); "
            "use ttt_kernel='auto' or 'eager' here"
        )
    return "triton"
