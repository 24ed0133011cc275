"""Triton kernels of the TTT scan forward (spec 5.3, 5.4): one program per (batch, head).

Each program loops over the NM mini-batches and keeps the inner weights in registers in fp32. Matmul
operands are rounded to the input dtype (``q_ptr``'s element type: bf16, fp16 or fp32) and accumulate in
fp32; fp32 operands use IEEE products (no TF32). LayerNorm, the closed-form gradient, GELU and the updates
run in fp32. Tiles are padded to powers of two (at least 16, the smallest ``tl.dot`` tile): padded rows
get learning rate 0, padded columns are masked out of every LayerNorm and stay 0.

Optionally the state at the start of every group of ``GROUP`` mini-batches is written out (for the
backward pass), as the reference kernel does.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _matmul(a, b, INTERPRETED: tl.constexpr):
    """``a @ b`` with fp32 accumulation; ``a``, ``b`` already rounded to the matmul dtype.

    The Triton interpreter (3.8) multiplies bf16 operands as their raw 16-bit patterns, so there the
    rounded operands are widened to fp32 first: the same products (a bf16 x bf16 product is exact in fp32)
    with fp32 accumulation.
    """
    if INTERPRETED:
        a = a.to(tl.float32)
        b = b.to(tl.float32)
    return tl.dot(a, b, input_precision="ieee")


@triton.jit
def _normalize(z, col_mask, D, eps):
    """``(z - mean) / sqrt(var + eps)`` per row over the ``D`` real columns (biased variance); padding -> 0.

    Returns the normalised tile and ``1 / sigma`` per row."""
    z = tl.where(col_mask[None, :], z, 0.0)
    mean = tl.sum(z, axis=1) / D
    centered = tl.where(col_mask[None, :], z - mean[:, None], 0.0)
    inv_std = 1.0 / tl.sqrt(tl.sum(centered * centered, axis=1) / D + eps)
    return centered * inv_std[:, None], inv_std


@triton.jit
def _layer_norm(z, ln_w, ln_b, col_mask, D, eps):
    z_hat, _ = _normalize(z, col_mask, D, eps)
    return ln_w[None, :] * z_hat + ln_b[None, :]


@triton.jit
def _layer_norm_l2_grad(z, target, ln_w, ln_b, col_mask, D, eps):
    """d/dz of ``1/2 ||LN(z) - target||^2`` per row:
    ``(D*ghat - sum(ghat) - zhat*sum(ghat*zhat)) / (D*sigma)``, ``ghat = (LN(z) - target) * gamma``."""
    z_hat, inv_std = _normalize(z, col_mask, D, eps)
    grad_hat = (ln_w[None, :] * z_hat + ln_b[None, :] - target) * ln_w[None, :]
    grad = (
        D * grad_hat - tl.sum(grad_hat, axis=1)[:, None] - z_hat * tl.sum(grad_hat * z_hat, axis=1)[:, None]
    )
    return tl.where(col_mask[None, :], grad * (inv_std / D)[:, None], 0.0)


@triton.jit
def _sigmoid(x):
    return 1.0 / (1.0 + tl.exp(-x))


@triton.jit
def _gelu_tanh(x):
    """``0.5 x (1 + tanh(u))`` = ``x * sigmoid(2u)``, ``u = sqrt(2/pi) (x + 0.044715 x^3)``
    (literals: 2 sqrt(2/pi) = 1.5957691216057308, sqrt(2/pi) = 0.7978845608028654, 3 * 0.044715 = 0.134145)."""
    return x * _sigmoid(1.5957691216057308 * (x + 0.044715 * x * x * x))


@triton.jit
def _gelu_tanh_and_derivative(x):
    """``gelu_tanh(x)`` and ``gelu_tanh'(x) = s + 2 x s (1 - s) u'`` with ``s = sigmoid(2u)`` (spec 5.3's
    formula with ``0.5 (1 + tanh u) = s`` and ``1 - tanh(u)^2 = 4 s (1 - s)``)."""
    s = _sigmoid(1.5957691216057308 * (x + 0.044715 * x * x * x))
    du = 0.7978845608028654 * (1.0 + 0.134145 * x * x)
    return x * s, s + 2.0 * x * s * (1.0 - s) * du


@triton.jit
def _store_matrix(ptr, value, offs_r, offs_c, n_cols, mask):
    tl.store(ptr + offs_r[:, None] * n_cols + offs_c[None, :], value, mask=mask)


@triton.jit
def ttt_linear_scan_kernel(
    q_ptr, k_ptr, y_ptr, out_ptr, eta_ptr,  # (B, H, NM, cs, d) through strides; eta (B, H, NM, cs)
    w1_ptr, b1_ptr, ln_w_ptr, ln_b_ptr,  # fp32 contiguous: (B*H, d, d), (B*H, d), (H, d), (H, d)
    w1_save_ptr, b1_save_ptr,  # fp32 (B*H, NG, d, d), (B*H, NG, d): group-start states
    stride_b, stride_h, stride_m, stride_c,
    eta_stride_b, eta_stride_h, eta_stride_m, eta_stride_c,
    H, NM, CS, D, NG, GROUP, eps,
    BLOCK_CS: tl.constexpr, BLOCK_D: tl.constexpr, SAVE_STATES: tl.constexpr, INTERPRETED: tl.constexpr,
):  # fmt: skip
    """TTT-Linear, ``f(x) = x W1 + b1``: per mini-batch ``G = dl/dZ(K W1 + b1)``,
    ``W1 -= (eta K)^T G``, ``b1 -= sum eta G``, ``out = Q + LN(Q W1 + b1)`` with the updated weights."""
    pid = tl.program_id(0)
    batch, head = pid // H, pid % H
    mm_dtype = q_ptr.dtype.element_ty
    offs_c, offs_d = tl.arange(0, BLOCK_CS), tl.arange(0, BLOCK_D)
    c_mask, d_mask = offs_c < CS, offs_d < D
    tile_mask, dd_mask = c_mask[:, None] & d_mask[None, :], d_mask[:, None] & d_mask[None, :]
    dd_offsets = offs_d[:, None] * D + offs_d[None, :]
    state = pid.to(tl.int64)
    w1 = tl.load(w1_ptr + state * D * D + dd_offsets, mask=dd_mask, other=0.0)
    b1 = tl.load(b1_ptr + state * D + offs_d, mask=d_mask, other=0.0)
    ln_w = tl.load(ln_w_ptr + head * D + offs_d, mask=d_mask, other=0.0)
    ln_b = tl.load(ln_b_ptr + head * D + offs_d, mask=d_mask, other=0.0)
    seq_base = batch.to(tl.int64) * stride_b + head.to(tl.int64) * stride_h
    eta_base = batch.to(tl.int64) * eta_stride_b + head.to(tl.int64) * eta_stride_h
    tile = offs_c[:, None] * stride_c + offs_d[None, :]
    for m in range(0, NM):
        if SAVE_STATES:  # noqa: SIM102 (a compile-time branch around a run-time one)
            if m % GROUP == 0:
                saved = state * NG + m // GROUP
                _store_matrix(w1_save_ptr + saved * D * D, w1, offs_d, offs_d, D, dd_mask)
                tl.store(b1_save_ptr + saved * D + offs_d, b1, mask=d_mask)
        offset = seq_base + tile
        q = tl.load(q_ptr + offset, mask=tile_mask, other=0.0)
        k = tl.load(k_ptr + offset, mask=tile_mask, other=0.0)
        y = tl.load(y_ptr + offset, mask=tile_mask, other=0.0).to(tl.float32)
        eta = tl.load(eta_ptr + eta_base + offs_c * eta_stride_c, mask=c_mask, other=0.0).to(tl.float32)

        z = _matmul(k, w1.to(mm_dtype), INTERPRETED) + b1[None, :]
        grad = _layer_norm_l2_grad(z, y, ln_w, ln_b, d_mask, D, eps)
        scaled_k = (eta[:, None] * k.to(tl.float32)).to(mm_dtype)
        w1 = w1 - _matmul(tl.trans(scaled_k), grad.to(mm_dtype), INTERPRETED)
        b1 = b1 - tl.sum(eta[:, None] * grad, axis=0)

        z_q = _matmul(q, w1.to(mm_dtype), INTERPRETED) + b1[None, :]
        out = q.to(tl.float32) + _layer_norm(z_q, ln_w, ln_b, d_mask, D, eps)
        tl.store(out_ptr + offset, out.to(out_ptr.dtype.element_ty), mask=tile_mask)
        seq_base += stride_m  # int64: no overflow on long sequences
        eta_base += eta_stride_m


@triton.jit
def ttt_mlp_scan_kernel(
    q_ptr, k_ptr, y_ptr, out_ptr, eta_ptr,  # (B, H, NM, cs, d) through strides; eta (B, H, NM, cs)
    w1_ptr, b1_ptr, w2_ptr, b2_ptr, ln_w_ptr, ln_b_ptr,  # fp32: (B*H, d, h), (B*H, h), (B*H, h, d), (B*H, d)
    w1_save_ptr, b1_save_ptr, w2_save_ptr, b2_save_ptr,  # fp32 group-start states, (B*H, NG, ...)
    stride_b, stride_h, stride_m, stride_c,
    eta_stride_b, eta_stride_h, eta_stride_m, eta_stride_c,
    H, NM, CS, D, HID, NG, GROUP, eps,
    BLOCK_CS: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_HID: tl.constexpr,
    SAVE_STATES: tl.constexpr, INTERPRETED: tl.constexpr,
):  # fmt: skip
    """TTT-MLP, ``f(x) = gelu_tanh(x W1 + b1) W2 + b2`` (spec 5.3); G1 uses the old W2."""
    pid = tl.program_id(0)
    batch, head = pid // H, pid % H
    mm_dtype = q_ptr.dtype.element_ty
    offs_c, offs_d, offs_h = tl.arange(0, BLOCK_CS), tl.arange(0, BLOCK_D), tl.arange(0, BLOCK_HID)
    c_mask, d_mask, h_mask = offs_c < CS, offs_d < D, offs_h < HID
    tile_mask = c_mask[:, None] & d_mask[None, :]
    dh_mask, hd_mask = d_mask[:, None] & h_mask[None, :], h_mask[:, None] & d_mask[None, :]
    state = pid.to(tl.int64)
    w1 = tl.load(w1_ptr + state * D * HID + offs_d[:, None] * HID + offs_h[None, :], mask=dh_mask, other=0.0)
    b1 = tl.load(b1_ptr + state * HID + offs_h, mask=h_mask, other=0.0)
    w2 = tl.load(w2_ptr + state * HID * D + offs_h[:, None] * D + offs_d[None, :], mask=hd_mask, other=0.0)
    b2 = tl.load(b2_ptr + state * D + offs_d, mask=d_mask, other=0.0)
    ln_w = tl.load(ln_w_ptr + head * D + offs_d, mask=d_mask, other=0.0)
    ln_b = tl.load(ln_b_ptr + head * D + offs_d, mask=d_mask, other=0.0)
    seq_base = batch.to(tl.int64) * stride_b + head.to(tl.int64) * stride_h
    eta_base = batch.to(tl.int64) * eta_stride_b + head.to(tl.int64) * eta_stride_h
    tile = offs_c[:, None] * stride_c + offs_d[None, :]
    for m in range(0, NM):
        if SAVE_STATES:  # noqa: SIM102 (a compile-time branch around a run-time one)
            if m % GROUP == 0:
                saved = state * NG + m // GROUP
                _store_matrix(w1_save_ptr + saved * D * HID, w1, offs_d, offs_h, HID, dh_mask)
                tl.store(b1_save_ptr + saved * HID + offs_h, b1, mask=h_mask)
                _store_matrix(w2_save_ptr + saved * HID * D, w2, offs_h, offs_d, D, hd_mask)
                tl.store(b2_save_ptr + saved * D + offs_d, b2, mask=d_mask)
        offset = seq_base + tile
        q = tl.load(q_ptr + offset, mask=tile_mask, other=0.0)
        k = tl.load(k_ptr + offset, mask=tile_mask, other=0.0)
        y = tl.load(y_ptr + offset, mask=tile_mask, other=0.0).to(tl.float32)
        eta = tl.load(eta_ptr + eta_base + offs_c * eta_stride_c, mask=c_mask, other=0.0).to(tl.float32)
        z1 = _matmul(k, w1.to(mm_dtype), INTERPRETED) + b1[None, :]
        x2, gelu_grad = _gelu_tanh_and_derivative(z1)
        z2 = _matmul(x2.to(mm_dtype), w2.to(mm_dtype), INTERPRETED) + b2[None, :]
        grad2 = _layer_norm_l2_grad(z2, y, ln_w, ln_b, d_mask, D, eps)
        grad1 = _matmul(grad2.to(mm_dtype), tl.trans(w2).to(mm_dtype), INTERPRETED) * gelu_grad
        scaled_x2 = (eta[:, None] * x2).to(mm_dtype)
        w2 = w2 - _matmul(tl.trans(scaled_x2), grad2.to(mm_dtype), INTERPRETED)
        b2 = b2 - tl.sum(eta[:, None] * grad2, axis=0)
        scaled_k = (eta[:, None] * k.to(tl.float32)).to(mm_dtype)
        w1 = w1 - _matmul(tl.trans(scaled_k), grad1.to(mm_dtype), INTERPRETED)
        b1 = b1 - tl.sum(eta[:, None] * grad1, axis=0)

        x2_q = _gelu_tanh(_matmul(q, w1.to(mm_dtype), INTERPRETED) + b1[None, :])
        z2_q = _matmul(x2_q.to(mm_dtype), w2.to(mm_dtype), INTERPRETED) + b2[None, :]
        out = q.to(tl.float32) + _layer_norm(z2_q, ln_w, ln_b, d_mask, D, eps)
        tl.store(out_ptr + offset, out.to(out_ptr.dtype.element_ty), mask=tile_mask)
        seq_base += stride_m  # int64: no overflow on long sequences
        eta_base += eta_stride_m
