"""CUE sheet for the continuous album file.

One ``FILE "album.wav" WAVE`` entry (``AIFF`` for .aiff; FLAC is also declared ``WAVE``,
as CUE readers expect), then per track ``TITLE``, optional ``PERFORMER`` and ``ISRC``,
``INDEX 00`` where a gap precedes the track (its pregap) and ``INDEX 01`` at the track's
start, as mm:ss:ff with 75 frames per second. The album's optional ``CATALOG``,
``PERFORMER`` and ``TITLE`` come first. Track starts lie on frames (see
``assemble.plan_layout``), so the times are exact.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from automaster.album.assemble import FRAMES_PER_SECOND


def msf(sample: int, sample_rate: int) -> str:
    """Album sample -> "mm:ss:ff" (nearest frame)."""
    frames = int(round(sample * FRAMES_PER_SECOND / sample_rate))
    m, rest = divmod(frames, 60 * FRAMES_PER_SECOND)
    s, f = divmod(rest, FRAMES_PER_SECOND)
    return f"{m:02d}:{s:02d}:{f:02d}"


def parse_msf(text: str) -> int:
    """ "mm:ss:ff" -> frames."""
    m, s, f = (int(v) for v in text.split(":"))
    return (m * 60 + s) * FRAMES_PER_SECOND + f


def _quote(text: str) -> str:
    return '"' + " ".join(text.split()).replace('"', "'") + '"'


@dataclass
class CueTrack:
    title: str
    start: int                 # INDEX 01, album samples
    pregap: int | None = None  # INDEX 00
    performer: str | None = None
    isrc: str | None = None


def cue_sheet(audio_file: str, sample_rate: int, tracks: list[CueTrack], *,
              title: str | None = None, performer: str | None = None,
              catalog: str | None = None) -> str:
    """The CUE sheet text (CRLF line ends are not required; plain LF)."""
    kind = "AIFF" if audio_file.lower().endswith((".aif", ".aiff")) else "WAVE"
    lines = ["REM COMMENT \"automaster album\""]
    if catalog:
        lines.append(f"CATALOG {catalog}")
    if performer:
        lines.append(f"PERFORMER {_quote(performer)}")
    if title:
        lines.append(f"TITLE {_quote(title)}")
    lines.append(f"FILE {_quote(audio_file)} {kind}")
    for k, t in enumerate(tracks, 1):
        lines.append(f"  TRACK {k:02d} AUDIO")
        lines.append(f"    TITLE {_quote(t.title)}")
        if t.performer:
            lines.append(f"    PERFORMER {_quote(t.performer)}")
        if t.isrc:
            lines.append(f"    ISRC {t.isrc}")
        if t.pregap is not None:
            lines.append(f"    INDEX 00 {msf(t.pregap, sample_rate)}")
        lines.append(f"    INDEX 01 {msf(t.start, sample_rate)}")
    return "\n".join(lines) + "\n"


_INDEX = re.compile(r"^\s*INDEX\s+(\d\d)\s+(\d+:\d\d:\d\d)\s*$")
_TITLE = re.compile(r'^\s*TITLE\s+"(.*)"\s*$')


def read_cue(text: str) -> list[dict]:
    """Tracks of a CUE sheet: [{"title", "index": {0: frames, 1: frames}, "isrc"}]
    (a small reader for checks; not a general CUE parser)."""
    tracks: list[dict] = []
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("TRACK "):
            tracks.append({"index": {}})
        elif tracks:
            m = _INDEX.match(s)
            if m:
                tracks[-1]["index"][int(m.group(1))] = parse_msf(m.group(2))
            elif _TITLE.match(s):
                tracks[-1]["title"] = _TITLE.match(s).group(1)
            elif s.startswith("ISRC "):
                tracks[-1]["isrc"] = s.split()[1]
            elif s.startswith("PERFORMER "):
                tracks[-1]["performer"] = s[len("PERFORMER "):].strip('"')
    return tracks
