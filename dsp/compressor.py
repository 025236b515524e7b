"""Feed-forward, stereo-linked compressor (Giannoulis, Massberg and Reiss, JAES 2012).

Split into a gain computer (detector, static curve with soft knee, smoothed-gain
attack/release ballistics, makeup) and a gain application, so the gain trace can
be plotted and tested on its own.
"""

from __future__ import annotations

import torch

from dsp._ops import smooth_rows
from dsp.processor import Processor
from dsp.ranges import ParamRange, ms_to_coef

POWER_FLOOR = 1e-10  # -100 dB: keeps log and its gradient finite on digital silence


def detector_level_db(x: torch.Tensor, sample_rate: float, detector: str = "rms", rms_window_ms: float = 10.0) -> torch.Tensor:
    """Stereo-linked detector level in dB: x (batch, channels, samples) -> (batch, samples).

    "peak": the largest |x| across channels. "rms": the channel-mean power smoothed by
    a one-pole of ``rms_window_ms``.
    """
    if detector == "peak":
        power = (x * x).amax(dim=1)
    elif detector == "rms":
        power = (x * x).mean(dim=1)
        a = ms_to_coef(torch.full((x.shape[0],), rms_window_ms, dtype=torch.float64, device=x.device), sample_rate)
        power = smooth_rows(power, a, a)
    else:
        raise ValueError(f"detector must be 'peak' or 'rms', got {detector!r}")
    return 10.0 * torch.log10(power.clamp_min(0.0) + POWER_FLOOR)


def static_gain_db(level_db: torch.Tensor, threshold_db: torch.Tensor, ratio: torch.Tensor, knee_db: torch.Tensor) -> torch.Tensor:
    """Soft-knee static curve as a gain (<= 0 dB): level (batch, samples), params (batch,)."""
    t = threshold_db.to(level_db.dtype)[:, None]
    slope = (1.0 / ratio.to(level_db.dtype) - 1.0)[:, None]
    w = knee_db.to(level_db.dtype)[:, None]
    over = level_db - t
    hard = slope * over
    w_safe = w.clamp_min(1e-6)
    soft = slope * (over + 0.5 * w) ** 2 / (2.0 * w_safe)
    gain = torch.where(2.0 * over > w, hard, soft)
    return torch.where(2.0 * over < -w, torch.zeros_like(gain), gain)


def smooth_gain_db(gain_db: torch.Tensor, attack_ms: torch.Tensor, release_ms: torch.Tensor, sample_rate: float) -> torch.Tensor:
    """Branching smoothing of a gain in dB (batch, samples): attack while the gain falls
    (more reduction), release while it recovers."""
    a_att = ms_to_coef(attack_ms.to(torch.float64), sample_rate)
    a_rel = ms_to_coef(release_ms.to(torch.float64), sample_rate)
    return smooth_rows(gain_db, a_rel, a_att)


def compressor_gain_db(
    x: torch.Tensor,
    threshold_db: torch.Tensor,
    ratio: torch.Tensor,
    knee_db: torch.Tensor,
    attack_ms: torch.Tensor,
    release_ms: torch.Tensor,
    makeup_db: torch.Tensor,
    sample_rate: float,
    detector: str = "rms",
    rms_window_ms: float = 10.0,
) -> torch.Tensor:
    """Gain computer: x (batch, channels, samples), params (batch,) -> gain in dB (batch, samples)."""
    level = detector_level_db(x, sample_rate, detector, rms_window_ms)
    g = static_gain_db(level, threshold_db, ratio, knee_db)
    g = smooth_gain_db(g, attack_ms, release_ms, sample_rate)
    return g + makeup_db.to(g.dtype)[:, None]


def apply_gain_db(x: torch.Tensor, gain_db: torch.Tensor) -> torch.Tensor:
    """Gain application: x (batch, channels, samples) times 10^(gain_db/20), gain (batch, samples)."""
    return x * torch.pow(10.0, gain_db / 20.0)[:, None, :]


def compress(x: torch.Tensor, threshold_db, ratio, knee_db, attack_ms, release_ms, makeup_db, sample_rate: float,
             detector: str = "rms", rms_window_ms: float = 10.0) -> torch.Tensor:
    """Compress x (batch, channels, samples) with per-item physical settings (batch,)."""
    g = compressor_gain_db(x, threshold_db, ratio, knee_db, attack_ms, release_ms, makeup_db, sample_rate, detector, rms_window_ms)
    return apply_gain_db(x, g)


class Compressor(Processor):
    """Normalized-parameter compressor; ``detector`` is "rms" (default) or "peak"."""

    ranges = {
        "threshold_db": ParamRange(-48.0, 0.0, "lin", "dB"),
        "ratio": ParamRange(1.0, 20.0, "log", ":1"),
        "knee_db": ParamRange(0.0, 18.0, "lin", "dB"),
        "attack_ms": ParamRange(0.1, 100.0, "log", "ms"),
        "release_ms": ParamRange(10.0, 2000.0, "log", "ms"),
        "makeup_db": ParamRange(0.0, 24.0, "lin", "dB"),
    }

    def __init__(self, sample_rate: float, detector: str = "rms", rms_window_ms: float = 10.0) -> None:
        super().__init__(sample_rate)
        if detector not in ("rms", "peak"):
            raise ValueError(f"detector must be 'peak' or 'rms', got {detector!r}")
        self.detector = detector
        self.rms_window_ms = float(rms_window_ms)

    def gain_db(self, x: torch.Tensor, values: dict[str, torch.Tensor]) -> torch.Tensor:
        """Gain trace in dB (batch, samples) for physical ``values``."""
        return compressor_gain_db(
            x, values["threshold_db"], values["ratio"], values["knee_db"], values["attack_ms"],
            values["release_ms"], values["makeup_db"], self.sample_rate, self.detector, self.rms_window_ms,
        )

    def process(self, x: torch.Tensor, values: dict[str, torch.Tensor]) -> torch.Tensor:
        return apply_gain_db(x, self.gain_db(x, values))

    def identity_values(self) -> dict[str, float]:
        return {"threshold_db": -18.0, "ratio": 1.0, "knee_db": 6.0, "attack_ms": 10.0, "release_ms": 150.0, "makeup_db": 0.0}
