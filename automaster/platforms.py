"""Loudness presets for delivery platforms (``--platform NAME``, ``automaster --list-platforms``).

Each preset is an integrated-loudness target (LUFS, ITU-R BS.1770) and a true-peak ceiling
(dBTP). Streaming values follow the services' published normalization levels and upload
recommendations; "cd" and "club" are loud-master conventions, not standards.

==============  ===========  ==============  ============================================
name            target LUFS  ceiling dBTP    notes
==============  ===========  ==============  ============================================
spotify         -14.0        -1.0            playback normalized to -14 LUFS
apple-music     -16.0        -1.0            Sound Check normalizes to about -16 LUFS
youtube         -14.0        -1.0            normalizes (turns down) to about -14 LUFS
tidal           -14.0        -1.0            normalizes to -14 LUFS
amazon-music    -14.0        -2.0            asks for -2 dBTP headroom for its encoders
deezer          -15.0        -1.0            normalizes to -15 LUFS
soundcloud      -14.0        -1.0            no normalization; -14 LUFS is the usual aim
cd              -9.0         -0.3            loud CD-style master, 16-bit friendly ceiling
club            -8.0         -0.5            DJ/club master, very loud
ebu-r128        -23.0        -1.0            EBU R 128 broadcast (max true peak -1 dBTP)
atsc-a85        -24.0        -2.0            ATSC A/85 US broadcast
podcast         -16.0        -1.0            common spoken-word delivery (Apple, AES TD1004)
==============  ===========  ==============  ============================================

``--target`` / ``--ceiling`` given next to ``--platform`` override the preset's values.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Platform:
    """A delivery preset: loudness target and true-peak ceiling."""

    name: str
    target_lufs: float
    ceiling_dbtp: float
    notes: str


PLATFORMS: dict[str, Platform] = {p.name: p for p in (
    Platform("spotify", -14.0, -1.0, "playback normalized to -14 LUFS"),
    Platform("apple-music", -16.0, -1.0, "Sound Check normalizes to about -16 LUFS"),
    Platform("youtube", -14.0, -1.0, "normalizes (turns down) to about -14 LUFS"),
    Platform("tidal", -14.0, -1.0, "normalizes to -14 LUFS"),
    Platform("amazon-music", -14.0, -2.0, "asks for -2 dBTP headroom for its encoders"),
    Platform("deezer", -15.0, -1.0, "normalizes to -15 LUFS"),
    Platform("soundcloud", -14.0, -1.0, "no normalization; -14 LUFS is the usual aim"),
    Platform("cd", -9.0, -0.3, "loud CD-style master, 16-bit friendly ceiling"),
    Platform("club", -8.0, -0.5, "DJ/club master, very loud"),
    Platform("ebu-r128", -23.0, -1.0, "EBU R 128 broadcast (max true peak -1 dBTP)"),
    Platform("atsc-a85", -24.0, -2.0, "ATSC A/85 US broadcast"),
    Platform("podcast", -16.0, -1.0, "common spoken-word delivery (Apple, AES TD1004)"),
)}


def get_platform(name: str) -> Platform:
    """Look a preset up by name (case-insensitive; '_' and ' ' read as '-')."""
    key = name.strip().lower().replace("_", "-").replace(" ", "-")
    if key not in PLATFORMS:
        raise KeyError(f"unknown platform {name!r}; known: {', '.join(PLATFORMS)}")
    return PLATFORMS[key]


def platform_table() -> str:
    """Human-readable table for ``--list-platforms``."""
    lines = [f"{'platform':<14} {'target LUFS':>11} {'ceiling dBTP':>13}  notes"]
    for p in PLATFORMS.values():
        lines.append(f"{p.name:<14} {p.target_lufs:>11.1f} {p.ceiling_dbtp:>13.1f}  {p.notes}")
    return "\n".join(lines)
