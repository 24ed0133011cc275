"""Fused kernels. Importing this package does not import Triton; ``ttt_scan_triton`` does, on first use."""

from __future__ import annotations

from .select import TTT_KERNELS, require_triton, select_ttt_kernel, triton_import_error, triton_interpreting


def ttt_scan_triton(*args, **kwargs):
    """The fused Triton TTT scan (``ttt_video.kernels.triton_scan.ttt_scan_triton``), imported on first use.

    Same arguments and result as ``ttt_video.models.ttt_scan`` without ``step`` (the inner model is read
    from the number of state tensors: 2 = TTT-Linear, 4 = TTT-MLP).
    """
    require_triton("the Triton TTT scan")
    from .triton_scan import ttt_scan_triton as scan

    return scan(*args, **kwargs)


__all__ = [
    "TTT_KERNELS",
    "require_triton",
    "select_ttt_kernel",
    "triton_import_error",
    "triton_interpreting",
    "ttt_scan_triton",
]
