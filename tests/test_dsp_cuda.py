"""CPU/CUDA parity of the chain (forward and gradients) and of the internal ops (skipped
without CUDA), and the device choice (runs everywhere, with the self-check stubbed)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dsp import MasteringChain, integrated_loudness, true_peak
from dsp import _ops

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

FS = 44100


@pytest.fixture(scope="module")
def signal(make_music) -> torch.Tensor:
    a = make_music(FS, 1.0, channels=2, seed=1)
    b = 0.3 * make_music(FS, 1.0, channels=2, seed=2)
    return torch.from_numpy(np.stack([a, b])).float()


def _params(chain: MasteringChain, batch: int, seed: int) -> torch.Tensor:
    return 0.1 + 0.8 * torch.rand(batch, chain.num_params, generator=torch.Generator().manual_seed(seed))


@needs_cuda
@pytest.mark.parametrize("detector", ["rms", "peak"])
@pytest.mark.parametrize("ceiling", [None, -1.0])
def test_chain_forward_parity(signal, detector, ceiling):
    chain = MasteringChain(FS, detector=detector)
    p = _params(chain, 2, 0)
    with torch.no_grad():
        cpu = chain(signal, p, ceiling_dbtp=ceiling)
        gpu = chain.to("cuda")(signal.cuda(), p.cuda(), ceiling_dbtp=ceiling)
    assert gpu.device.type == "cuda" and gpu.dtype == cpu.dtype and gpu.shape == cpu.shape
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-4, atol=1e-4)


@needs_cuda
def test_chain_forward_parity_with_target(signal):
    chain = MasteringChain(FS)
    p = _params(chain, 2, 1)
    with torch.no_grad():
        cpu = chain(signal, p, ceiling_dbtp=-1.0, target_lufs=-14.0)
        gpu = chain.to("cuda")(signal.cuda(), p.cuda(), ceiling_dbtp=-1.0, target_lufs=-14.0).cpu()
    lu_cpu, lu_gpu = integrated_loudness(cpu, FS), integrated_loudness(gpu, FS)
    torch.testing.assert_close(lu_gpu, lu_cpu, rtol=0, atol=0.1)
    assert float((gpu - cpu).norm() / cpu.norm()) < 2e-2
    assert float(true_peak(gpu, FS).max()) <= -1.0 + 0.1


@needs_cuda
@pytest.mark.parametrize("target", [None, -14.0])
def test_chain_gradient_parity(signal, target):
    chain = MasteringChain(FS)
    x = signal[..., : FS // 4].double()
    p = _params(chain, 2, 2).double()
    grads = []
    for device in ("cpu", "cuda"):
        xd = x.to(device).requires_grad_(True)
        pd = p.to(device).requires_grad_(True)
        y = chain.to(device)(xd, pd, ceiling_dbtp=-1.0, target_lufs=target)
        (y.square().mean() + y[..., ::50].sum()).backward()
        grads.append((y.detach().cpu(), xd.grad.cpu(), pd.grad.cpu()))
    (y0, gx0, gp0), (y1, gx1, gp1) = grads
    torch.testing.assert_close(y1, y0, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(gx1, gx0, rtol=1e-5, atol=1e-8)
    torch.testing.assert_close(gp1, gp0, rtol=1e-5, atol=1e-8)


def _rows(seed: int, r: int = 4, n: int = 3000) -> torch.Tensor:
    return torch.randn(r, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@needs_cuda
def test_ops_parity():
    x = _rows(0)
    coef = torch.tensor([[0.9, -1.2, 0.5, -1.1, 0.4]] * 4, dtype=torch.float64)
    a_rise = torch.tensor([0.9, 0.99, 0.5, 0.7], dtype=torch.float64)
    a_fall = torch.tensor([0.1, 0.0, 0.3, 0.6], dtype=torch.float64)
    from dsp.crossover import lr_lowpass_coefficients
    from dsp.width import _lr4_highpass

    split_lo = lr_lowpass_coefficients(torch.tensor([200.0, 900.0], dtype=torch.float64), 44100)
    split_hi = lr_lowpass_coefficients(torch.tensor([3000.0, 6000.0], dtype=torch.float64), 44100)
    side_hp = _lr4_highpass(torch.tensor([120.0, 0.0], dtype=torch.float64), 44100)
    width = torch.tensor([1.3, 0.7], dtype=torch.float64)
    cases = [
        lambda x, dev: _ops.biquad_rows(x, coef.to(dev)),
        lambda x, dev: _ops.smooth_rows(x, a_rise.to(dev), a_fall.to(dev)),
        lambda x, dev: _ops.sliding_min_rows(x, 37),
        lambda x, dev: _ops.moving_average_rows(x, 37),
        # the training path's three-band split and width ops, on the rows as (2, 2, n) stereo
        lambda x, dev: _ops.crossover_split(x.reshape(2, 2, -1), split_lo.to(dev), split_hi.to(dev)),
        lambda x, dev: _ops.stereo_width_op(x.reshape(2, 2, -1), side_hp.to(dev), width.to(dev)),
    ]
    for fn in cases:
        xc = x.clone().requires_grad_(True)
        xg = x.detach().clone().cuda().requires_grad_(True)
        yc, yg = fn(xc, "cpu"), fn(xg, "cuda")
        torch.testing.assert_close(yg.cpu(), yc.detach(), rtol=1e-9, atol=1e-9)
        w = torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        (yc * w).sum().backward()
        (yg * w.cuda()).sum().backward()
        torch.testing.assert_close(xg.grad.cpu(), xc.grad, rtol=1e-9, atol=1e-9)


@needs_cuda
def test_true_peak_envelope_parity():
    x = torch.randn(2, 2, 2000, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    k = np.arange(-5, 7)
    taps = torch.tensor(np.array([np.sinc(p / 4 - k) * np.hanning(14)[1:-1] for p in (1, 2, 3)]), dtype=torch.float64)
    xc = x.clone().requires_grad_(True)
    xg = x.cuda().requires_grad_(True)
    yc = _ops.true_peak_envelope_linked(xc, taps, None)
    yg = _ops.true_peak_envelope_linked(xg, taps.cuda(), None)
    torch.testing.assert_close(yg.cpu(), yc.detach(), rtol=1e-9, atol=1e-9)
    yc.sum().backward()
    yg.sum().backward()
    torch.testing.assert_close(xg.grad.cpu(), xc.grad, rtol=1e-9, atol=1e-9)


@needs_cuda
def test_self_check_passes_on_cuda():
    assert _ops.device_problem("cuda") is None


@needs_cuda
def test_long_row_is_chunked_and_exact():
    """A 3-minute stereo row pair runs as thousands of chunks and matches the CPU kernel."""
    from dsp import _triton_kernels as TK

    n = 180 * FS
    x = torch.randn(2, n, generator=torch.Generator().manual_seed(4))
    coef = torch.tensor([[[1.0, -2.0, 1.0, -1.99, 0.990025], [0.9, -1.2, 0.5, -1.1, 0.4]]] * 2, dtype=torch.float64)
    assert TK.chunk_plan(2, n)[1] > 1000
    with torch.no_grad():
        yc = _ops.biquad_cascade_rows(x, coef)
        yg = _ops.biquad_cascade_rows(x.cuda(), coef.cuda()).cpu()
    assert float((yg - yc).abs().max() / yc.abs().max()) < 1e-5


def test_auto_falls_back_to_cpu_with_one_line(monkeypatch, capsys):
    import automaster.pipeline as P
    import automaster.pipeline.job

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(_ops, "device_problem", lambda device: "RuntimeError: no kernel image")
    monkeypatch.setattr(automaster.pipeline.job, "_noted", set())
    assert P.resolve_device("auto") == torch.device("cpu")
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "using the CPU" in err and "no kernel image" in err


def test_cuda_request_that_cannot_work_is_a_user_error(monkeypatch):
    import automaster.pipeline as P
    from automaster.errors import UserError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(_ops, "device_problem", lambda device: "RuntimeError: no kernel image")
    with pytest.raises(UserError, match="--device cuda cannot be used: RuntimeError: no kernel image"):
        P.resolve_device("cuda")


def test_self_check_reports_a_failure_instead_of_raising(monkeypatch):
    def broken(device):
        raise RuntimeError("triton: no compiler\nsecond line")

    monkeypatch.setattr(_ops, "_self_check", broken)
    monkeypatch.setattr(_ops, "_CHECKED", {})
    assert _ops.device_problem("cuda:7") == "RuntimeError: triton: no compiler"
    assert _ops.device_problem("cpu") is None
