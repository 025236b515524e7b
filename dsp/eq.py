"""Parametric mastering EQ: high-pass (with mix), low shelf, four peaking bands, high shelf.

Every section is an Audio-EQ-cookbook biquad run as an exact IIR recursion.
"""

from __future__ import annotations

import math

import torch

from dsp.biquad import (
    apply_biquad_cascade,
    biquad_response_db,
    high_shelf_coefficients,
    highpass_coefficients,
    low_shelf_coefficients,
    peaking_coefficients,
)
from dsp.processor import Processor
from dsp.ranges import ParamRange

SHELF_Q = 1.0 / math.sqrt(2.0)
HIGHPASS_Q = 1.0 / math.sqrt(2.0)

# (name, low Hz, high Hz) of the four peaking bands: overlapping musical regions
PEAK_BANDS = (("peak1", 40.0, 400.0), ("peak2", 150.0, 1500.0), ("peak3", 600.0, 6000.0), ("peak4", 2000.0, 16000.0))


def _eq_ranges() -> dict[str, ParamRange]:
    r = {
        "highpass.cutoff_hz": ParamRange(10.0, 400.0, "log", "Hz"),
        "highpass.mix": ParamRange(0.0, 1.0, "lin", ""),
        "low_shelf.cutoff_hz": ParamRange(30.0, 400.0, "log", "Hz"),
        "low_shelf.gain_db": ParamRange(-12.0, 12.0, "lin", "dB"),
    }
    for name, lo, hi in PEAK_BANDS:
        r[f"{name}.center_hz"] = ParamRange(lo, hi, "log", "Hz")
        r[f"{name}.gain_db"] = ParamRange(-12.0, 12.0, "lin", "dB")
        r[f"{name}.q"] = ParamRange(0.3, 6.0, "log", "")
    r["high_shelf.cutoff_hz"] = ParamRange(2000.0, 16000.0, "log", "Hz")
    r["high_shelf.gain_db"] = ParamRange(-12.0, 12.0, "lin", "dB")
    return r


def eq_sections(values: dict[str, torch.Tensor], sample_rate: float) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Physical settings -> (high-pass coef (batch, 5), [shelf/peak coefs (batch, 5)])."""
    ones = torch.ones_like(values["low_shelf.gain_db"])
    hp = highpass_coefficients(values["highpass.cutoff_hz"], HIGHPASS_Q * ones, sample_rate)
    sections = [low_shelf_coefficients(values["low_shelf.cutoff_hz"], values["low_shelf.gain_db"], SHELF_Q * ones, sample_rate)]
    for name, _, _ in PEAK_BANDS:
        sections.append(
            peaking_coefficients(values[f"{name}.center_hz"], values[f"{name}.gain_db"], values[f"{name}.q"], sample_rate)
        )
    sections.append(
        high_shelf_coefficients(values["high_shelf.cutoff_hz"], values["high_shelf.gain_db"], SHELF_Q * ones, sample_rate)
    )
    return hp, sections


def parametric_eq(x: torch.Tensor, values: dict[str, torch.Tensor], sample_rate: float) -> torch.Tensor:
    """Apply the EQ with physical ``values`` ({name: (batch,)}, names as in :class:`ParametricEQ`).

    x: (batch, channels, samples) -> same shape. The high-pass is blended with the
    dry signal by ``highpass.mix`` (0 = bypass), so the EQ has an exact identity.
    """
    return apply_biquad_cascade(x, eq_coefficients(values, sample_rate))


def eq_coefficients(values: dict[str, torch.Tensor], sample_rate: float) -> torch.Tensor:
    """All sections as (batch, 7, 5) float64, the high-pass blend folded into one biquad.

    (1 - m) x + m HP(x) has the high-pass poles and the numerator (1 - m) a + m b,
    so the dry/wet mix costs nothing and stays an exact IIR section.
    """
    hp, sections = eq_sections(values, sample_rate)
    m = values["highpass.mix"].to(torch.float64)[:, None]
    den = torch.cat([torch.ones_like(hp[:, :1]), hp[:, 3:]], dim=1)
    num = (1 - m) * den + m * hp[:, :3]
    blended = torch.cat([num, hp[:, 3:]], dim=1)
    return torch.stack([blended] + sections, dim=1)


def eq_response_db(values: dict[str, torch.Tensor], freq_hz: torch.Tensor, sample_rate: float) -> torch.Tensor:
    """Magnitude response in dB of the shelf/peak sections, (batch, F); the high-pass is excluded."""
    _, sections = eq_sections(values, sample_rate)
    return sum(biquad_response_db(c, freq_hz, sample_rate) for c in sections)


class ParametricEQ(Processor):
    """Normalized-parameter EQ module; see :func:`parametric_eq`."""

    ranges = _eq_ranges()

    def process(self, x: torch.Tensor, values: dict[str, torch.Tensor]) -> torch.Tensor:
        return parametric_eq(x, values, self.sample_rate)

    def identity_values(self) -> dict[str, float]:
        v = {"highpass.cutoff_hz": 20.0, "highpass.mix": 0.0, "low_shelf.cutoff_hz": 100.0, "low_shelf.gain_db": 0.0}
        for name, lo, hi in PEAK_BANDS:
            v[f"{name}.center_hz"] = math.sqrt(lo * hi)
            v[f"{name}.gain_db"] = 0.0
            v[f"{name}.q"] = 1.0
        v["high_shelf.cutoff_hz"] = 8000.0
        v["high_shelf.gain_db"] = 0.0
        return v
