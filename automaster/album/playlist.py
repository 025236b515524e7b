"""Album playlists: the track order and per-track options, as text or JSON.

Text format (UTF-8; ``#`` starts a comment line, blank lines are ignored)::

    # album fields: lines starting with '@' (catalog: UPC/EAN, 13 digits)
    @title      Night Drive
    @performer  The Band
    @catalog    0123456789012

    01 intro.wav     | title=Intro | fade_in=2 | gap=0
    02 song.flac     | title=Song Two | crossfade=4 | isrc=USABC2400001
    03 interlude.wav | offset=-1.5 | fade_out=3

A track line is a file path (relative to the playlist's folder), then optional
``key=value`` fields separated by ``|``. JSON: ``{"title": ..., "performer": ...,
"catalog": ..., "tracks": [{"file": "01 intro.wav", "title": "Intro", "gap": 0}, ...]}``
(or just the list of tracks). Track keys, all optional:

=============  ==============================================================
title          the track's title (default: the file name without extension)
performer      the track's performer (CUE PERFORMER)
fade_in        fade-in length, seconds (overrides ``--fade-in``)
fade_out       fade-out length, seconds (overrides ``--fade-out``)
gap            silence after the track, seconds (overrides ``--gap``)
crossfade      equal-power cross-fade into the next track, seconds
               (overrides ``--crossfade``; a track has a gap or a cross-fade)
offset         the track's own loudness offset in LU, added to its planned level
isrc           ISRC, 12 characters CCXXXYYNNNNN (CUE ISRC)
=============  ==============================================================
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from automaster.errors import UserError

TRACK_KEYS = ("title", "performer", "fade_in", "fade_out", "gap", "crossfade", "offset", "isrc")
ALBUM_KEYS = ("title", "performer", "catalog")
NUMBER_KEYS = ("fade_in", "fade_out", "gap", "crossfade", "offset")
ISRC_RE = re.compile(r"^[A-Z]{2}[A-Z0-9]{3}[0-9]{7}$")
CATALOG_RE = re.compile(r"^[0-9]{13}$")
MAX_SECONDS = 600.0
MAX_OFFSET_LU = 30.0


@dataclass
class TrackSpec:
    """One album track as given: a file and its own options (None = the album default)."""

    path: Path
    title: str | None = None
    performer: str | None = None
    fade_in: float | None = None
    fade_out: float | None = None
    gap: float | None = None
    crossfade: float | None = None
    offset: float = 0.0
    isrc: str | None = None


@dataclass
class Playlist:
    """Album fields and the tracks in their given order."""

    tracks: list[TrackSpec]
    title: str | None = None
    performer: str | None = None
    catalog: str | None = None
    source: str | None = None  # the playlist file, for messages
    notes: list[str] = field(default_factory=list)


def _number(key: str, value: Any, where: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise UserError(f"{where}: {key} must be a number, got {value!r}") from None
    if isinstance(value, bool) or not math.isfinite(v):
        raise UserError(f"{where}: {key} must be a finite number, got {value!r}")
    if key == "offset":
        if abs(v) > MAX_OFFSET_LU:
            raise UserError(f"{where}: offset must be within +-{MAX_OFFSET_LU:g} LU, got {v:g}")
    elif not 0.0 <= v <= MAX_SECONDS:
        raise UserError(f"{where}: {key} must be between 0 and {MAX_SECONDS:g} s, got {v:g}")
    return v


def _text(key: str, value: Any, where: str) -> str:
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise UserError(f"{where}: {key} must be text, got {value!r}")
    text = " ".join(str(value).split())
    if not text:
        raise UserError(f"{where}: {key} is empty")
    try:  # a JSON "\ud800" escape is a lone surrogate: no file name, CUE or JSON can hold it
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise UserError(f"{where}: {key} {value!r} is not valid Unicode text (lone surrogate)") \
            from None
    if key == "isrc":
        text = text.replace("-", "").upper()
        if not ISRC_RE.match(text):
            raise UserError(f"{where}: ISRC {value!r} is not 12 characters CCXXXYYNNNNN")
    if key == "catalog" and not CATALOG_RE.match(text):
        raise UserError(f"{where}: catalog {value!r} must be 13 digits (UPC/EAN)")
    return text


def make_track(path: str | os.PathLike, fields: dict[str, Any], where: str,
               base: Path | None = None) -> TrackSpec:
    """A TrackSpec from a path and its option fields (validated)."""
    unknown = [k for k in fields if k not in TRACK_KEYS]
    if unknown:
        raise UserError(f"{where}: unknown track option{'s' if len(unknown) > 1 else ''} "
                        f"{', '.join(map(repr, unknown))} (known: {', '.join(TRACK_KEYS)})")
    p = Path(path)
    if base is not None and not p.is_absolute():
        p = base / p
    spec = TrackSpec(p)
    for key, value in fields.items():
        if key in NUMBER_KEYS:
            setattr(spec, key, _number(key, value, where))
        else:
            setattr(spec, key, _text(key, value, where))
    if spec.gap is not None and spec.crossfade is not None:
        raise UserError(f"{where}: a track has either a gap or a crossfade after it, not both")
    return spec


def parse_text(text: str, source: str = "playlist", base: Path | None = None) -> Playlist:
    """Parse the text playlist format (see the module doc)."""
    pl = Playlist([], source=source)
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        where = f"{source}:{number}"
        if not line or line.startswith("#"):
            continue
        if line.startswith("@"):
            key, _, value = line[1:].partition(" ")
            key = key.strip().lower()
            value = value.strip()
            if key not in ALBUM_KEYS:
                raise UserError(f"{where}: unknown album field @{key} (known: "
                                f"{', '.join('@' + k for k in ALBUM_KEYS)})")
            setattr(pl, key, _text(key, value, where))
            continue
        parts = [s.strip() for s in line.split("|")]
        fields: dict[str, str] = {}
        for part in parts[1:]:
            if not part:
                continue
            key, eq, value = part.partition("=")
            key = key.strip().lower().replace("-", "_")
            if not eq or not key:
                raise UserError(f"{where}: expected key=value after '|', got {part!r}")
            if key in fields:
                raise UserError(f"{where}: {key} given twice")
            fields[key] = value.strip()
        if not parts[0]:
            raise UserError(f"{where}: a track line must start with a file path")
        pl.tracks.append(make_track(parts[0], fields, where, base))
    return pl


def parse_json(data: Any, source: str = "playlist", base: Path | None = None) -> Playlist:
    """Parse the JSON playlist format (an object with "tracks", or a list of tracks)."""
    if isinstance(data, list):
        data = {"tracks": data}
    if not isinstance(data, dict) or not isinstance(data.get("tracks"), list):
        raise UserError(f"{source}: expected an object with a \"tracks\" list, or a list")
    unknown = [k for k in data if k not in ALBUM_KEYS + ("tracks",)]
    if unknown:
        raise UserError(f"{source}: unknown album field{'s' if len(unknown) > 1 else ''} "
                        f"{', '.join(map(repr, unknown))}")
    pl = Playlist([], source=source)
    for key in ALBUM_KEYS:
        if data.get(key) is not None:
            setattr(pl, key, _text(key, data[key], source))
    for i, item in enumerate(data["tracks"], 1):
        where = f"{source}: track {i}"
        if isinstance(item, str):
            item = {"file": item}
        if not isinstance(item, dict) or not isinstance(item.get("file"), str) \
                or not item["file"].strip():
            raise UserError(f"{where}: expected a file name or an object with \"file\"")
        fields = {k: v for k, v in item.items() if k != "file" and v is not None}
        pl.tracks.append(make_track(item["file"].strip(), fields, where, base))
    return pl


def read_playlist(path: str | os.PathLike) -> Playlist:
    """Read a playlist file (JSON when it ends in .json or starts with '{' / '[')."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise UserError("playlist not found", p) from None
    except UnicodeDecodeError as e:
        raise UserError(f"is not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset "
                        f"{e.start}); save the playlist as UTF-8", p) from None
    except OSError as e:
        raise UserError(f"cannot read the playlist ({type(e).__name__})", p) from None
    base = p.parent
    stripped = text.lstrip()
    if p.suffix.lower() == ".json" or stripped.startswith(("{", "[")):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise UserError(f"not valid JSON (line {e.lineno}: {e.msg})", p) from None
        pl = parse_json(data, str(p), base)
    else:
        pl = parse_text(text, str(p), base)
    if not pl.tracks:
        raise UserError("the playlist lists no tracks", p)
    return pl


def unique_titles(titles: list[str]) -> tuple[list[str], list[str]]:
    """Make titles unique (case-insensitive): the 2nd "Song" becomes "Song (2)".
    Returns (titles, notes about the renamed ones)."""
    seen: set[str] = set()
    out, notes = [], []
    for t in titles:
        cand, k = t, 1
        while cand.casefold() in seen:
            k += 1
            cand = f"{t} ({k})"
        if cand != t:
            notes.append(f"duplicate title {t!r} renamed to {cand!r}")
        seen.add(cand.casefold())
        out.append(cand)
    return out, notes


_UNSAFE = re.compile(r'[\x00-\x1f/\\:*?"<>|]')


def title_from_name(stem: str) -> str:
    """A file name (without extension) as a title: valid Unicode text. A name that is not
    UTF-8 reaches Python as surrogate escapes, which no CUE or JSON can hold; its
    undecodable bytes become U+FFFD."""
    return stem.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def safe_filename(title: str, max_len: int = 120, max_bytes: int = 200) -> str:
    """A title made safe as a file name on common filesystems: at most ``max_len``
    characters and ``max_bytes`` bytes of UTF-8 (a name may have 255 bytes, and
    "NN - " and the extension come on top; 100 CJK characters are 300 bytes)."""
    name = _UNSAFE.sub("_", title).strip().strip(".")[:max_len]
    name = name.encode("utf-8", "surrogatepass")[:max_bytes].decode("utf-8", "ignore")
    return name.rstrip() or "untitled"
