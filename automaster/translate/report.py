"""The report PNG's translation row: what each playback model does to the master's bands,
and the loudness, warnings and decoded codec figures as text."""

from __future__ import annotations

import textwrap
from typing import Any

import numpy as np


def draw_translation(translation: dict[str, Any], ax_bands, ax_text) -> None:
    """Draw ``report["translation"]`` on two matplotlib axes."""
    play = translation.get("playback") or {}
    systems = play.get("systems") or {}
    master_bands = (play.get("master") or {}).get("bands") or {}
    names = list(master_bands)
    xs = np.arange(len(names))
    for key, sys_doc in systems.items():
        bands = sys_doc.get("bands") or {}
        ys = [bands.get(b, {}).get("change_db") for b in names]
        ys = [np.nan if y is None else max(float(y), -40.0) for y in ys]
        ax_bands.plot(xs, ys, marker="o", label=sys_doc.get("label", key), linewidth=1.0)
    if names:
        ax_bands.set_xticks(xs, names, fontsize=8)
        ax_bands.legend(fontsize=7)
    ax_bands.axhline(0.0, color="black", linewidth=0.5)
    ax_bands.set_ylim(-42, 15)
    ax_bands.set_ylabel("dB vs the master (floor -40)")
    ax_bands.set_title("Playback models: band level the listener gets")
    ax_bands.grid(True, alpha=0.3)

    ax_text.axis("off")
    lines = []
    m = play.get("master") or {}
    if systems:
        lines.append(f"master {m.get('loudness_lufs')} LUFS; "
                     f"{100 * (m.get('share_below_150_hz') or 0):.0f}% of the energy below 150 Hz")
        for key, s in systems.items():
            lines.append(f"{s.get('label', key):20s} {s.get('loudness_lufs')} LUFS "
                         f"({_signed(s.get('loudness_change_lu'))} LU; pink "
                         f"{_signed(s.get('pink_change_lu'))})")
            for w in s.get("warnings") or []:
                lines.extend(textwrap.wrap(f"! {w}", 95, initial_indent="  ",
                                           subsequent_indent="    "))
    codec = translation.get("codec")
    if codec:
        lines.append("")
        lines.append(f"codecs: ceiling {codec.get('ceiling_dbtp')} dBTP, {codec.get('encodes')} "
                     f"encode(s), limiter at {codec.get('limiter_ceiling_dbtp')} dBTP"
                     f"{'' if codec.get('met') else ' - NOT MET'}")
        for c in codec.get("codecs") or []:
            lines.append(f"  {c.get('codec'):12s} decoded {c.get('decoded_true_peak_dbtp')} dBTP, "
                         f"{c.get('decoded_lufs')} LUFS")
    ax_text.text(0.0, 1.0, "\n".join(lines), family="monospace", fontsize=7, va="top")
    ax_text.set_title("Translation: loudness per system, warnings, decoded codecs")


def _signed(v: Any) -> str:
    return f"{v:+.1f}" if isinstance(v, (int, float)) else "n/a"
