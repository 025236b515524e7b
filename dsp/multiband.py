"""Three-band compressor: Linkwitz-Riley bands, each with its own threshold and ratio.

Gain computer (per band): stereo-linked 10 ms RMS detector, soft-knee static curve
(6 dB knee) with the threshold *relative to the track's loudness* (dsp/level.py), and
smoothed-gain attack/release ballistics (Giannoulis, Massberg and Reiss, JAES 2012),
shared by the bands. Gain application: each band times its gain, bands summed. There
is no makeup gain: level is set by the loudness normalization that follows. With every
ratio at 1 the bands sum to the crossover's all-pass (flat magnitude, dsp/crossover.py).
"""

from __future__ import annotations

import torch

from dsp._ops import band_compress, fused_cpu_ok, multiband_pass
from dsp.compressor import POWER_FLOOR, detector_level_db, smooth_gain_db, static_gain_db
from dsp.crossover import lr_lowpass_coefficients, split_bands
from dsp.level import as_reference
from dsp.processor import Processor
from dsp.ranges import ParamRange, ms_to_coef

BANDS = ("low", "mid", "high")
KNEE_DB = 6.0
RMS_WINDOW_MS = 10.0


def band_gain_db(bands: torch.Tensor, reference_lufs: torch.Tensor, threshold_db: torch.Tensor, ratio: torch.Tensor,
                 attack_ms: torch.Tensor, release_ms: torch.Tensor, sample_rate: float) -> torch.Tensor:
    """Gain computer: bands (batch, 3, channels, samples); reference (batch,) LUFS;
    threshold_db (dB relative to the reference) and ratio (batch, 3); attack/release
    (batch,) -> gain in dB (batch, 3, samples), <= 0."""
    b, k, c, n = bands.shape
    level = detector_level_db(bands.reshape(b * k, c, n), sample_rate, "rms", RMS_WINDOW_MS)
    thr = (reference_lufs.to(threshold_db.dtype)[:, None] + threshold_db).reshape(b * k)
    knee = torch.full_like(thr, KNEE_DB)
    g = static_gain_db(level, thr, ratio.reshape(b * k), knee)
    g = smooth_gain_db(g, attack_ms.repeat_interleave(k), release_ms.repeat_interleave(k), sample_rate)
    return g.reshape(b, k, n)


def apply_band_gains(bands: torch.Tensor, gain_db: torch.Tensor) -> torch.Tensor:
    """Gain application: bands (batch, 3, channels, samples) times 10^(gain_db/20)
    (batch, 3, samples), summed over bands -> (batch, channels, samples)."""
    return (bands * torch.pow(10.0, gain_db / 20.0)[:, :, None, :]).sum(dim=1)


def multiband_compress(x: torch.Tensor, values: dict[str, torch.Tensor], sample_rate: float,
                       reference_lufs: torch.Tensor | float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Compress x (batch, channels, samples) with physical ``values`` ({name: (batch,)},
    names as in :class:`MultibandCompressor`) -> (output, gain in dB (batch, 3, samples))."""
    ref = as_reference(reference_lufs, x, sample_rate)
    needs_grad = torch.is_grad_enabled() and (x.requires_grad or any(v.requires_grad for v in values.values()))
    thr = torch.stack([values[f"{k}.threshold_db"] for k in BANDS], dim=1).to(x.dtype)
    ratio = torch.stack([values[f"{k}.ratio"] for k in BANDS], dim=1).to(x.dtype)
    if not needs_grad and fused_cpu_ok(x):
        return _multiband_fused(x, values, sample_rate, ref, thr, ratio)
    bands = split_bands(x, values["crossover_low_hz"], values["crossover_high_hz"], sample_rate)
    # band_gain_db then apply_band_gains, as one op with its own adjoint (dsp._ops.band_compress)
    thr_abs, slope, a_rms, a_rel, a_att = _kernel_args(values, sample_rate, ref, thr, ratio)
    return band_compress(bands, thr_abs, slope, torch.stack([a_rel, a_att], dim=-1), KNEE_DB, a_rms, POWER_FLOOR)


def _kernel_args(values: dict[str, torch.Tensor], sample_rate: float, ref: torch.Tensor, thr: torch.Tensor,
                 ratio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float, torch.Tensor, torch.Tensor]:
    """The settings as the compiled gain computer takes them, as :func:`band_gain_db`
    derives them: absolute thresholds and slopes 1/ratio - 1 (batch, 3), the detector's
    pole, the release and attack poles (batch,) float64."""
    a_rms = float(ms_to_coef(torch.tensor(RMS_WINDOW_MS, dtype=torch.float64), sample_rate))
    a_rel = ms_to_coef(values["release_ms"].to(torch.float64), sample_rate)
    a_att = ms_to_coef(values["attack_ms"].to(torch.float64), sample_rate)
    return ref.to(thr.dtype)[:, None] + thr, 1.0 / ratio - 1.0, a_rms, a_rel, a_att


def _multiband_fused(x: torch.Tensor, values: dict[str, torch.Tensor], sample_rate: float,
                     ref: torch.Tensor, thr: torch.Tensor, ratio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Inference on CPU: the same split, gain computer and gain application in three
    compiled passes (dsp._ops.multiband_pass), equal to the composition above to float
    rounding."""
    lp_low = lr_lowpass_coefficients(values["crossover_low_hz"], sample_rate)
    lp_high = lr_lowpass_coefficients(values["crossover_high_hz"], sample_rate)
    thr_abs, slope, a_rms, a_rel, a_att = _kernel_args(values, sample_rate, ref, thr, ratio)
    return multiband_pass(x, lp_low, lp_high, thr_abs, slope, KNEE_DB, a_rms, a_rel, a_att, POWER_FLOOR)


class MultibandCompressor(Processor):
    """Normalized-parameter three-band compressor; see :func:`multiband_compress`."""

    ranges = {
        "crossover_low_hz": ParamRange(60.0, 300.0, "log", "Hz"),
        "crossover_high_hz": ParamRange(1500.0, 6000.0, "log", "Hz"),
        **{name: r for k in BANDS for name, r in (
            (f"{k}.threshold_db", ParamRange(-30.0, 6.0, "lin", "dB re loudness")),
            (f"{k}.ratio", ParamRange(1.0, 4.0, "log", ":1")),
        )},
        "attack_ms": ParamRange(1.0, 100.0, "log", "ms"),
        "release_ms": ParamRange(20.0, 1000.0, "log", "ms"),
    }

    def process(self, x: torch.Tensor, values: dict[str, torch.Tensor], reference_lufs=None) -> torch.Tensor:
        return multiband_compress(x, values, self.sample_rate, reference_lufs)[0]

    def identity_values(self) -> dict[str, float]:
        v = {"crossover_low_hz": 150.0, "crossover_high_hz": 3000.0, "attack_ms": 10.0, "release_ms": 150.0}
        for k in BANDS:
            v[f"{k}.threshold_db"] = -12.0
            v[f"{k}.ratio"] = 1.0
        return v
