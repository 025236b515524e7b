"""CUDA twins of :mod:`dsp._cpu_kernels` (numba.cuda, one thread per row).

The recursions are sequential in time, so each row gets one thread; a batch of
stereo excerpts gives ``batch * 2`` threads. Tensors are shared with numba through
``__cuda_array_interface__`` and launched on PyTorch's current stream, so no copy
or host sync happens. Imported only when a CUDA tensor reaches a kernel.
"""

from __future__ import annotations

import math

import torch
from numba import cuda

_THREADS = 64


@cuda.jit(cache=True)
def _biquad_forward(x, coef, y):
    r = cuda.grid(1)
    if r >= x.shape[0]:
        return
    b0 = coef[r, 0]
    b1 = coef[r, 1]
    b2 = coef[r, 2]
    a1 = coef[r, 3]
    a2 = coef[r, 4]
    s1 = 0.0
    s2 = 0.0
    for t in range(x.shape[1]):
        xt = float(x[r, t])
        yt = b0 * xt + s1
        s1 = b1 * xt - a1 * yt + s2
        s2 = b2 * xt - a2 * yt
        y[r, t] = yt


@cuda.jit(cache=True)
def _biquad_backward(x, y, coef, g, dx, dcoef):
    r = cuda.grid(1)
    if r >= x.shape[0]:
        return
    n = x.shape[1]
    b0 = coef[r, 0]
    b1 = coef[r, 1]
    b2 = coef[r, 2]
    a1 = coef[r, 3]
    a2 = coef[r, 4]
    v1 = 0.0
    v2 = 0.0
    db0 = 0.0
    db1 = 0.0
    db2 = 0.0
    da1 = 0.0
    da2 = 0.0
    for i in range(n):
        t = n - 1 - i
        v = float(g[r, t]) - a1 * v1 - a2 * v2
        dx[r, t] = b0 * v + b1 * v1 + b2 * v2
        db0 += v * x[r, t]
        if t >= 1:
            db1 += v * x[r, t - 1]
            da1 -= v * y[r, t - 1]
        if t >= 2:
            db2 += v * x[r, t - 2]
            da2 -= v * y[r, t - 2]
        v2 = v1
        v1 = v
    dcoef[r, 0] = db0
    dcoef[r, 1] = db1
    dcoef[r, 2] = db2
    dcoef[r, 3] = da1
    dcoef[r, 4] = da2


@cuda.jit(cache=True)
def _smoother_forward(x, alpha, y):
    r = cuda.grid(1)
    if r >= x.shape[0]:
        return
    au = alpha[r, 0]
    ad = alpha[r, 1]
    s = float(x[r, 0])
    y[r, 0] = s
    for t in range(1, x.shape[1]):
        xt = float(x[r, t])
        a = au if xt > s else ad
        s = a * s + (1.0 - a) * xt
        y[r, t] = s


@cuda.jit(cache=True)
def _smoother_backward(x, y, alpha, g, dx, dalpha):
    r = cuda.grid(1)
    if r >= x.shape[0]:
        return
    n = x.shape[1]
    au = alpha[r, 0]
    ad = alpha[r, 1]
    v_next = 0.0
    a_next = 0.0
    dau = 0.0
    dad = 0.0
    for i in range(n - 1):
        t = n - 1 - i
        v = float(g[r, t]) + a_next * v_next
        xt = float(x[r, t])
        yp = float(y[r, t - 1])
        rising = xt > yp
        a = au if rising else ad
        dx[r, t] = (1.0 - a) * v
        d = v * (yp - xt)
        if rising:
            dau += d
        else:
            dad += d
        v_next = v
        a_next = a
    dx[r, 0] = float(g[r, 0]) + a_next * v_next
    dalpha[r, 0] = dau
    dalpha[r, 1] = dad


def _launch(kernel, rows: int, *tensors: torch.Tensor) -> None:
    stream = cuda.external_stream(torch.cuda.current_stream().cuda_stream)
    arrays = [cuda.as_cuda_array(t) for t in tensors]
    blocks = max(1, math.ceil(rows / _THREADS))
    kernel[blocks, _THREADS, stream](*arrays)


def biquad_forward(x, coef, y) -> None:
    _launch(_biquad_forward, x.shape[0], x, coef, y)


def biquad_backward(x, y, coef, g, dx, dcoef) -> None:
    _launch(_biquad_backward, x.shape[0], x, y, coef, g, dx, dcoef)


def smoother_forward(x, alpha, y) -> None:
    _launch(_smoother_forward, x.shape[0], x, alpha, y)


def smoother_backward(x, y, alpha, g, dx, dalpha) -> None:
    _launch(_smoother_backward, x.shape[0], x, y, alpha, g, dx, dalpha)
