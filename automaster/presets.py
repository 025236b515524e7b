"""Built-in fallback setting, used when no trained model is available.

``GENTLE`` is a conservative mastering setting in physical units (the names of
``dsp.MasteringChain.param_names``): a 24 dB/octave rumble high-pass at 25 Hz, a touch of
low end and air, a slight dip in the low-mid "mud" region, 1.5:1 compression in each band
with thresholds a few dB over the track's loudness and slow-ish timing, no saturation,
width unchanged with the lowest octave kept mono. Loudness and the true-peak ceiling are
applied after the chain, as for any setting. Thresholds are relative to the track's
loudness, so the preset means the same for a quiet and a loud mix. Names the chain does
not have are ignored and names it has that the preset lacks keep their identity value,
so the preset survives chain changes.
"""

from __future__ import annotations

GENTLE: dict[str, float] = {
    "eq.highpass.cutoff_hz": 25.0,
    "eq.low_shelf.cutoff_hz": 90.0,
    "eq.low_shelf.gain_db": 1.0,
    "eq.low_mid.center_hz": 250.0,
    "eq.low_mid.gain_db": -0.8,
    "eq.low_mid.q": 1.0,
    "eq.mid.center_hz": 1000.0,
    "eq.mid.gain_db": 0.0,
    "eq.mid.q": 0.7,
    "eq.presence.center_hz": 3000.0,
    "eq.presence.gain_db": 0.5,
    "eq.presence.q": 0.8,
    "eq.high_shelf.cutoff_hz": 10000.0,
    "eq.high_shelf.gain_db": 1.5,
    "multiband.crossover_low_hz": 150.0,
    "multiband.crossover_high_hz": 3000.0,
    "multiband.low.threshold_db": -6.0,
    "multiband.low.ratio": 1.5,
    "multiband.mid.threshold_db": -8.0,
    "multiband.mid.ratio": 1.5,
    "multiband.high.threshold_db": -12.0,
    "multiband.high.ratio": 1.5,
    "multiband.attack_ms": 30.0,
    "multiband.release_ms": 200.0,
    "saturation.amount": 0.0,
    "width.width": 1.0,
    "width.mono_below_hz": 40.0,
    "limiter.release_ms": 100.0,
}


def preset_settings(identity: dict[str, float], ranges: dict, input_lufs: float | None = None,
                    preset: dict[str, float] | None = None) -> dict[str, float]:
    """Full physical setting for a chain: ``identity`` overlaid with the preset.

    ``ranges`` maps name -> ParamRange (values are clamped into them). ``input_lufs`` is
    accepted for compatibility and unused: no setting of the chain depends on level.
    """
    out = dict(identity)
    for name, value in (preset or GENTLE).items():
        if name in out:
            out[name] = float(value)
    for name, r in ranges.items():
        if name in out:
            out[name] = min(max(out[name], float(r.low)), float(r.high))
    return out
