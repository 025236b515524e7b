"""The chosen setting in a mastering engineer's words, grouped by what it does.

``describe(settings, report)`` -> {group: [line, ...]} with groups "Tone", "Dynamics",
"Color", "Stereo" and "Loudness". Settings are the chain's physical values (names of
``dsp.MasteringChain.param_names``); the report supplies measured effects where they
exist (mean gain reduction per band, limiter reduction, the normalization gain).
Settings that do nothing audible (|gain| < 0.1 dB, ratio < 1.05, ...) are left out, so
a near-neutral master reads as such.
"""

from __future__ import annotations

from typing import Any

BANDS = (("low", "low band"), ("mid", "mid band"), ("high", "high band"))
BELLS = (("low_mid", "Low-mid"), ("mid", "Mid"), ("presence", "Presence"))


def _hz(f: float) -> str:
    return f"{f / 1000:.1f} kHz" if f >= 1000 else f"{f:.0f} Hz"


def _db(v: float) -> str:
    return f"{v:+.1f} dB"


def _speed(ms: float, fast: float, slow: float) -> str:
    return "fast" if ms < fast else "slow" if ms > slow else "medium"


def _q_word(q: float) -> str:
    return "broad" if q < 0.7 else "narrow" if q > 1.4 else "medium"


def describe(settings: dict[str, float], report: dict[str, Any] | None = None) -> dict[str, list[str]]:
    """Group -> lines describing ``settings``; see the module docstring."""
    s, rep = settings, report or {}
    out: dict[str, list[str]] = {"Tone": [], "Dynamics": [], "Color": [], "Stereo": [], "Loudness": []}
    tone = out["Tone"]
    if s.get("eq.highpass.cutoff_hz", 0.0) >= 1.0:
        tone.append(f"Rumble filter: 24 dB/octave high-pass at {_hz(s['eq.highpass.cutoff_hz'])}")
    if abs(s.get("eq.low_shelf.gain_db", 0.0)) >= 0.1:
        tone.append(f"Low shelf {_db(s['eq.low_shelf.gain_db'])} below {_hz(s['eq.low_shelf.cutoff_hz'])}")
    for key, label in BELLS:
        g = s.get(f"eq.{key}.gain_db", 0.0)
        if abs(g) >= 0.1:
            q = s[f"eq.{key}.q"]
            tone.append(f"{label} bell {_db(g)} at {_hz(s[f'eq.{key}.center_hz'])} ({_q_word(q)}, Q {q:.1f})")
    if abs(s.get("eq.high_shelf.gain_db", 0.0)) >= 0.1:
        tone.append(f"High shelf {_db(s['eq.high_shelf.gain_db'])} above {_hz(s['eq.high_shelf.cutoff_hz'])}")
    if not tone:
        tone.append("EQ flat")

    dyn = out["Dynamics"]
    gr = rep.get("gain_reduction") or {}
    if "multiband.crossover_low_hz" in s:
        lo, hi = s["multiband.crossover_low_hz"], s["multiband.crossover_high_hz"]
        ranges = {"low": f"below {_hz(lo)}", "mid": f"{_hz(lo)}-{_hz(hi)}", "high": f"above {_hz(hi)}"}
        attack, release = s["multiband.attack_ms"], s["multiband.release_ms"]
        active = False
        for key, label in BANDS:
            ratio = s[f"multiband.{key}.ratio"]
            if ratio < 1.05:
                continue
            active = True
            line = (f"Compression {ratio:.1f}:1 in the {label} ({ranges[key]}), threshold "
                    f"{s[f'multiband.{key}.threshold_db']:+.0f} dB re the track's loudness")
            mean = (gr.get(key) or {}).get("mean_gain_db")
            if mean is not None:
                line += f", {-mean:.1f} dB average gain reduction"
            dyn.append(line)
        if active:
            dyn.append(f"Attack {attack:.0f} ms ({_speed(attack, 5, 30)}), release {release:.0f} ms "
                       f"({_speed(release, 80, 300)})")
        else:
            dyn.append("No compression")

    amount = s.get("saturation.amount", 0.0)
    out["Color"].append(f"Saturation {amount:.0%}" + (" (subtle)" if amount < 0.25 else "") if amount >= 0.02
                        else "No saturation")

    st = out["Stereo"]
    w = s.get("width.width", 1.0)
    if abs(w - 1.0) >= 0.02:
        st.append(f"Stereo width {w:.0%} ({'wider' if w > 1 else 'narrower'})")
    if s.get("width.mono_below_hz", 0.0) >= 1.0:
        st.append(f"Bass mono below {_hz(s['width.mono_below_hz'])}")
    if not st:
        st.append("Stereo image unchanged")

    loud = out["Loudness"]
    if rep.get("target_lufs") is not None and rep.get("gain_db") is not None:
        loud.append(f"Level {rep['gain_db']:+.1f} dB toward {rep['target_lufs']:g} LUFS")
    lim = gr.get("limiter") or {}
    line = f"True-peak limiter, release {s.get('limiter.release_ms', 0.0):.0f} ms"
    if rep.get("ceiling_dbtp") is not None:
        line += f", ceiling {rep['ceiling_dbtp']:g} dBTP"
    if lim.get("gain_db"):
        line += f", up to {-min(lim['gain_db']):.1f} dB of peak reduction"
    loud.append(line)
    return out


def describe_lines(settings: dict[str, float], report: dict[str, Any] | None = None) -> list[str]:
    """Flat list "Group: line" of :func:`describe`."""
    return [f"{g}: {line}" for g, lines in describe(settings, report).items() for line in lines]
