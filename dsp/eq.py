"""Mastering EQ: steep rumble high-pass, low shelf, three broad bells, high shelf.

Every section is an Audio-EQ-cookbook biquad run as an exact IIR recursion. The
sections own disjoint frequency ranges (a shelf's cutoff or a bell's centre can only
move inside its own region), so no two sections can make large moves that cancel, and
gains stay within mastering scale (+-6 dB).

The high-pass is 4th-order Butterworth (24 dB/octave, two biquads). Its cutoff range
starts at 0 Hz, where both sections are exactly the identity ``[1, -2, 1, -2, 1]``
(the double zero at DC cancels the double pole), so the EQ has an exact identity.
"""

from __future__ import annotations

import math

import torch

from dsp.biquad import (
    apply_biquad_cascade,
    biquad_response_db,
    high_shelf_coefficients,
    highpass_or_identity,
    low_shelf_coefficients,
    peaking_coefficients,
)
from dsp.processor import Processor
from dsp.ranges import ParamRange

SHELF_Q = 1.0 / math.sqrt(2.0)
# 4th-order Butterworth as two biquads: Q = 1 / (2 cos(pi (2k + 1) / 8)), k = 0, 1
BUTTERWORTH4_Q = (1.0 / (2.0 * math.cos(math.pi / 8.0)), 1.0 / (2.0 * math.cos(3.0 * math.pi / 8.0)))

# Disjoint regions (Hz): low shelf | low-mid bell | mid bell | presence bell | high shelf
LOW_SHELF_HZ = (40.0, 160.0)
BELLS = (("low_mid", 160.0, 500.0), ("mid", 500.0, 2000.0), ("presence", 2000.0, 5000.0))
HIGH_SHELF_HZ = (5000.0, 14000.0)
HIGHPASS_HZ = (0.0, 100.0)
GAIN_DB = 6.0
BELL_Q = (0.4, 2.0)


def _eq_ranges() -> dict[str, ParamRange]:
    r = {
        "highpass.cutoff_hz": ParamRange(*HIGHPASS_HZ, "lin", "Hz"),
        "low_shelf.cutoff_hz": ParamRange(*LOW_SHELF_HZ, "log", "Hz"),
        "low_shelf.gain_db": ParamRange(-GAIN_DB, GAIN_DB, "lin", "dB"),
    }
    for name, lo, hi in BELLS:
        r[f"{name}.center_hz"] = ParamRange(lo, hi, "log", "Hz")
        r[f"{name}.gain_db"] = ParamRange(-GAIN_DB, GAIN_DB, "lin", "dB")
        r[f"{name}.q"] = ParamRange(*BELL_Q, "log", "")
    r["high_shelf.cutoff_hz"] = ParamRange(*HIGH_SHELF_HZ, "log", "Hz")
    r["high_shelf.gain_db"] = ParamRange(-GAIN_DB, GAIN_DB, "lin", "dB")
    return r


def highpass4_sections(cutoff_hz: torch.Tensor, sample_rate: float) -> list[torch.Tensor]:
    """4th-order Butterworth high-pass as two (batch, 5) float64 biquads; exact identity at 0 Hz."""
    return [highpass_or_identity(cutoff_hz, torch.full_like(cutoff_hz, q), sample_rate) for q in BUTTERWORTH4_Q]


def eq_sections(values: dict[str, torch.Tensor], sample_rate: float) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Physical settings -> ([high-pass sections], [shelf/bell sections]), each (batch, 5) float64."""
    ones = torch.ones_like(values["low_shelf.gain_db"])
    hp = highpass4_sections(values["highpass.cutoff_hz"], sample_rate)
    sections = [low_shelf_coefficients(values["low_shelf.cutoff_hz"], values["low_shelf.gain_db"], SHELF_Q * ones, sample_rate)]
    for name, _, _ in BELLS:
        sections.append(
            peaking_coefficients(values[f"{name}.center_hz"], values[f"{name}.gain_db"], values[f"{name}.q"], sample_rate)
        )
    sections.append(
        high_shelf_coefficients(values["high_shelf.cutoff_hz"], values["high_shelf.gain_db"], SHELF_Q * ones, sample_rate)
    )
    return hp, sections


def eq_coefficients(values: dict[str, torch.Tensor], sample_rate: float) -> torch.Tensor:
    """All sections in series as (batch, 7, 5) float64: 2 high-pass, low shelf, 3 bells, high shelf."""
    hp, sections = eq_sections(values, sample_rate)
    return torch.stack(hp + sections, dim=1)


def parametric_eq(x: torch.Tensor, values: dict[str, torch.Tensor], sample_rate: float) -> torch.Tensor:
    """Apply the EQ with physical ``values`` ({name: (batch,)}, names as in :class:`ParametricEQ`).

    x: (batch, channels, samples) -> same shape.
    """
    return apply_biquad_cascade(x, eq_coefficients(values, sample_rate))


def eq_response_db(values: dict[str, torch.Tensor], freq_hz: torch.Tensor, sample_rate: float,
                   include_highpass: bool = False) -> torch.Tensor:
    """Magnitude response in dB (batch, F) of the shelves and bells (and the high-pass if asked)."""
    hp, sections = eq_sections(values, sample_rate)
    if include_highpass:
        sections = hp + sections
    return sum(biquad_response_db(c, freq_hz, sample_rate) for c in sections)


class ParametricEQ(Processor):
    """Normalized-parameter EQ module; see :func:`parametric_eq`."""

    ranges = _eq_ranges()

    def process(self, x: torch.Tensor, values: dict[str, torch.Tensor]) -> torch.Tensor:
        return parametric_eq(x, values, self.sample_rate)

    def identity_values(self) -> dict[str, float]:
        v = {"highpass.cutoff_hz": 0.0, "low_shelf.cutoff_hz": math.sqrt(LOW_SHELF_HZ[0] * LOW_SHELF_HZ[1]),
             "low_shelf.gain_db": 0.0}
        for name, lo, hi in BELLS:
            v[f"{name}.center_hz"] = math.sqrt(lo * hi)
            v[f"{name}.gain_db"] = 0.0
            v[f"{name}.q"] = 0.7
        v["high_shelf.cutoff_hz"] = math.sqrt(HIGH_SHELF_HZ[0] * HIGH_SHELF_HZ[1])
        v["high_shelf.gain_db"] = 0.0
        return v
