"""Training data: track lists from common layouts and random fixed-length audio excerpts.

Track sources (each returns ``list[Track]``; a track's ``group`` is the split key):

* :func:`scan_folder`   -- any folder of audio files, searched recursively
  (group = parent folder by default: one album per folder).
* :func:`scan_musdb`    -- MUSDB18-HQ: ``{train,test}/<Artist - Title>/mixture.wav``
  (mixtures only; group = artist).
* :func:`scan_fma`      -- FMA (fma_full / fma_large / ...): ``000/000002.mp3`` with
  ``fma_metadata/tracks.csv`` when present (group = album id, or artist id).
* :func:`scan_jamendo`  -- MTG-Jamendo: ``NN/ID.mp3`` or ``NN/ID.low.mp3`` with an
  ``autotagging.tsv``-style file when present (group = album id, or artist id).
* :func:`scan_manifest` -- the corpus manifest written by :mod:`train.corpus` (group = package).

:class:`ExcerptDataset` turns tracks into a ``torch.utils.data.Dataset`` of random excerpts,
float32 tensors shaped ``(channels, samples)``. Item ``i`` of epoch ``e`` depends only on
``(seed, e, i)``, so a run resumes at the same data position and any worker count gives the
same batches. Train/validation splits are by group (never by excerpt): a stable hash of
the group name decides, see :func:`split_of`.

Example::

    cfg = ExcerptConfig(excerpt_s=6.0, sample_rate_hz=44100, channels=2)
    train = ManifestDataset("~/.cache/automaster/corpus/manifest.jsonl", cfg, split="train")
    train.set_epoch(epoch)                      # before iterating each epoch
    x = train[0]                                # torch.float32, (2, 264600)
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import logging
import math
import re
from collections.abc import Iterable, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
import soundfile as sf
import torch
from scipy.signal import resample_poly
from torch.utils.data import Dataset

from train.corpus import read_manifest

LOG = logging.getLogger("train.data")

AUDIO_EXTENSIONS = frozenset({".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".w64", ".caf"})
Split = Literal["train", "val", "all"]
ChannelMode = Literal["stereo", "mono", "keep"]
_RESAMPLE_WINDOW = ("kaiser", 10.0)  # ~100 dB stop-band attenuation
_RESAMPLE_HALF_WIDTH = 10  # resample_poly's filter half-length, in units of max(up, down)


class DataError(RuntimeError):
    """A problem with the training data that the user must fix (a bad path, unreadable or
    too-short files, no room for a validation split). ``automaster-train`` reports it in
    one line and exits with status 2."""


@dataclasses.dataclass(frozen=True)
class Track:
    """One audio file. ``group`` is the split key (album, artist or package), prefixed by source."""

    path: Path
    group: str
    source: str = "folder"
    duration_s: float | None = None


# --------------------------------------------------------------------------- scanning


def _is_audio(path: Path, extensions: Iterable[str] = AUDIO_EXTENSIONS) -> bool:
    return path.is_file() and path.suffix.lower() in extensions and not path.name.startswith(".")


def _require_dir(root: Path | str, what: str) -> Path:
    path = Path(root).expanduser()
    if not path.is_dir():
        raise ValueError(f"{what}: not a directory: {path}")
    return path


def scan_folder(root: Path | str, group_by: Literal["parent", "top", "file"] = "parent") -> list[Track]:
    """Audio files under ``root`` (recursive, sorted).

    group_by: "parent" = the file's folder (album-per-folder collections), "top" = the first
    folder below ``root`` (artist/album-per-folder), "file" = each file alone.
    """
    root = _require_dir(root, "scan_folder")
    if group_by not in ("parent", "top", "file"):
        raise ValueError(f"group_by must be 'parent', 'top' or 'file', got {group_by!r}")
    tracks = []
    for path in sorted(p for p in root.rglob("*") if _is_audio(p)):
        rel = path.relative_to(root)
        if group_by == "parent":
            key = rel.parent.as_posix()
        elif group_by == "top":
            key = rel.parts[0] if len(rel.parts) > 1 else rel.as_posix()
        else:
            key = rel.as_posix()
        tracks.append(Track(path, f"folder:{key}", "folder"))
    return tracks


def probe_durations(tracks: Sequence[Track]) -> tuple[list[Track], list[tuple[Path, str]]]:
    """Read each track's header: (tracks with ``duration_s`` set, [(path, reason)] for the
    files that cannot be opened). Tracks that already know their duration are kept as is."""
    good, bad = [], []
    for t in tracks:
        if t.duration_s is not None:
            good.append(t)
            continue
        try:
            info = sf.info(str(t.path))
            if info.samplerate <= 0 or info.frames <= 0:
                raise ValueError("no audio frames")
        except Exception as exc:  # LibsndfileError, RuntimeError, TypeError from odd headers
            bad.append((t.path, " ".join(str(exc).split()) or type(exc).__name__))
            continue
        good.append(dataclasses.replace(t, duration_s=float(info.frames) / float(info.samplerate)))
    return good, bad


def scan_musdb(root: Path | str, subsets: Sequence[str] = ("train", "test")) -> list[Track]:
    """MUSDB18-HQ mixtures: ``root/<subset>/<Artist - Title>/mixture.wav`` (group = artist)."""
    root = _require_dir(root, "scan_musdb")
    tracks = []
    for subset in subsets:
        subset_dir = root / subset
        if not subset_dir.is_dir():
            continue
        for track_dir in sorted(p for p in subset_dir.iterdir() if p.is_dir()):
            mixture = track_dir / "mixture.wav"
            if not mixture.is_file():
                continue
            artist = track_dir.name.split(" - ", 1)[0].strip()
            tracks.append(Track(mixture, f"musdb:artist:{artist}", "musdb"))
    if not tracks:
        raise ValueError(f"no MUSDB18-HQ mixtures under {root} (expected {'|'.join(subsets)}/<track>/mixture.wav)")
    return tracks


_FMA_FILE_RE = re.compile(r"^(\d{6})\.[A-Za-z0-9]+$")
_FMA_DIR_RE = re.compile(r"^\d{3}$")


def _fma_audio_dirs(root: Path) -> list[Path]:
    """The folder(s) holding ``NNN/`` subfolders: ``root`` itself or its ``fma_*`` children."""
    if any(_FMA_DIR_RE.match(p.name) and p.is_dir() for p in root.iterdir()):
        return [root]
    return sorted(
        p for p in root.iterdir()
        if p.is_dir() and p.name.startswith("fma_") and p.name != "fma_metadata"
        and any(_FMA_DIR_RE.match(q.name) for q in p.iterdir())
    )


def read_fma_tracks_csv(path: Path | str) -> dict[int, tuple[str, str]]:
    """``tracks.csv`` of fma_metadata -> {track_id: (album_id, artist_id)} ("" when missing).

    The file has a three-line header: column groups ("album", "artist", ...), field names
    ("id", ...) and "track_id".
    """
    path = Path(path)
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        try:
            groups, fields = next(reader), next(reader)
        except StopIteration as exc:
            raise ValueError(f"{path}: truncated FMA tracks.csv header") from exc
        columns = {(g.strip(), f.strip()): i for i, (g, f) in enumerate(zip(groups, fields))}
        album_col, artist_col = columns.get(("album", "id")), columns.get(("artist", "id"))
        if album_col is None and artist_col is None:
            raise ValueError(f"{path}: no album/id or artist/id column; not an FMA tracks.csv")
        table = {}
        for row in reader:
            if not row or not row[0].strip().isdigit():
                continue  # the third header line ("track_id,,,") or junk
            album = row[album_col].strip() if album_col is not None and album_col < len(row) else ""
            artist = row[artist_col].strip() if artist_col is not None and artist_col < len(row) else ""
            table[int(row[0])] = (album, artist)
    return table


def scan_fma(root: Path | str, metadata: Path | str | None = None,
             group_by: Literal["album", "artist"] = "album") -> list[Track]:
    """FMA audio (``NNN/NNNNNN.mp3``) under ``root`` = an ``fma_*`` folder or their parent.

    ``metadata``: path to ``tracks.csv``; by default ``fma_metadata/tracks.csv`` is looked for
    in ``root`` and its parent. Without it each track is its own group (albums may then leak
    across the split: a warning is logged).
    """
    root = _require_dir(root, "scan_fma")
    if group_by not in ("album", "artist"):
        raise ValueError(f"group_by must be 'album' or 'artist', got {group_by!r}")
    if metadata is None:
        candidates = [root / "fma_metadata" / "tracks.csv", root.parent / "fma_metadata" / "tracks.csv"]
        metadata = next((c for c in candidates if c.is_file()), None)
    elif not Path(metadata).is_file():
        raise ValueError(f"FMA metadata not found: {metadata}")
    table = read_fma_tracks_csv(metadata) if metadata is not None else {}
    if not table:
        LOG.warning("FMA: no tracks.csv; grouping by track (album leakage across splits possible)")
    tracks = []
    for audio_dir in _fma_audio_dirs(root):
        for sub in sorted(p for p in audio_dir.iterdir() if p.is_dir() and _FMA_DIR_RE.match(p.name)):
            for path in sorted(sub.iterdir()):
                match = _FMA_FILE_RE.match(path.name)
                if not match or not _is_audio(path):
                    continue
                track_id = int(match.group(1))
                album, artist = table.get(track_id, ("", ""))
                key = album if group_by == "album" else artist
                key = key or artist or album  # fall back to the other id when one is empty
                group = f"fma:{group_by}:{key}" if key else f"fma:track:{track_id}"
                tracks.append(Track(path, group, "fma"))
    if not tracks:
        raise ValueError(f"no FMA audio under {root} (expected [fma_*/]NNN/NNNNNN.mp3)")
    return tracks


_JAMENDO_FILE_RE = re.compile(r"^(\d+)(\.low)?\.[A-Za-z0-9]+$")


def _jamendo_id(text: str) -> int | None:
    digits = re.search(r"(\d+)", text)
    return int(digits.group(1)) if digits else None


def read_jamendo_tsv(path: Path | str) -> dict[int, tuple[str, str]]:
    """An MTG-Jamendo metadata TSV (``TRACK_ID ARTIST_ID ALBUM_ID PATH ...``) ->
    {track number: (album_id, artist_id)}."""
    path = Path(path)
    table = {}
    with path.open(encoding="utf-8") as fh:
        header = fh.readline().rstrip("\n").split("\t")
        try:
            t_col, ar_col, al_col = header.index("TRACK_ID"), header.index("ARTIST_ID"), header.index("ALBUM_ID")
        except ValueError as exc:
            raise ValueError(f"{path}: not an MTG-Jamendo TSV (need TRACK_ID, ARTIST_ID, ALBUM_ID)") from exc
        for line in fh:
            cells = line.rstrip("\n").split("\t")
            if len(cells) <= max(t_col, ar_col, al_col):
                continue
            track = _jamendo_id(cells[t_col])
            if track is not None:
                table[track] = (cells[al_col].strip(), cells[ar_col].strip())
    return table


def _find_jamendo_tsv(root: Path) -> Path | None:
    for folder in (root, root.parent, root / "data", root.parent / "data"):
        if not folder.is_dir():
            continue
        for name in ("autotagging.tsv", "raw_30s.tsv", "raw.tsv"):
            if (folder / name).is_file():
                return folder / name
    return None


def scan_jamendo(root: Path | str, metadata: Path | str | None = None,
                 group_by: Literal["album", "artist"] = "album") -> list[Track]:
    """MTG-Jamendo audio ``root/NN/ID.mp3`` (or ``ID.low.mp3``; one copy per ID is used).

    ``metadata``: an ``autotagging.tsv``-style file; by default looked for in ``root`` and its
    parent (and their ``data/``). Without it each track is its own group (warning logged).
    """
    root = _require_dir(root, "scan_jamendo")
    if group_by not in ("album", "artist"):
        raise ValueError(f"group_by must be 'album' or 'artist', got {group_by!r}")
    if metadata is None:
        metadata = _find_jamendo_tsv(root)
    elif not Path(metadata).is_file():
        raise ValueError(f"MTG-Jamendo metadata not found: {metadata}")
    table = read_jamendo_tsv(metadata) if metadata is not None else {}
    if not table:
        LOG.warning("MTG-Jamendo: no metadata TSV; grouping by track (album leakage possible)")
    chosen: dict[int, Path] = {}
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and p.name.isdigit()):
        for path in sorted(sub.iterdir()):
            match = _JAMENDO_FILE_RE.match(path.name)
            if not match or not _is_audio(path):
                continue
            track_id = int(match.group(1))
            if track_id not in chosen or (not match.group(2) and ".low." in chosen[track_id].name):
                chosen[track_id] = path  # prefer full quality over .low when both exist
    tracks = []
    for track_id, path in sorted(chosen.items()):
        album, artist = table.get(track_id, ("", ""))
        key = (album if group_by == "album" else artist) or artist or album
        tracks.append(Track(path, f"jamendo:{group_by}:{key}" if key else f"jamendo:track:{track_id}", "jamendo"))
    if not tracks:
        raise ValueError(f"no MTG-Jamendo audio under {root} (expected NN/ID.mp3)")
    return tracks


def scan_manifest(manifest: Path | str) -> list[Track]:
    """Tracks of a :mod:`train.corpus` manifest.jsonl (paths relative to its folder; group = package)."""
    manifest = Path(manifest).expanduser()
    base = manifest.parent
    return [
        Track(base / rec["file"], f"package:{rec['package']}", "corpus", float(rec["duration_s"]))
        for rec in read_manifest(manifest)
    ]


# --------------------------------------------------------------------------- splits


def group_hash(group: str, salt: str = "") -> float:
    """Stable hash of a group name in [0, 1) (SHA-1; independent of Python's hash seed)."""
    digest = hashlib.sha1(f"{salt}\x00{group}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def split_of(group: str, val_fraction: float, salt: str = "") -> Literal["train", "val"]:
    """"val" if the group's stable hash falls below ``val_fraction``, else "train"."""
    if not 0.0 <= val_fraction <= 1.0:
        raise ValueError(f"val_fraction must be in [0, 1], got {val_fraction}")
    return "val" if group_hash(group, salt) < val_fraction else "train"


def val_groups(groups: Iterable[str], val_fraction: float, salt: str = "", min_val_groups: int = 1) -> set[str]:
    """The validation groups: those :func:`split_of` sends to "val".

    With few groups the hash may pick none; then the ``min_val_groups`` lowest-hash groups are
    used (at most all but one group), so small collections still get a validation set.
    """
    unique = sorted(set(groups))
    chosen = {g for g in unique if split_of(g, val_fraction, salt) == "val"}
    if val_fraction > 0 and len(chosen) < min_val_groups and len(unique) > 1:
        ranked = sorted(unique, key=lambda g: group_hash(g, salt))
        chosen |= set(ranked[: min(min_val_groups, len(unique) - 1)])
    return chosen


def split_tracks(tracks: Sequence[Track], split: Split, val_fraction: float = 0.1, salt: str = "",
                 min_val_groups: int = 1) -> list[Track]:
    """The tracks of one split ("train", "val" or "all"); groups never straddle splits."""
    if split not in ("train", "val", "all"):
        raise ValueError(f"split must be 'train', 'val' or 'all', got {split!r}")
    if split == "all":
        return list(tracks)
    val = val_groups((t.group for t in tracks), val_fraction, salt, min_val_groups)
    return [t for t in tracks if (t.group in val) == (split == "val")]


# --------------------------------------------------------------------------- audio helpers


def resample(audio: np.ndarray, orig_hz: int, target_hz: int) -> np.ndarray:
    """Polyphase resampling along the last axis (Kaiser window, beta 10). (..., n) -> (..., m)."""
    if orig_hz <= 0 or target_hz <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_hz} -> {target_hz}")
    if orig_hz == target_hz:
        return audio
    ratio = Fraction(target_hz, orig_hz)
    out = resample_poly(audio, ratio.numerator, ratio.denominator, axis=-1, window=_RESAMPLE_WINDOW)
    return out.astype(np.float32, copy=False)


def _resample_margin(orig_hz: int, target_hz: int) -> int:
    """Input frames of filter context read on each side of an excerpt.

    At least the polyphase filter's half-length, rounded up to a multiple of the decimation
    factor so that the excerpt start falls exactly on an output sample.
    """
    if orig_hz == target_hz:
        return 0
    ratio = Fraction(target_hz, orig_hz)
    half = math.ceil(_RESAMPLE_HALF_WIDTH * max(ratio.numerator, ratio.denominator) / ratio.numerator) + 1
    return math.ceil(half / ratio.denominator) * ratio.denominator


def downmix_to_stereo(audio: np.ndarray) -> np.ndarray:
    """(channels>2, n) -> (2, n). 5.1 (L R C LFE Ls Rs) uses ITU-R BS.775 gains without LFE;
    other layouts average even channels to left and odd channels to right."""
    if audio.ndim != 2 or audio.shape[0] <= 2:
        raise ValueError(f"expected (channels>2, samples), got {audio.shape}")
    if audio.shape[0] == 6:
        g = 1.0 / math.sqrt(2.0)
        left = audio[0] + g * audio[2] + g * audio[4]
        right = audio[1] + g * audio[2] + g * audio[5]
        return np.stack([left, right]) / (1.0 + 2.0 * g)
    return np.stack([audio[0::2].mean(axis=0), audio[1::2].mean(axis=0)])


def convert_channels(audio: np.ndarray, mode: ChannelMode) -> np.ndarray:
    """(c, n) -> (c', n). "stereo": mono duplicated, >2 downmixed; "mono": channel mean;
    "keep": mono stays mono, stereo stays stereo, >2 downmixed to stereo."""
    if audio.ndim != 2 or audio.shape[0] < 1:
        raise ValueError(f"expected (channels, samples), got {audio.shape}")
    channels = audio.shape[0]
    if mode == "mono":
        return audio.mean(axis=0, keepdims=True) if channels > 1 else audio
    if mode not in ("stereo", "keep"):
        raise ValueError(f"channel mode must be 'stereo', 'mono' or 'keep', got {mode!r}")
    if channels > 2:
        return downmix_to_stereo(audio)
    if channels == 1 and mode == "stereo":
        return np.repeat(audio, 2, axis=0)
    return audio


def level_db(audio: np.ndarray) -> float:
    """Ungated, unweighted loudness-like level: -0.691 + 10 log10(sum_c mean(x_c^2)) dB.

    Equals integrated LUFS for full-scale pink-ish material within a few dB; cheap enough
    to reject near-silent excerpts. audio: (channels, samples).
    """
    power = float(np.sum(np.mean(np.square(audio, dtype=np.float64), axis=-1)))
    return -0.691 + 10.0 * math.log10(power) if power > 0 else -math.inf


def read_excerpt(path: Path | str, start_s: float, duration_s: float, sample_rate_hz: int,
                 channels: ChannelMode = "stereo") -> np.ndarray:
    """Read ``duration_s`` seconds from ``start_s`` (seconds at the file's rate), resampled.

    Only the needed frames (plus filter context) are decoded, via seek. Returns float32
    (channels, round(duration_s * sample_rate_hz)); zero-padded past the end of the file.
    """
    if duration_s <= 0 or sample_rate_hz <= 0:
        raise ValueError(f"duration_s and sample_rate_hz must be > 0, got {duration_s}, {sample_rate_hz}")
    if start_s < 0:
        raise ValueError(f"start_s must be >= 0, got {start_s}")
    n_out = int(round(duration_s * sample_rate_hz))
    with sf.SoundFile(str(path)) as fh:
        src_hz = int(fh.samplerate)
        margin = _resample_margin(src_hz, sample_rate_hz)
        start = int(round(start_s * src_hz))
        if start >= fh.frames:
            raise ValueError(f"{path}: start {start_s:.2f} s is past the end ({fh.frames / src_hz:.2f} s)")
        n_in = int(math.ceil(n_out * src_hz / sample_rate_hz)) + 1
        first = start - margin  # may be < 0: zeros stand in for samples before the file start
        fh.seek(max(first, 0))
        block = fh.read(start - max(first, 0) + n_in + margin, dtype="float32", always_2d=True).T
    if first < 0:
        block = np.pad(block, ((0, 0), (-first, 0)))
    audio = convert_channels(block, channels)
    audio = resample(audio, src_hz, sample_rate_hz)
    offset = margin * sample_rate_hz // src_hz  # exact: margin is a multiple of the decimation
    audio = audio[:, offset : offset + n_out]
    if audio.shape[1] < n_out:
        audio = np.pad(audio, ((0, 0), (0, n_out - audio.shape[1])))
    return np.ascontiguousarray(audio, dtype=np.float32)


def _frames_and_rate(path: Path) -> tuple[int, int]:
    info = sf.info(str(path))
    return int(info.frames), int(info.samplerate)


# --------------------------------------------------------------------------- dataset


@dataclasses.dataclass(frozen=True)
class ExcerptConfig:
    """How excerpts are drawn.

    excerpt_s: excerpt length in seconds; sample_rate_hz: output rate;
    channels: "stereo" (mono duplicated, >2 downmixed), "mono" or "keep" (mono stays mono);
    silence_db: excerpts below this :func:`level_db` are rejected;
    tries_per_track: positions tried in a track before another random track is drawn;
    max_tries: total attempts before giving up on finding a non-silent excerpt (the loudest
    attempt is then returned); seed: base of every random choice.
    """

    excerpt_s: float = 6.0
    sample_rate_hz: int = 44100
    channels: ChannelMode = "stereo"
    silence_db: float = -50.0
    tries_per_track: int = 3
    max_tries: int = 12
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.excerpt_s > 0:
            raise ValueError(f"excerpt_s must be > 0, got {self.excerpt_s}")
        if self.sample_rate_hz <= 0:
            raise ValueError(f"sample_rate_hz must be > 0, got {self.sample_rate_hz}")
        if self.channels not in ("stereo", "mono", "keep"):
            raise ValueError(f"channels must be 'stereo', 'mono' or 'keep', got {self.channels!r}")
        if self.tries_per_track < 1 or self.max_tries < 1:
            raise ValueError("tries_per_track and max_tries must be >= 1")

    @property
    def num_samples(self) -> int:
        """Samples per excerpt at the output rate."""
        return int(round(self.excerpt_s * self.sample_rate_hz))


class Excerpt(NamedTuple):
    """An excerpt with its provenance. audio: float32 (channels, samples)."""

    audio: torch.Tensor
    track: Track
    start_s: float
    level_db: float


class ExcerptDataset(Dataset):
    """Random excerpts of ``tracks``; item ``i`` is a function of (seed, epoch, i) only.

    ``__getitem__`` returns a float32 tensor (channels, config.num_samples). Tracks are
    visited in a per-epoch permutation (item i -> track perm[i % n_tracks]); near-silent
    excerpts are retried at other positions, then other tracks (bounded by config.max_tries).
    ``num_excerpts`` (default: one per track) is the epoch length. Call :meth:`set_epoch`
    before each epoch (and before creating the DataLoader iterator, so workers see it).
    """

    def __init__(self, tracks: Sequence[Track], config: ExcerptConfig | None = None, *,
                 split: Split = "all", val_fraction: float = 0.1, split_salt: str = "",
                 num_excerpts: int | None = None) -> None:
        self.config = config or ExcerptConfig()
        kept = split_tracks(tracks, split, val_fraction, split_salt)
        self.tracks: list[Track] = [t for t in kept if t.duration_s is None or t.duration_s >= self.config.excerpt_s]
        short = len(kept) - len(self.tracks)
        if short:
            LOG.warning("%d of %d %s tracks are shorter than the %.1f s excerpt: left out", short, len(kept), split,
                        self.config.excerpt_s)
        if not self.tracks:
            why = (f"all {short} of its tracks are shorter than the {self.config.excerpt_s:g} s excerpt" if short
                   else "the split holds no track group")
            raise ValueError(f"no tracks for split {split!r} ({why}; {len(tracks)} tracks given, "
                             f"val_fraction={val_fraction})")
        if num_excerpts is not None and num_excerpts < 1:
            raise ValueError(f"num_excerpts must be >= 1, got {num_excerpts}")
        self.num_excerpts = num_excerpts or len(self.tracks)
        self.split = split
        self.epoch = 0
        self._perm: tuple[int, np.ndarray] | None = None
        self._info: dict[Path, tuple[int, int]] = {}
        self.cache = None  # a train.cache.AudioCache: excerpts are sliced from it when it holds the track

    # -- bookkeeping --------------------------------------------------------------

    def __len__(self) -> int:
        return self.num_excerpts

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose excerpts ``__getitem__`` returns."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self.epoch = int(epoch)

    @property
    def groups(self) -> list[str]:
        """Sorted distinct groups of this dataset's tracks."""
        return sorted({t.group for t in self.tracks})

    def _rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.config.seed, self.epoch, index])

    def _epoch_order(self) -> np.ndarray:
        if self._perm is None or self._perm[0] != self.epoch:
            rng = np.random.default_rng([self.config.seed, self.epoch, 2**32 - 1])  # distinct from items
            self._perm = (self.epoch, rng.permutation(len(self.tracks)))
        return self._perm[1]

    def _cached(self, track: Track):
        """The cache when it holds ``track`` at this dataset's rate and channel layout, else None."""
        c = self.cache
        if c is None or self.config.channels != "stereo" or c.sample_rate != self.config.sample_rate_hz:
            return None
        return c if track.path in c else None

    def _track_info(self, track: Track) -> tuple[int, int]:
        if track.path not in self._info:
            self._info[track.path] = _frames_and_rate(track.path)
        return self._info[track.path]

    # -- sampling -----------------------------------------------------------------

    def sample(self, index: int) -> Excerpt:
        """Item ``index`` with its track, start time and level."""
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} excerpts")
        cfg = self.config
        rng = self._rng(index)
        track_idx = int(self._epoch_order()[index % len(self.tracks)])
        best: Excerpt | None = None
        failed = False
        last_error = ""
        for attempt in range(cfg.max_tries):
            if attempt and (failed or attempt % cfg.tries_per_track == 0):
                track_idx = int(rng.integers(len(self.tracks)))
            track = self.tracks[track_idx]
            try:
                cached = self._cached(track)
                frames, rate = (cached.frames(track.path), cached.sample_rate) if cached else self._track_info(track)
                span_s = frames / rate - cfg.excerpt_s
                start_s = float(rng.uniform(0.0, span_s)) if span_s > 0 else 0.0
                if cached:
                    audio = cached.read(track.path, start_s, cfg.num_samples)
                else:
                    audio = read_excerpt(track.path, start_s, cfg.excerpt_s, cfg.sample_rate_hz, cfg.channels)
            except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
                LOG.warning("unreadable track %s: %s", track.path, exc)
                failed = True
                last_error = f"{track.path}: {' '.join(str(exc).split())}"
                continue
            failed = False
            level = level_db(audio)
            candidate = Excerpt(torch.from_numpy(audio), track, start_s, level)
            if level >= cfg.silence_db:
                return candidate
            if best is None or level > best.level_db:
                best = candidate
        if best is None:
            raise DataError(f"item {index}: no readable track in {cfg.max_tries} tries (last: {last_error})")
        LOG.debug("item %d: no excerpt above %.1f dB in %d tries", index, cfg.silence_db, cfg.max_tries)
        return best

    def __getitem__(self, index: int) -> torch.Tensor:
        """float32 tensor (channels, config.num_samples)."""
        return self.sample(index).audio


class FolderDataset(ExcerptDataset):
    """Excerpts from any folder of audio files (see :func:`scan_folder`)."""

    def __init__(self, root: Path | str, config: ExcerptConfig | None = None, *,
                 group_by: Literal["parent", "top", "file"] = "parent", split: Split = "all",
                 val_fraction: float = 0.1, split_salt: str = "", num_excerpts: int | None = None) -> None:
        tracks = scan_folder(root, group_by)
        if not tracks:
            raise ValueError(f"no audio files ({', '.join(sorted(AUDIO_EXTENSIONS))}) under {root}")
        tracks, bad = probe_durations(tracks)  # durations: short tracks are filtered, not zero-padded
        for path, reason in bad[:5]:
            LOG.warning("unreadable audio file %s: %s", path, reason)
        if len(bad) > 5:
            LOG.warning("... and %d more unreadable files under %s", len(bad) - 5, root)
        if not tracks:
            raise ValueError(f"none of the {len(bad)} audio files under {root} is readable "
                             f"(e.g. {bad[0][0].name}: {bad[0][1]})")
        super().__init__(tracks, config, split=split, val_fraction=val_fraction, split_salt=split_salt,
                         num_excerpts=num_excerpts)


class MusdbDataset(ExcerptDataset):
    """Excerpts of MUSDB18-HQ mixtures (see :func:`scan_musdb`); split groups are artists."""

    def __init__(self, root: Path | str, config: ExcerptConfig | None = None, *,
                 subsets: Sequence[str] = ("train", "test"), split: Split = "all", val_fraction: float = 0.1,
                 split_salt: str = "", num_excerpts: int | None = None) -> None:
        super().__init__(scan_musdb(root, subsets), config, split=split, val_fraction=val_fraction,
                         split_salt=split_salt, num_excerpts=num_excerpts)


class FmaDataset(ExcerptDataset):
    """Excerpts of FMA audio (see :func:`scan_fma`); split groups are albums (or artists)."""

    def __init__(self, root: Path | str, config: ExcerptConfig | None = None, *,
                 metadata: Path | str | None = None, group_by: Literal["album", "artist"] = "album",
                 split: Split = "all", val_fraction: float = 0.1, split_salt: str = "",
                 num_excerpts: int | None = None) -> None:
        super().__init__(scan_fma(root, metadata, group_by), config, split=split, val_fraction=val_fraction,
                         split_salt=split_salt, num_excerpts=num_excerpts)


class JamendoDataset(ExcerptDataset):
    """Excerpts of MTG-Jamendo audio (see :func:`scan_jamendo`); split groups are albums (or artists)."""

    def __init__(self, root: Path | str, config: ExcerptConfig | None = None, *,
                 metadata: Path | str | None = None, group_by: Literal["album", "artist"] = "album",
                 split: Split = "all", val_fraction: float = 0.1, split_salt: str = "",
                 num_excerpts: int | None = None) -> None:
        super().__init__(scan_jamendo(root, metadata, group_by), config, split=split,
                         val_fraction=val_fraction, split_salt=split_salt, num_excerpts=num_excerpts)


class ManifestDataset(ExcerptDataset):
    """Excerpts of the :mod:`train.corpus` corpus (see :func:`scan_manifest`); groups are packages."""

    def __init__(self, manifest: Path | str, config: ExcerptConfig | None = None, *,
                 split: Split = "all", val_fraction: float = 0.1, split_salt: str = "",
                 num_excerpts: int | None = None) -> None:
        super().__init__(scan_manifest(manifest), config, split=split, val_fraction=val_fraction,
                         split_salt=split_salt, num_excerpts=num_excerpts)


SCANNERS = {
    "folder": scan_folder,
    "musdb": scan_musdb,
    "fma": scan_fma,
    "jamendo": scan_jamendo,
    "manifest": scan_manifest,
}


def scan(kind: str, root: Path | str, **kwargs: object) -> list[Track]:
    """Dispatch to ``scan_<kind>`` (folder, musdb, fma, jamendo, manifest) -- handy from configs."""
    if kind not in SCANNERS:
        raise ValueError(f"unknown data source {kind!r}; choose from {sorted(SCANNERS)}")
    return SCANNERS[kind](root, **kwargs)  # type: ignore[operator]
