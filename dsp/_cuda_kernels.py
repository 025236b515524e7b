"""CUDA twins of :mod:`dsp._cpu_kernels` (numba.cuda, one thread per row).

The recursions (:mod:`dsp._recursions`, shared with the CPU kernels) are sequential
in time, so each row gets one thread; a batch of
stereo excerpts gives ``batch * 2`` threads. Tensors are shared with numba through
``__cuda_array_interface__`` and launched on PyTorch's current stream, so no copy
or host sync happens. Imported only when a CUDA tensor reaches a kernel.
"""

from __future__ import annotations

import math

import torch
from numba import cuda

from dsp import _recursions as R

_THREADS = 64


_biquad_fwd_row = cuda.jit(device=True)(R.biquad_forward_row)
_biquad_bwd_row = cuda.jit(device=True)(R.biquad_backward_row)
_smoother_fwd_row = cuda.jit(device=True)(R.smoother_forward_row)
_smoother_bwd_row = cuda.jit(device=True)(R.smoother_backward_row)


@cuda.jit(cache=True)
def _biquad_forward(x, coef, y):
    r = cuda.grid(1)
    if r < x.shape[0]:
        _biquad_fwd_row(x, coef, y, r)


@cuda.jit(cache=True)
def _biquad_backward(x, y, coef, g, dx, dcoef):
    r = cuda.grid(1)
    if r < x.shape[0]:
        _biquad_bwd_row(x, y, coef, g, dx, dcoef, r)


@cuda.jit(cache=True)
def _smoother_forward(x, alpha, y):
    r = cuda.grid(1)
    if r < x.shape[0]:
        _smoother_fwd_row(x, alpha, y, r)


@cuda.jit(cache=True)
def _smoother_backward(x, y, alpha, g, dx, dalpha):
    r = cuda.grid(1)
    if r < x.shape[0]:
        _smoother_bwd_row(x, y, alpha, g, dx, dalpha, r)


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
