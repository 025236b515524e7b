"""The CUDA implementations of dsp's ops, checked on any machine in Triton's interpreter.

``TRITON_INTERPRET=1`` must be set before triton is imported, hence the subprocess.
There, every public op of dsp._ops runs forward and backward once on the CPU kernels
(numba) and once through ``_ops.triton_on_cpu()`` (the Triton kernels and torch code
that serve CUDA tensors), on small inputs, and the results are compared. The biquad
cascade is also checked against scipy's sosfilt, with rows cut into chunks (the path
long files take on a GPU) and without.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton")  # ships with the Linux torch wheel

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = r"""
import json
import numpy as np
import scipy.signal
import torch
from dsp import _ops
from dsp import _triton_kernels as TK

out = {}
gen = torch.Generator().manual_seed(0)


def rel(a, b):
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def both(fn, *inputs):
    # forward and backward of fn on the CPU kernels and on the Triton path
    results = []
    for triton in (False, True):
        leaves = [t.detach().clone().requires_grad_(t.requires_grad) for t in inputs]
        if triton:
            with _ops.triton_on_cpu():
                y = fn(*leaves)
        else:
            y = fn(*leaves)
        w = torch.randn(y.shape, generator=torch.Generator().manual_seed(1), dtype=y.dtype)
        if triton:
            with _ops.triton_on_cpu():
                (y * w).sum().backward()
        else:
            (y * w).sum().backward()
        results.append([y] + [t.grad for t in leaves if t.requires_grad])
    return results


def compare(name, fn, *inputs):
    cpu, tri = both(fn, *inputs)
    out[name] = max(rel(b, a) for a, b in zip(cpu, tri))


rows, n = 3, 211
x = torch.randn(rows, n, generator=gen, dtype=torch.float64, requires_grad=True)
coef = torch.tensor([[[0.2, 0.4, 0.2, -0.6, 0.25], [1.0, -1.9, 0.95, -1.85, 0.9], [0.9, -1.5, 0.7, -1.6, 0.7]]] * rows,
                    dtype=torch.float64, requires_grad=True)
sos = np.concatenate([coef[0, :, :3].detach().numpy(), np.ones((3, 1)), coef[0, :, 3:].detach().numpy()], axis=1)
ref = torch.from_numpy(scipy.signal.sosfilt(sos, x.detach().numpy(), axis=-1))

for label, (target, min_chunk) in {"whole": (1, 10**9), "chunked": (10**6, 16)}.items():
    TK.TARGET_LANES, TK.MIN_CHUNK = target, min_chunk
    chunk, chunks = TK.chunk_plan(rows, n)
    out[f"chunks_{label}"] = chunks
    compare(f"cascade_{label}", _ops.biquad_cascade_rows, x, coef)
    with _ops.triton_on_cpu():
        out[f"cascade_{label}_vs_scipy"] = rel(_ops.biquad_cascade_rows(x, coef), ref)
        y32 = _ops.biquad_cascade_rows(x.detach().float(), coef.detach())
    out[f"cascade_{label}_float32_vs_scipy"] = rel(y32, ref)
    compare(f"biquad_{label}", _ops.biquad_rows, x, coef[:, 1].detach().clone().requires_grad_(True))

rise = torch.tensor([0.9, 0.99, 0.5], dtype=torch.float64, requires_grad=True)
fall = torch.tensor([0.1, 0.0, 0.3], dtype=torch.float64, requires_grad=True)
compare("smooth", _ops.smooth_rows, x, rise, fall)
compare("smooth_float32", _ops.smooth_rows, x.detach().float().requires_grad_(True), rise, fall)
compare("sliding_max", lambda v: _ops.sliding_max_rows(v, 13), x)
compare("sliding_min_window1", lambda v: _ops.sliding_min_rows(v, 1), x)
compare("moving_average", lambda v: _ops.moving_average_rows(v, 13), x)
compare("moving_average_long_window", lambda v: _ops.moving_average_rows(v, 500), x)

taps = torch.tensor(np.array([np.sinc(p / 4 - np.arange(-5, 7)) * np.hanning(14)[1:-1] for p in (1, 2, 3)]))
xs = torch.randn(2, 2, 600, generator=gen, dtype=torch.float64, requires_grad=True)
compare("true_peak_exact", lambda v: _ops.true_peak_envelope_linked(v, taps, None), xs)
# a floor that only part of the signal reaches: quiet blocks (128 samples) keep their sample peaks
quiet = (xs.detach() * torch.where(torch.arange(600) < 300, 0.01, 1.0)).requires_grad_(True)
floor = torch.tensor([0.5, 0.5], dtype=torch.float64)
compare("true_peak_floor", lambda v: _ops.true_peak_envelope_linked(v, taps, floor), quiet)
with _ops.triton_on_cpu():
    env_fl = _ops.true_peak_envelope_linked(quiet.detach(), taps, floor)
    env_ex = _ops.true_peak_envelope_linked(quiet.detach(), taps, None)
out["floor_changes_quiet_part"] = float((env_ex - env_fl)[:, :200].abs().max())
out["floor_keeps_loud_part"] = float((env_ex - env_fl)[:, 400:].abs().max())

hold = 0.5 + torch.rand(2, 300, generator=gen, dtype=torch.float64)
power = torch.rand(2, 300, generator=gen, dtype=torch.float64)
args = (hold, torch.tensor([1.3, 0.8]), torch.tensor([0.9, 0.7]), torch.tensor([0.99, 0.95], dtype=torch.float64), 9,
        power, 50)
g_cpu, e_cpu = _ops.limiter_pass(*args)
with _ops.triton_on_cpu():
    g_tri, e_tri = _ops.limiter_pass(*args)
out["limiter_pass"] = max(rel(g_tri, g_cpu), rel(e_tri, e_cpu))
y3 = torch.randn(2, 2, 300, generator=gen)
gain = torch.rand(2, 300, generator=gen)
kc = coef[0, :2].detach()
o_cpu, k_cpu = _ops.gain_and_loudness_energy(y3, gain, kc, 50)
with _ops.triton_on_cpu():
    o_tri, k_tri = _ops.gain_and_loudness_energy(y3, gain, kc, 50)
out["gain_and_loudness_energy"] = max(rel(o_tri, o_cpu), rel(k_tri, k_cpu))

# the multiband gain computer + application: output and gain trace, every input's gradient
ramp = torch.linspace(0.01, 1.5, 400, dtype=torch.float64)
bands = (torch.randn(2, 3, 2, 400, generator=gen, dtype=torch.float64) * ramp).requires_grad_(True)
thr = torch.tensor([[-20.0, -12.0, -8.0], [-15.0, -30.0, -6.0]], dtype=torch.float64, requires_grad=True)
slope = torch.tensor([[-0.5, -0.3, -0.7], [-0.2, -0.6, -0.4]], dtype=torch.float64, requires_grad=True)
alpha = torch.tensor([[0.99, 0.8], [0.95, 0.5]], dtype=torch.float64, requires_grad=True)
compare("band_compress", lambda b, t, s, a: torch.cat([o.flatten() for o in _ops.band_compress(b, t, s, a, 6.0, 0.9, 1e-10)]),
        bands, thr, slope, alpha)

# the zero-phase three-band split: bands and the gradients of the audio and both low-passes
from dsp.crossover import lr_lowpass_coefficients
xs3 = torch.randn(2, 2, 300, generator=gen, dtype=torch.float64, requires_grad=True)
lo = lr_lowpass_coefficients(torch.tensor([900.0, 2500.0], dtype=torch.float64), 16000).requires_grad_(True)
hi = lr_lowpass_coefficients(torch.tensor([3000.0, 5000.0], dtype=torch.float64), 16000).requires_grad_(True)
compare("crossover", _ops.crossover_split, xs3, lo, hi)
# stereo width with mono bass: output and the gradients of the audio, the side's high-pass and the width
from dsp.width import _lr4_highpass
hp = _lr4_highpass(torch.tensor([400.0, 0.0], dtype=torch.float64), 16000).requires_grad_(True)
compare("stereo_width", _ops.stereo_width_op, xs3, hp, torch.tensor([1.3, 0.6], dtype=torch.float64, requires_grad=True))
# the device self-check (--device auto) passes when its device side runs the CUDA implementations
out["self_check"] = _ops._self_check(torch.device("cpu"), _ops.triton_on_cpu)
print("RESULT " + json.dumps(out))
"""


@pytest.fixture(scope="module")
def errors() -> dict:
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(ROOT)}
    res = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-4000:]
    line = [ln for ln in res.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def test_chunking_was_exercised(errors):
    assert errors["chunks_whole"] == 1
    assert errors["chunks_chunked"] >= 10


@pytest.mark.parametrize("label", ["whole", "chunked"])
def test_cascade_matches_scipy(errors, label):
    assert errors[f"cascade_{label}_vs_scipy"] < 1e-12
    assert errors[f"cascade_{label}_float32_vs_scipy"] < 1e-5


@pytest.mark.parametrize("name", ["cascade_whole", "cascade_chunked", "biquad_whole", "biquad_chunked", "smooth",
                                  "sliding_max", "sliding_min_window1", "moving_average", "moving_average_long_window",
                                  "true_peak_exact", "true_peak_floor", "limiter_pass", "gain_and_loudness_energy",
                                  "band_compress", "crossover", "stereo_width"])
def test_triton_path_matches_cpu_kernels_float64(errors, name):
    """Forward and every input's gradient, float64."""
    assert errors[name] < 1e-10, f"{name}: relative error {errors[name]}"


def test_triton_path_matches_cpu_kernels_float32(errors):
    assert errors["smooth_float32"] < 1e-6


def test_device_self_check_passes_on_the_cuda_implementations(errors):
    assert errors["self_check"] is None


def test_floor_is_honoured(errors):
    assert errors["floor_changes_quiet_part"] > 0.0  # below the floor only sample peaks are kept
    assert errors["floor_keeps_loud_part"] == 0.0


def test_ops_trace_whole_under_torch_compile():
    """Fake implementations and autograd formulas let torch.compile take the ops in one
    graph (fullgraph: no graph break), forward and backward, with the CPU kernels' results."""
    import numpy as np
    import torch

    from dsp import _ops

    def fn(x, coef, a):
        y = _ops.biquad_cascade_rows(x, coef)
        y = _ops.smooth_rows(y, a, a.flip(0))
        y = _ops.moving_average_rows(_ops.sliding_max_rows(y, 5), 5)
        y = _ops.crossover_split(y.reshape(1, 2, -1), coef[:1, 0], coef[1:, 1]).sum(dim=(0, 1))
        return _ops.true_peak_envelope_linked(y[None], taps, None)

    taps = torch.tensor(np.sinc(np.arange(-5, 7)[None, :] - np.array([[0.25], [0.5], [0.75]])))
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 300, generator=gen, dtype=torch.float64)
    coef = torch.tensor([[[0.2, 0.4, 0.2, -0.6, 0.25], [1.0, -1.9, 0.95, -1.85, 0.9]]] * 2, dtype=torch.float64)
    a = torch.tensor([0.9, 0.3], dtype=torch.float64)
    results = []
    for f in (fn, torch.compile(fn, backend="aot_eager", fullgraph=True)):
        xs, cs = x.clone().requires_grad_(True), coef.clone().requires_grad_(True)
        y = f(xs, cs, a)
        (y * torch.linspace(-1, 1, y.shape[-1], dtype=y.dtype)).sum().backward()
        results.append((y.detach(), xs.grad, cs.grad))
    for eager, compiled in zip(*results):
        torch.testing.assert_close(compiled, eager, rtol=1e-12, atol=1e-12)
