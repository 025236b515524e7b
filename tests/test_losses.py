"""Losses and metrics: zero on identical audio, positive otherwise, finite gradients."""

from __future__ import annotations

import math

import pytest
import torch

from train.losses import MasteringLoss, loudness_loss, param_loss
from train.metrics import METRIC_NAMES, mel_distance, mrstft, quality_metrics

SR = 16000


def _audio(seed: int = 0, batch: int = 2, seconds: float = 0.5) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    n = int(SR * seconds)
    t = torch.arange(n) / SR
    tone = 0.3 * torch.sin(2 * math.pi * 440 * t) + 0.1 * torch.sin(2 * math.pi * 3000 * t)
    noise = 0.05 * torch.randn(batch, 2, n, generator=g)
    return (tone + noise).float()


def test_mrstft_zero_for_identical_and_positive_otherwise() -> None:
    x = _audio()
    assert torch.allclose(mrstft(x, x.clone()), torch.zeros(2), atol=1e-6)
    assert (mrstft(0.5 * x, x) > 0.1).all()
    assert (mrstft(x + 0.05 * torch.randn_like(x), x) > 0).all()


def test_mrstft_gradient_finite_even_for_silence() -> None:
    x = _audio()
    for pred in (x * 0.7, torch.zeros_like(x)):
        pred = pred.clone().requires_grad_()
        mrstft(pred, x).mean().backward()
        assert torch.isfinite(pred.grad).all()
    assert pred.grad is not None  # digital silence: finite (zero) gradient, no NaN


def test_loudness_loss_is_differentiable() -> None:
    x = _audio()
    gain = torch.tensor(0.5, requires_grad=True)
    loss = loudness_loss(gain * x, x, SR)
    assert loss.item() == pytest.approx(20 * math.log10(2), abs=0.05)
    loss.backward()
    assert torch.isfinite(gain.grad) and gain.grad < 0  # louder -> smaller loss
    assert loudness_loss(x, x.clone(), SR).item() == pytest.approx(0.0, abs=1e-4)


def test_param_loss_masks_items() -> None:
    pred = torch.full((2, 3), 0.5, requires_grad=True)
    target = torch.tensor([[0.5, 0.5, 0.5], [1.0, float("nan"), 0.0]])
    mask = torch.tensor([[True, True, True], [False, False, False]])
    loss = param_loss(pred, target, mask)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(pred.grad).all()
    full = param_loss(pred, target, torch.tensor([[True] * 3, [True, True, True]]))
    assert full.item() == pytest.approx((0.25 + 0.25) / 6)  # NaN target skipped; divided by batch * n


def test_mastering_loss_parts() -> None:
    x = _audio()
    loss_fn = MasteringLoss(SR, loudness_weight=0.1, param_weight=1.0, fft_sizes=(256, 512))
    pred = (0.8 * x).requires_grad_()
    p = torch.rand(2, 4, requires_grad=True)
    total, parts = loss_fn(pred, x, p, torch.rand(2, 4), torch.ones(2, 4, dtype=torch.bool))
    assert set(parts) == {"mrstft", "loudness", "params"}
    total.backward()
    assert torch.isfinite(pred.grad).all() and torch.isfinite(p.grad).all()
    zero, _ = loss_fn(x, x.clone())
    assert zero.item() == pytest.approx(0.0, abs=1e-4)


def test_quality_metrics_values() -> None:
    x = _audio()
    same = quality_metrics(x, x.clone(), SR)
    assert set(same) == set(METRIC_NAMES)
    for name, v in same.items():
        assert v.shape == (2,)
        assert torch.allclose(v, torch.zeros(2), atol=1e-3), name
    half = quality_metrics(0.5 * x, x, SR)
    assert torch.allclose(half["rms"], torch.full((2,), 20 * math.log10(2)), atol=1e-3)
    assert torch.allclose(half["lufs"], torch.full((2,), 20 * math.log10(2)), atol=0.05)
    assert torch.allclose(half["crest"], torch.zeros(2), atol=1e-3)
    assert torch.allclose(half["centroid"], torch.zeros(2), atol=1e-2)
    assert (half["mel"] > 5.5).all() and (half["mrstft"] > 0).all()
    assert (mel_distance(x, x, SR) == 0).all()
