"""4x-oversampled true-peak measurement (ITU-R BS.1770-4, Annex 2).

The interpolator is a Kaiser-windowed sinc split into four phases, defined once in
``dsp._bs1770`` and shared by the limiter and the report meters (``automaster.metering``).
Phase 0 is the sample itself (a Nyquist filter), so only the three in-between phases are filtered,
with one ``conv1d``: fast on both CPU and CUDA and differentiable by autograd.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dsp._bs1770 import KAISER_BETA, OVERSAMPLING, TAPS_PER_PHASE, TP_AFTER, TP_BEFORE, interpolation_kernel  # noqa: F401

_CACHE: dict[tuple, torch.Tensor] = {}


def _weight(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    key = (device, dtype)
    w = _CACHE.get(key)
    if w is None:
        # conv1d correlates: out[n] = sum_j w[j] in[n + j - pad]; order taps by input offset
        w = torch.as_tensor(interpolation_kernel(), dtype=dtype, device=device)[:, None, :]
        _CACHE[key] = w
    return w


def interpolate_phases(x: torch.Tensor) -> torch.Tensor:
    """In-between samples of each channel: x (batch, channels, n) -> (batch, channels, 3, n).

    Entry [..., p-1, n] is the band-limited value at time n + p/4.
    """
    b, c, n = x.shape
    rows = x.reshape(b * c, 1, n)
    padded = F.pad(rows, (TP_BEFORE, TP_AFTER))
    y = F.conv1d(padded, _weight(x.device, x.dtype))
    return y.reshape(b, c, OVERSAMPLING - 1, n)


def peak_envelope(x: torch.Tensor) -> torch.Tensor:
    """Largest absolute value of the 4x-oversampled signal in [n, n+1): (b, c, n) -> (b, c, n)."""
    between = interpolate_phases(x).abs().amax(dim=2)
    return torch.maximum(x.abs(), between)


def interpolation_taps(device: torch.device | str, dtype: torch.dtype) -> torch.Tensor:
    """(3, TAPS_PER_PHASE) interpolator phases as a tensor, cached per device and dtype."""
    return _weight(torch.device(device), dtype)[:, 0, :]


def true_peak_linear(x: torch.Tensor) -> torch.Tensor:
    """Per-item true peak as a linear amplitude: x (batch, channels, samples) -> (batch,).

    Only the neighbourhoods whose samples could reach the sample peak are
    interpolated: elsewhere no in-between value can be the maximum.
    """
    from dsp._ops import true_peak_envelope_linked, true_peak_max

    taps = interpolation_taps(x.device, x.dtype)
    fast = true_peak_max(x, taps)  # a measurement that needs no gradient: no envelope
    if fast is not None:
        return fast
    floor = x.detach().abs().amax(dim=(1, 2)).double()
    return true_peak_envelope_linked(x, taps, floor).amax(dim=1)


def true_peak(x: torch.Tensor, sample_rate: float | None = None) -> torch.Tensor:
    """True peak in dBTP per batch item: x (batch, channels, samples) -> (batch,).

    ``sample_rate`` is accepted for API symmetry; the 4x interpolator is defined
    relative to the sample rate, so the value does not depend on it.
    """
    from dsp.ranges import check_audio

    check_audio(x)
    return 20.0 * torch.log10(true_peak_linear(x).clamp_min(1e-12))
