"""The fused MRSTFT distance (train/_stft_loss.py) against a plain torch.stft + autograd
reference written here, on both of its CPU code paths (numba kernels, and the pure-torch
one that CUDA uses)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import train._stft_loss as fast
from train.metrics import mrstft

EXAMPLE = Path(__file__).resolve().parents[1] / "automaster" / "examples" / "example.ogg"


def _ref_mrstft(pred, target, fft_sizes, sc_weight=1.0, logmag_weight=1.0):
    """The definition, straight through torch.stft (dtype kept, so float64 stays float64)."""
    total = 0.0
    for n_fft in fft_sizes:

        def mag(x):
            b, c, n = x.shape
            flat = x.reshape(b * c, n)
            if n < n_fft:
                flat = torch.nn.functional.pad(flat, (0, n_fft - n))
            spec = torch.stft(
                flat, n_fft, hop_length=n_fft // 4, window=torch.hann_window(n_fft, dtype=x.dtype),
                center=True, pad_mode="constant", return_complex=True,
            )
            return torch.sqrt(spec.real**2 + spec.imag**2 + 1e-14).reshape(b, -1)

        p, t = mag(pred), mag(target)
        sc = (t - p).norm(dim=1) / t.norm(dim=1).clamp_min(1e-7)
        logmag = (torch.log(t) - torch.log(p)).abs().mean(dim=1)
        total = total + sc_weight * sc + logmag_weight * logmag
    return total / len(fft_sizes)


@pytest.fixture(params=["numba", "torch"])
def backend(request, monkeypatch):
    monkeypatch.setattr(fast, "_NUMBA_ON_CPU", request.param == "numba")
    return request.param


def _pair(shape, dtype, seed):
    """Noise-like target with silent stretches; pred = target + noise, with its own silence."""
    g = torch.Generator().manual_seed(seed)
    t = 0.2 * torch.randn(*shape, generator=g, dtype=torch.float64)
    t[..., : shape[-1] // 5] = 0.0  # exact zeros: the 1e-14 floor decides those bins
    p = 0.8 * t + 0.05 * torch.randn(*shape, generator=g, dtype=torch.float64)
    p[..., -(shape[-1] // 7):] = 0.0
    return p.to(dtype), t.to(dtype)


CASES = [
    ((1, 1, 5000), (512, 1024, 2048)),
    ((3, 2, 4000), (512, 1024, 2048)),
    ((2, 1, 300), (512, 1024)),  # shorter than a window: padded to one first
    ((1, 2, 100), (512,)),  # shorter than a hop
    ((3, 2, 1000), (64, 90, 63)),  # hop 22 does not divide 90; odd 63
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("shape,sizes", CASES, ids=[f"{s}-{z}" for s, z in CASES])
def test_values_match_stft_reference(backend, dtype, shape, sizes) -> None:
    p, t = _pair(shape, dtype, seed=len(sizes) + shape[-1])
    got = mrstft(p, t, sizes)
    want = _ref_mrstft(p, t, sizes)
    assert got.dtype == dtype and got.shape == (shape[0],)
    rtol = 1e-5 if dtype == torch.float32 else 1e-10
    torch.testing.assert_close(got, want, rtol=rtol, atol=0.0)
    # the two terms weighted differently: a swapped or dropped term shows here
    got = mrstft(p, t, sizes, sc_weight=0.3, logmag_weight=2.0)
    torch.testing.assert_close(got, _ref_mrstft(p, t, sizes, 0.3, 2.0), rtol=rtol, atol=0.0)


def test_gradcheck_float64(backend) -> None:
    g = torch.Generator().manual_seed(1)
    t = torch.randn(2, 2, 700, generator=g, dtype=torch.float64)
    p = (0.7 * t + 0.3 * torch.randn(2, 2, 700, generator=g, dtype=torch.float64)).requires_grad_()
    weights = torch.tensor([0.6, -1.3], dtype=torch.float64)  # per-item upstream gradient
    fn = lambda x: mrstft(x, t, (64, 128), sc_weight=0.7, logmag_weight=1.5) * weights  # noqa: E731
    assert torch.autograd.gradcheck(fn, (p,), eps=1e-6, atol=1e-7, rtol=1e-5, fast_mode=True)
    small = p[:1, :, :160].detach().clone().requires_grad_()  # the full Jacobian on a smaller input
    assert torch.autograd.gradcheck(lambda x: mrstft(x, t[:1, :, :160], (32, 64)), (small,), eps=1e-6, atol=1e-7)


def _music(seconds: float) -> torch.Tensor:
    audio, sr = sf.read(str(EXAMPLE), dtype="float32", always_2d=True)
    start = int(5 * sr)
    return torch.from_numpy(np.ascontiguousarray(audio[start: start + int(seconds * sr)].T))


def test_gradient_matches_autograd_reference_on_music(backend) -> None:
    x = _music(1.5)
    target = torch.stack([x, 0.5 * x.flip(0)])  # (2, 2, n): two different items
    g = torch.Generator().manual_seed(3)
    # a softer, slightly noisy, low-passed version, as a network's output might be
    smooth = torch.nn.functional.avg_pool1d(target, 5, stride=1, padding=2, count_include_pad=False)
    pred = 0.7 * smooth + 0.003 * torch.randn(target.shape, generator=g)
    weights = torch.tensor([1.0, 0.25])
    a = pred.clone().requires_grad_()
    (mrstft(a, target) * weights).sum().backward()
    b = pred.clone().requires_grad_()
    (_ref_mrstft(b, target, (512, 1024, 2048)) * weights).sum().backward()
    for i in range(2):
        err = (a.grad[i] - b.grad[i]).norm() / b.grad[i].norm()
        assert err < 1e-4, (i, float(err))
    assert float((a.grad * b.grad).sum()) > 0


def test_zero_value_and_gradient_for_identical_inputs(backend) -> None:
    x = _music(0.5).unsqueeze(0)
    p = x.clone().requires_grad_()
    value = mrstft(p, x)
    value.sum().backward()
    assert float(value.detach()) == 0.0
    assert torch.count_nonzero(p.grad) == 0


def test_silent_pred_gives_finite_gradient(backend) -> None:
    x = _music(0.3).unsqueeze(0)
    p = torch.zeros_like(x, requires_grad=True)
    value = mrstft(p, x)
    value.sum().backward()
    want = _ref_mrstft(torch.zeros_like(x), x, (512, 1024, 2048))
    torch.testing.assert_close(value, want, rtol=1e-5, atol=0.0)
    assert torch.isfinite(p.grad).all()


def test_target_needing_a_gradient_gets_one() -> None:
    p, t = _pair((2, 2, 3000), torch.float32, seed=9)
    t.requires_grad_()
    p.requires_grad_()
    mrstft(p, t).sum().backward()
    p2, t2 = p.detach().clone().requires_grad_(), t.detach().clone().requires_grad_()
    _ref_mrstft(p2, t2, (512, 1024, 2048)).sum().backward()
    torch.testing.assert_close(t.grad, t2.grad, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(p.grad, p2.grad, rtol=1e-4, atol=1e-7)


def test_no_graph_without_grad() -> None:
    p, t = _pair((2, 1, 3000), torch.float32, seed=2)
    assert mrstft(p, t).grad_fn is None
    p.requires_grad_()
    with torch.no_grad():
        assert mrstft(p, t).grad_fn is None
    assert mrstft(p, t).grad_fn is not None


def test_import_does_not_load_numba() -> None:
    code = "import sys, train.metrics, train.losses; print('numba' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert out.stdout.strip() == "False"
