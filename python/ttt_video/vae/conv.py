"""Convolutions of the VAE, routed to oneDNN on CPU in float32.

At batch 1 PyTorch picks its oneDNN (mkldnn) kernel for 3x3x3 convolutions only when
`N * C * T * H` exceeds a size threshold; below it, `slow_conv3d` (im2col + matmul) runs, which was
4.67 s of the 5.25 s CPU time of the tiny demo decode. `VAEConv3d` / `VAEConv2d` call
`torch.mkldnn_convolution` directly for CPU float32 inputs: the same convolution, computed by the fast
kernel (outputs agree with `F.conv3d` to ~1e-6 relative, a different summation order). CUDA, other
dtypes, and builds or settings without oneDNN take the normal `nn.Conv*d` path.

The parameters are the plain `nn.Conv3d` / `nn.Conv2d` ones (`weight`, `bias`), so checkpoints load
unchanged. `fast_cpu` (default True) switches a layer to the normal path; see `set_fast_cpu_convolutions`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def uses_onednn(x: Tensor, weight: Tensor) -> bool:
    """Whether `fast_convolution` hands (x, weight) to oneDNN: CPU float32 with oneDNN available and on."""
    return (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and weight.dtype == torch.float32
        and torch.backends.mkldnn.is_available()
        and torch.backends.mkldnn.enabled
    )


def fast_convolution(conv: nn.Conv2d | nn.Conv3d, x: Tensor) -> Tensor:
    """`conv(x)` (zero padding, groups 1) computed by oneDNN on CPU float32, else by `conv` itself."""
    if not (getattr(conv, "fast_cpu", False) and uses_onednn(x, conv.weight)):
        return conv._conv_forward(x, conv.weight, conv.bias)
    return torch.mkldnn_convolution(
        x.contiguous(),
        conv.weight,
        conv.bias,
        list(conv.padding),
        list(conv.stride),
        list(conv.dilation),
        conv.groups,
    )


def _check_supported(conv: nn.Conv2d | nn.Conv3d) -> None:
    if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
        raise ValueError(
            f"{type(conv).__name__} supports numeric zero padding only, got padding={conv.padding!r}, "
            f"padding_mode={conv.padding_mode!r}"
        )


class _FastCPUConv:
    """The oneDNN route of `VAEConv3d` / `VAEConv2d`, mixed in before `nn.Conv3d` / `nn.Conv2d`."""

    fast_cpu: bool = True

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        _check_supported(self)

    def forward(self, x: Tensor) -> Tensor:
        return fast_convolution(self, x)


class VAEConv3d(_FastCPUConv, nn.Conv3d):
    """`nn.Conv3d` whose CPU float32 forward runs on oneDNN (see the module docstring)."""


class VAEConv2d(_FastCPUConv, nn.Conv2d):
    """`nn.Conv2d` whose CPU float32 forward runs on oneDNN (see the module docstring)."""


def set_fast_cpu_convolutions(module: nn.Module, enabled: bool) -> int:
    """Turn the oneDNN route on or off for every VAEConv3d / VAEConv2d in `module`; returns how many."""
    count = 0
    for layer in module.modules():
        if isinstance(layer, VAEConv3d | VAEConv2d):
            layer.fast_cpu = bool(enabled)
            count += 1
    return count
