"""Built-in fallback setting, used when no trained model is available.

``GENTLE`` is a conservative mastering setting in physical units (the names of
``dsp.MasteringChain.param_names``): rumble high-pass at 25 Hz, a touch of low end and
air, a slight dip in the low-mid "mud" region, 1.5:1 RMS compression with a soft knee and
slow-ish timing, no saturation, width unchanged. Loudness and the true-peak ceiling are
applied after the chain, as for any setting.

The one level-dependent entry is the input gain: it brings the mix to ``ALIGN_LUFS``
(within the chain's +-12 dB) so that the compressor's fixed threshold means the same
for a quiet and a loud mix. Names the chain does not have are ignored and names it has
that the preset lacks keep their identity value, so the preset survives chain changes.
"""

from __future__ import annotations

import math

ALIGN_LUFS = -18.0

GENTLE: dict[str, float] = {
    "input.gain_db": 0.0,  # replaced per file, see module doc
    "eq.highpass.cutoff_hz": 25.0,
    "eq.highpass.mix": 1.0,
    "eq.low_shelf.cutoff_hz": 90.0,
    "eq.low_shelf.gain_db": 1.0,
    "eq.peak1.center_hz": 250.0,
    "eq.peak1.gain_db": -0.8,
    "eq.peak1.q": 1.0,
    "eq.peak2.center_hz": 600.0,
    "eq.peak2.gain_db": 0.0,
    "eq.peak2.q": 1.0,
    "eq.peak3.center_hz": 3000.0,
    "eq.peak3.gain_db": 0.5,
    "eq.peak3.q": 0.8,
    "eq.peak4.center_hz": 8000.0,
    "eq.peak4.gain_db": 0.0,
    "eq.peak4.q": 1.0,
    "eq.high_shelf.cutoff_hz": 10000.0,
    "eq.high_shelf.gain_db": 1.5,
    "compressor.threshold_db": -14.0,
    "compressor.ratio": 1.5,
    "compressor.knee_db": 6.0,
    "compressor.attack_ms": 30.0,
    "compressor.release_ms": 200.0,
    "compressor.makeup_db": 0.0,
    "saturation.drive_db": 6.0,
    "saturation.mix": 0.0,
    "width.width": 1.0,
    "limiter.release_ms": 100.0,
}


def preset_settings(identity: dict[str, float], ranges: dict, input_lufs: float | None = None,
                    preset: dict[str, float] | None = None) -> dict[str, float]:
    """Full physical setting for a chain: ``identity`` overlaid with the preset.

    ``ranges`` maps name -> ParamRange (values are clamped into them); ``input_lufs`` is the
    mix's integrated loudness, used for the input-gain alignment (skipped when unknown).
    """
    out = dict(identity)
    for name, value in (preset or GENTLE).items():
        if name in out:
            out[name] = float(value)
    if "input.gain_db" in out and input_lufs is not None and math.isfinite(input_lufs):
        out["input.gain_db"] = ALIGN_LUFS - float(input_lufs)
    for name, r in ranges.items():
        if name in out:
            out[name] = min(max(out[name], float(r.low)), float(r.high))
    return out
