"""DDP 2.00 image of the album for CD replication: writer, reader, verification.

A DDP (Disc Description Protocol) fileset is a folder; for an audio CD (CD-DA) it holds

- ``DDPID`` (128 bytes): the level ``DDP 2.00``, the disc's UPC/EAN, the disc type ``CD``;
- ``DDPMS`` (n x 128 bytes): one map packet (``VVVM``) per stream, naming its file: the
  PQ descriptor (``S0``, subcode ``PQ DESCR``, length in bytes) and the main data
  (``D0``, CD mode ``DA``, storage mode ``7`` = whole 2352-byte sectors, length in
  sectors, ``PRE2`` = the 150 sectors of track 1's pregap at the image's start);
- ``PQDESCR`` (n x 64 bytes): the Q subcode as entries (``VVVS``): the lead-in (track
  ``00``, carrying the UPC/EAN), per track an INDEX 00 entry (always for track 1, at
  00:00:00; for the others when a gap precedes them) and an INDEX 01 entry, each with
  the absolute time MMSSFF (75 frames a second; time 0 = the image's first sector), the
  control nibble in hexadecimal (bit 0 pre-emphasis, bit 1 digital copy permitted) and
  ADR ``1``, the track's ISRC on its first entry; then the lead-out (``AA`` index 01 at
  the image's end), written twice as the studied writers do. The descriptor carries
  absolute times only; a track's relative time (the Q channel's countdown through the
  pregap) follows from its INDEX 00 and INDEX 01 and is not stored;
- ``IMAGE.DAT``: the program as raw CD audio, no header: 16-bit signed little-endian,
  left then right, 588 stereo samples (2352 bytes) a sector; first track 1's 2-second
  pregap (150 sectors of digital silence), then the album; the last sector padded with
  silence;
- ``CHECKSUM.MD5``: not part of DDP but delivered with it and checked by plants and DDP
  tools: ``<md5> *<name>`` per file (DDPID, DDPMS, PQDESCR, IMAGE.DAT), LF line ends.

Fixed-width ASCII fields: text left-aligned and space-padded, numbers right-aligned;
unused fields are spaces. This writer zero-pads numbers (as Sonoris and HOFA do; cue2ddp
pads with spaces); the reader accepts both.

Sources of the layouts (field offsets, widths and values; no code was taken from them):

- the ddp-reverse-eng project's description of the DDP 2.00 audio-CD fileset,
  ``spec/ddp2.md`` of github.com/ddp-reverse-eng/ddp-reverse-eng (MIT), sections 3-6
  and 9 (DDPID, DDPMS, PQ descriptor, audio image, checksum files), with its
  reference filesets ``exp/003-track2-pregap``, ``exp/005-isrc-upc``,
  ``exp/006-flags``, ``exp/014-three-tracks`` (the byte layout of real DDPMS and PQ
  files and the 150-sector pregap prepended to track 1);
- ddpLib (github.com/suntriprecords/ddpLib, GPL), read for the field order and widths
  of its DDP 2.00 loaders (``AbstractDdpIdLoader``, ``v20/DdpIdLoader``,
  ``AbstractMapPacketLoader``, ``v20/MapPacketLoader``, ``AbstractPqDescriptorLoader``)
  and the code lists (``v20/DataStreamType``, ``v20/SubCodeDescriptor``, ``CDMode``,
  ``v20/SourceStorageMode``);
- the Knurl DDP Player's parser (``parseDDPID``, ``parseMapStream``,
  ``parsePQStream``), whose explicit offsets agree with both.

Verification (:func:`verify_ddp`): the fileset is read back by :func:`read_ddp` (which
checks every structure and the MD5 file) and compared with what was meant: the catalog,
every track's INDEX 00 / INDEX 01 and ISRC, the lead-out, and the program audio, one
second at a time, against SHA-256 digests taken of the 16-bit samples as they were
handed to the writer.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from automaster.album.assemble import FRAMES_PER_SECOND, nearest_frame
from automaster.album.cue import msf
from automaster.album.playlist import CATALOG_RE, ISRC_RE

CD_RATE = 44100
SECTOR_SAMPLES = CD_RATE // FRAMES_PER_SECOND  # 588 stereo samples a sector (CD frame)
SECTOR_BYTES = SECTOR_SAMPLES * 4               # 2352
PREGAP_FRAMES = 2 * FRAMES_PER_SECOND           # track 1's pregap at the image's start
MIN_TRACK_FRAMES = 4 * FRAMES_PER_SECOND        # Red Book: a track is at least 4 s
MAX_TRACKS = 99
MAX_PROGRAM_FRAMES = (79 * 60 + 57) * FRAMES_PER_SECOND + 74  # 79:57:74 after the pregap
MAX_ADDRESS = (99 * 60 + 59) * FRAMES_PER_SECOND + 74         # MMSSFF's largest time

LEVEL = "DDP 2.00"
DDPID_NAME, DDPMS_NAME = "DDPID", "DDPMS"
PQ_NAME, IMAGE_NAME, CHECKSUM_NAME = "PQDESCR", "IMAGE.DAT", "CHECKSUM.MD5"
ID_BYTES, MAP_BYTES, PQ_BYTES = 128, 128, 64
DSI_WIDTH = 17
DIGEST_SAMPLES = CD_RATE  # the audio is compared one second at a time
FILES = (DDPID_NAME, DDPMS_NAME, PQ_NAME, IMAGE_NAME, CHECKSUM_NAME)

# (offset, width) of each field
DDPID_FIELDS = {"level": (0, 8), "upc": (8, 13), "mss": (21, 8), "msl": (29, 8),
                "med": (37, 1), "mid": (38, 48), "bk": (86, 1), "type": (87, 2),
                "nside": (89, 1), "side": (90, 1), "nlayer": (91, 1), "layer": (92, 1),
                "txt_size": (93, 2), "txt": (95, 33)}
MAP_FIELDS = {"mpv": (0, 4), "dst": (4, 2), "dsp": (6, 8), "dsl": (14, 8), "dss": (22, 8),
              "sub": (30, 8), "cdm": (38, 2), "ssm": (40, 1), "scr": (41, 1),
              "pre1": (42, 4), "pre2": (46, 4), "pst": (50, 4), "med": (54, 1),
              "trk": (55, 2), "idx": (57, 2), "isrc": (59, 12), "siz": (71, 3),
              "dsi": (74, DSI_WIDTH), "new": (91, 1), "pre1nxt": (92, 4),
              "pauseadd": (96, 8), "ofs": (104, 9), "pad": (113, 15)}
PQ_FIELDS = {"spv": (0, 4), "track": (4, 2), "index": (6, 2), "hours": (8, 2),
             "time": (10, 6), "c1": (16, 2), "c2": (18, 2), "isrc": (20, 12),
             "upc": (32, 13), "txt": (45, 19)}
DATA_STREAM_TYPES = ("D0", "D1", "D2", "D3", "D4", "T0", "T1", "T2", "T3", "S0")


# ---------------------------------------------------------------------------- layout
@dataclass(frozen=True)
class CdTrack:
    """A track's place on the CD, in CD frames (1/75 s) from the album's start (track 1's
    INDEX 01, which the image puts 150 frames in)."""

    start: int                 # INDEX 01
    pregap: int | None = None  # INDEX 00, before ``start``
    isrc: str | None = None


@dataclass(frozen=True)
class CdLayout:
    tracks: tuple[CdTrack, ...]
    frames: int                  # the album's length in CD frames (lead-out - 150)
    catalog: str | None = None   # UPC/EAN
    copy_permitted: bool = False  # Q control bit 1 (digital copy permitted)
    pre_emphasis: bool = False    # Q control bit 0 (never set for automaster's audio)

    @property
    def control(self) -> int:
        return (2 if self.copy_permitted else 0) | (1 if self.pre_emphasis else 0)


def album_cd_layout(starts: list[int], pregaps: list[int | None], total: int,
                    sample_rate: int, isrcs: list[str | None],
                    catalog: str | None) -> CdLayout:
    """The CD layout of an album timeline given in album samples (``assemble.Layout``:
    the cuts, INDEX 00 pregaps and the album's length; all on CD frames)."""
    tracks = tuple(CdTrack(nearest_frame(s, sample_rate),
                           None if g is None else nearest_frame(g, sample_rate), i)
                   for s, g, i in zip(starts, pregaps, isrcs))
    return CdLayout(tracks, nearest_frame(total, sample_rate), catalog)


def frames_text(frames: int) -> str:
    """CD frames -> "mm:ss:ff"."""
    return msf(frames * SECTOR_SAMPLES, CD_RATE)


def red_book_problem(layout: CdLayout, titles: list[str] | None = None) -> str | None:
    """Why the layout cannot be an audio CD (Red Book), or None: 1-99 tracks, each at
    least 4 s from its INDEX 01 to the next (or the lead-out), at most 79:57:74 of audio
    after track 1's pregap, times in order, codes well formed."""
    n = len(layout.tracks)
    if not 1 <= n <= MAX_TRACKS:
        return f"{n} tracks; a CD holds 1 to {MAX_TRACKS}"
    if layout.frames > MAX_PROGRAM_FRAMES:
        return (f"the album is {frames_text(layout.frames)} long; a CD holds at most "
                f"{frames_text(MAX_PROGRAM_FRAMES)}")
    if layout.tracks[0].start != 0 or layout.tracks[0].pregap is not None:
        return "track 1 must start the album"
    ends = [t.start for t in layout.tracks[1:]] + [layout.frames]
    prev = -1
    for k, (t, end) in enumerate(zip(layout.tracks, ends), 1):
        name = f"track {k}" + (f" ({titles[k - 1]!r})" if titles else "")
        if t.start <= prev or (t.pregap is not None and not prev < t.pregap < t.start):
            return f"{name}: its start or pregap is out of order"
        if end - t.start < MIN_TRACK_FRAMES:
            return (f"{name} is {(end - t.start) / FRAMES_PER_SECOND:.2f} s long; a CD track "
                    f"needs at least {MIN_TRACK_FRAMES // FRAMES_PER_SECOND} s (Red Book)")
        if t.isrc is not None and not ISRC_RE.match(t.isrc):
            return f"{name}: ISRC {t.isrc!r} is not 12 characters CCXXXYYNNNNN"
        prev = t.start
    if layout.catalog is not None and not CATALOG_RE.match(layout.catalog):
        return f"catalog {layout.catalog!r} must be 13 digits (UPC/EAN)"
    return None


# ---------------------------------------------------------------------------- writing
def _put(record: bytearray, fields: dict[str, tuple[int, int]], name: str,
         value: str | int | None) -> None:
    """Write one field: text left-aligned, numbers right-aligned with zeros; None = blank."""
    off, width = fields[name]
    if value is None:
        return
    text = f"{value:0{width}d}" if isinstance(value, int) else value.ljust(width)
    if len(text) != width or not text.isascii():
        raise ValueError(f"{name} {value!r} does not fit {width} ASCII characters")
    record[off:off + width] = text.encode("ascii")


def _record(size: int) -> bytearray:
    return bytearray(b" " * size)


def _ddpid(layout: CdLayout) -> bytes:
    r = _record(ID_BYTES)
    _put(r, DDPID_FIELDS, "level", LEVEL)
    _put(r, DDPID_FIELDS, "upc", layout.catalog)
    _put(r, DDPID_FIELDS, "type", "CD")
    return bytes(r)


def _map_packet(dst: str, length: int, name: str, *, sub: str | None = None,
                audio: bool = False) -> bytes:
    r = _record(MAP_BYTES)
    _put(r, MAP_FIELDS, "mpv", "VVVM")
    _put(r, MAP_FIELDS, "dst", dst)
    _put(r, MAP_FIELDS, "dsl", length)
    _put(r, MAP_FIELDS, "sub", sub)
    if audio:
        _put(r, MAP_FIELDS, "dss", 0)
        _put(r, MAP_FIELDS, "cdm", "DA")
        _put(r, MAP_FIELDS, "ssm", "7")   # complete 2352-byte sectors
        _put(r, MAP_FIELDS, "scr", "0")   # not scrambled
        _put(r, MAP_FIELDS, "pre2", PREGAP_FRAMES)
    _put(r, MAP_FIELDS, "siz", DSI_WIDTH)
    _put(r, MAP_FIELDS, "dsi", name)
    return bytes(r)


def _pq_entry(track: str, index: int, frame: int, control: int, isrc: str | None = None,
              upc: str | None = None) -> bytes:
    if not 0 <= frame <= MAX_ADDRESS:
        raise ValueError(f"time {frame} frames is outside 00:00:00-99:59:74")
    r = _record(PQ_BYTES)
    _put(r, PQ_FIELDS, "spv", "VVVS")
    _put(r, PQ_FIELDS, "track", track)
    _put(r, PQ_FIELDS, "index", index)
    _put(r, PQ_FIELDS, "time", frames_text(frame).replace(":", ""))  # hours stay blank
    _put(r, PQ_FIELDS, "c1", f"{control:X}1")  # control nibble, ADR 1
    _put(r, PQ_FIELDS, "isrc", isrc)
    _put(r, PQ_FIELDS, "upc", upc)
    return bytes(r)


def pq_descriptor(layout: CdLayout) -> bytes:
    """The PQ descriptor stream of ``layout`` (times include the 150-frame pregap)."""
    out = [_pq_entry("00", 0, 0, 0, upc=layout.catalog)]  # lead-in
    for k, t in enumerate(layout.tracks, 1):
        pregap = 0 if k == 1 else (None if t.pregap is None else PREGAP_FRAMES + t.pregap)
        isrc = t.isrc
        if pregap is not None:
            out.append(_pq_entry(f"{k:02d}", 0, pregap, layout.control, isrc))
            isrc = None
        out.append(_pq_entry(f"{k:02d}", 1, PREGAP_FRAMES + t.start, layout.control, isrc))
    lead_out = _pq_entry("AA", 1, PREGAP_FRAMES + layout.frames, 0)
    out += [lead_out, lead_out]  # twice, as cue2ddp, Sonoris and HOFA write it
    return b"".join(out)


@dataclass
class Written:
    """What :func:`write_ddp` wrote: file names, their MD5s and the audio digests."""

    folder: Path
    files: list[str]
    md5: dict[str, str]
    digests: list[str]          # SHA-256 of each second of the program's 16-bit audio
    sectors: int                # IMAGE.DAT sectors = the lead-out's time


class _Digests:
    """SHA-256 of consecutive ``DIGEST_SAMPLES``-sample pieces of a byte stream."""

    def __init__(self) -> None:
        self.size = DIGEST_SAMPLES * 4
        self.done: list[str] = []
        self.h = hashlib.sha256()
        self.fill = 0

    def update(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while len(view):
            take = min(len(view), self.size - self.fill)
            self.h.update(view[:take])
            self.fill += take
            view = view[take:]
            if self.fill == self.size:
                self.finish()

    def finish(self) -> list[str]:
        if self.fill:
            self.done.append(self.h.hexdigest())
            self.h, self.fill = hashlib.sha256(), 0
        return self.done


def write_ddp(folder: Path, layout: CdLayout, audio: Iterable[np.ndarray]) -> Written:
    """Write the fileset into the new folder ``folder``. ``audio`` yields the album's
    16-bit samples as int16 (n, 2) blocks, ``layout.frames`` x 588 samples in all (a last
    partial sector is padded with silence). Raises ValueError on a layout that is not an
    audio CD (before anything is written) or audio of another length (the caller discards
    the folder: the album writes it inside its temporary folder)."""
    problem = red_book_problem(layout)
    if problem:
        raise ValueError(problem)
    folder = Path(folder)
    folder.mkdir()
    want = layout.frames * SECTOR_SAMPLES
    md5 = {}
    digests = _Digests()
    h = hashlib.md5()
    got = 0
    with open(folder / IMAGE_NAME, "wb") as f:
        silence = bytes(PREGAP_FRAMES * SECTOR_BYTES)
        f.write(silence)
        h.update(silence)
        for block in audio:
            block = np.asarray(block)
            if block.dtype != np.int16 or block.ndim != 2 or block.shape[1] != 2:
                raise ValueError(f"audio blocks must be int16 (n, 2), got {block.dtype} "
                                 f"{block.shape}")
            got += block.shape[0]
            if got > want:
                raise ValueError(f"the audio is longer than the layout's {want} samples")
            data = np.ascontiguousarray(block, dtype="<i2").tobytes()
            f.write(data)
            h.update(data)
            digests.update(data)
        if want - got >= SECTOR_SAMPLES:
            raise ValueError(f"the audio has {got} samples; the layout needs {want}")
        pad = bytes((want - got) * 4)
        f.write(pad)
        h.update(pad)
        digests.update(pad)
    md5[IMAGE_NAME] = h.hexdigest()
    pq = pq_descriptor(layout)
    sectors = PREGAP_FRAMES + layout.frames
    streams = {PQ_NAME: pq,
               DDPMS_NAME: _map_packet("S0", len(pq), PQ_NAME, sub="PQ DESCR")
               + _map_packet("D0", sectors, IMAGE_NAME, audio=True),
               DDPID_NAME: _ddpid(layout)}
    for name, data in streams.items():
        (folder / name).write_bytes(data)
        md5[name] = hashlib.md5(data).hexdigest()
    order = (DDPID_NAME, DDPMS_NAME, PQ_NAME, IMAGE_NAME)
    (folder / CHECKSUM_NAME).write_bytes("".join(f"{md5[n]} *{n}\n" for n in order)
                                         .encode("ascii"))
    return Written(folder, list(FILES), {n: md5[n] for n in order}, digests.finish(), sectors)


# ---------------------------------------------------------------------------- reading
@dataclass
class DdpTrack:
    number: int
    index: dict[int, int]        # index number -> absolute time, CD frames from the image start
    isrc: str | None
    control: int                 # Q control nibble
    scms: bool = False           # ADR character "S": serial copy management

    @property
    def start(self) -> int:      # INDEX 01, image frames
        return self.index[1]

    @property
    def pregap(self) -> int | None:  # INDEX 00, image frames
        return self.index.get(0)

    @property
    def pre_emphasis(self) -> bool:
        return bool(self.control & 1)

    @property
    def copy_permitted(self) -> bool:
        return bool(self.control & 2)


@dataclass
class DdpImage:
    """A DDP fileset read back. Times are CD frames from the image's first sector;
    ``*_sample`` positions count from track 1's INDEX 01 (the album's first sample)."""

    folder: Path
    level: str
    catalog: str | None
    image_path: Path
    pq_path: Path
    sectors: int
    lead_out: int
    tracks: list[DdpTrack] = field(default_factory=list)
    checksums_checked: list[str] = field(default_factory=list)

    @property
    def program_start(self) -> int:
        """Image frame of the album's first sample (track 1's INDEX 01)."""
        return self.tracks[0].start

    def start_sample(self, k: int) -> int:
        """Album sample where track ``k`` (1-based) starts (its INDEX 01)."""
        return (self.tracks[k - 1].start - self.program_start) * SECTOR_SAMPLES

    def pregap_sample(self, k: int) -> int | None:
        g = self.tracks[k - 1].pregap
        return None if g is None or k == 1 else (g - self.program_start) * SECTOR_SAMPLES

    @property
    def program_samples(self) -> int:
        return (self.lead_out - self.program_start) * SECTOR_SAMPLES

    def samples(self) -> np.ndarray:
        """The whole image as int16 (n, 2), memory-mapped (read-only)."""
        data = np.memmap(self.image_path, dtype="<i2", mode="r")
        return data.reshape(-1, 2)

    def program_blocks(self, block: int = 1 << 20) -> Iterator[np.ndarray]:
        """The album's audio (from track 1's INDEX 01 to the lead-out) in int16 blocks."""
        x = self.samples()
        s0 = self.program_start * SECTOR_SAMPLES
        for s in range(s0, x.shape[0], block):
            yield np.asarray(x[s:s + block])


def _find(folder: Path, name: str) -> Path:
    """The file ``name`` in ``folder`` (a case-insensitive match if not exact)."""
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        raise ValueError(f"{name!r} is not a file name in the fileset")
    p = folder / name
    if p.is_file():
        return p
    for q in folder.iterdir() if folder.is_dir() else ():
        if q.name.upper() == name.upper() and q.is_file():
            return q
    raise ValueError(f"{name} is missing")


def _text(record: bytes, fields: dict[str, tuple[int, int]], name: str) -> str:
    off, width = fields[name]
    raw = record[off:off + width]
    try:
        return raw.decode("ascii").strip()
    except UnicodeDecodeError:
        raise ValueError(f"field {name} holds non-ASCII bytes {raw!r}") from None


def _number(record: bytes, fields: dict[str, tuple[int, int]], name: str,
            where: str) -> int | None:
    text = _text(record, fields, name)
    if not text:
        return None
    if not text.isdigit():
        raise ValueError(f"{where}: field {name} is not a number: {text!r}")
    return int(text)


def _code(text: str, where: str, what: str) -> str | None:
    if not text:
        return None
    if what == "ISRC" and not ISRC_RE.match(text):
        raise ValueError(f"{where}: malformed ISRC {text!r}")
    if what == "UPC/EAN" and not re.fullmatch(r"[0-9]{12,13}", text):
        raise ValueError(f"{where}: malformed UPC/EAN {text!r}")
    return text


def _read_ddpid(folder: Path) -> tuple[str, str | None]:
    data = _find(folder, DDPID_NAME).read_bytes()
    if len(data) != ID_BYTES:
        raise ValueError(f"DDPID is {len(data)} bytes, not {ID_BYTES}")
    level = _text(data, DDPID_FIELDS, "level")
    if level != LEVEL:
        raise ValueError(f"DDPID: level {level!r}, expected {LEVEL!r}")
    kind = _text(data, DDPID_FIELDS, "type")
    if kind != "CD":
        raise ValueError(f"DDPID: disc type {kind!r}, expected 'CD'")
    return level, _code(_text(data, DDPID_FIELDS, "upc"), "DDPID", "UPC/EAN")


def _read_map(folder: Path) -> tuple[Path, int, Path, int]:
    """(image file, its sectors, PQ descriptor file, its bytes) from DDPMS."""
    data = _find(folder, DDPMS_NAME).read_bytes()
    if not data or len(data) % MAP_BYTES:
        raise ValueError(f"DDPMS is {len(data)} bytes, not a whole number of "
                         f"{MAP_BYTES}-byte packets")
    audio, pq = [], []
    for i in range(0, len(data), MAP_BYTES):
        p = data[i:i + MAP_BYTES]
        where = f"DDPMS packet {i // MAP_BYTES + 1}"
        if _text(p, MAP_FIELDS, "mpv") != "VVVM":
            raise ValueError(f"{where}: no VVVM marker")
        dst = _text(p, MAP_FIELDS, "dst")
        if dst not in DATA_STREAM_TYPES:
            raise ValueError(f"{where}: unknown data stream type {dst!r}")
        length = _number(p, MAP_FIELDS, "dsl", where)
        size = _number(p, MAP_FIELDS, "siz", where)
        if length is None or size is None or not 0 < size <= DSI_WIDTH:
            raise ValueError(f"{where}: stream length or file name size missing")
        name = p[MAP_FIELDS["dsi"][0]:MAP_FIELDS["dsi"][0] + size].decode("ascii",
                                                                          "replace").strip()
        if not name:
            raise ValueError(f"{where}: no file name")
        sub = _text(p, MAP_FIELDS, "sub")
        if dst == "D0":
            if _text(p, MAP_FIELDS, "cdm") != "DA":
                raise ValueError(f"{where}: CD mode {_text(p, MAP_FIELDS, 'cdm')!r} is not "
                                 f"audio ('DA')")
            if _text(p, MAP_FIELDS, "ssm") not in ("7", "0"):
                raise ValueError(f"{where}: storage mode {_text(p, MAP_FIELDS, 'ssm')!r} is "
                                 f"not whole 2352-byte sectors")
            audio.append((name, length))
        elif dst == "S0" and sub == "PQ DESCR":
            pq.append((name, length))
        elif dst[0] == "D":
            raise ValueError(f"{where}: main data stream {dst!r} is not audio")
    if len(audio) != 1:
        raise ValueError(f"DDPMS names {len(audio)} audio streams; one is supported")
    if len(pq) != 1:
        raise ValueError(f"DDPMS names {len(pq)} PQ descriptors, not one")
    (image, sectors), (pq_name, pq_bytes) = audio[0], pq[0]
    return _find(folder, image), sectors, _find(folder, pq_name), pq_bytes


def _read_pq(path: Path, length: int) -> tuple[list[DdpTrack], int, str | None]:
    data = path.read_bytes()
    if len(data) != length:
        raise ValueError(f"{path.name} is {len(data)} bytes; DDPMS says {length}")
    if not data or len(data) % PQ_BYTES:
        raise ValueError(f"{path.name} is not a whole number of {PQ_BYTES}-byte entries")
    entries = []
    for i in range(0, len(data), PQ_BYTES):
        p = data[i:i + PQ_BYTES]
        where = f"{path.name} entry {i // PQ_BYTES + 1}"
        if _text(p, PQ_FIELDS, "spv") != "VVVS":
            raise ValueError(f"{where}: no VVVS marker")
        index = _number(p, PQ_FIELDS, "index", where)
        hours = _number(p, PQ_FIELDS, "hours", where)
        t = _text(p, PQ_FIELDS, "time").rjust(6, "0")
        if index is None or hours not in (None, 0) or not t.isdigit():
            raise ValueError(f"{where}: malformed index or time")
        m, s, f = int(t[:2]), int(t[2:4]), int(t[4:])
        if s > 59 or f >= FRAMES_PER_SECOND:
            raise ValueError(f"{where}: time {m:02d}:{s:02d}:{f:02d} is not a CD time")
        c1 = _text(p, PQ_FIELDS, "c1")
        if len(c1) != 2 or c1[0] not in "0123456789ABCDEF" or c1[1] not in "1S":
            raise ValueError(f"{where}: malformed control {c1!r}")
        if int(c1[0], 16) & 4:
            raise ValueError(f"{where}: a data track (control {c1!r}) on an audio CD")
        entries.append((_text(p, PQ_FIELDS, "track"), index,
                        (m * 60 + s) * FRAMES_PER_SECOND + f, int(c1[0], 16), c1[1] == "S",
                        _code(_text(p, PQ_FIELDS, "isrc"), where, "ISRC"),
                        _code(_text(p, PQ_FIELDS, "upc"), where, "UPC/EAN"), where))
    upcs = {e[6] for e in entries if e[6]}
    if len(upcs) > 1:
        raise ValueError(f"{path.name}: several UPC/EAN codes {sorted(upcs)}")
    first = entries[0]
    if first[:3] != ("00", 0, 0):
        raise ValueError(f"{path.name}: the first entry is not the lead-in (track 00, "
                         f"index 00, 00:00:00)")
    outs = [e for e in entries if e[0] == "AA"]
    if not outs or len(outs) > 2 or entries[-len(outs):] != outs \
            or any(e[1] != 1 or e[2] != outs[0][2] for e in outs):
        raise ValueError(f"{path.name}: the lead-out (AA 01) must end the descriptor, once "
                         f"or twice, at one time")
    lead_out = outs[0][2]
    tracks: list[DdpTrack] = []
    prev_time = -1
    for number, index, time, control, scms, isrc, _, where in entries[1:len(entries)
                                                                       - len(outs)]:
        if not (len(number) == 2 and number.isdigit() and 1 <= int(number) <= MAX_TRACKS):
            raise ValueError(f"{where}: track number {number!r} is not 01-99")
        k = int(number)
        if not tracks or k != tracks[-1].number:
            if k != len(tracks) + 1 or index not in (0, 1):
                raise ValueError(f"{where}: track {k:02d} index {index:02d} out of sequence")
            if tracks and 1 not in tracks[-1].index:
                raise ValueError(f"{where}: track {tracks[-1].number:02d} has no INDEX 01")
            tracks.append(DdpTrack(k, {}, isrc, control, scms))
        else:
            t = tracks[-1]
            if index != max(t.index) + 1:
                raise ValueError(f"{where}: track {k:02d} index {index:02d} out of sequence")
            if (control, scms) != (t.control, t.scms):
                raise ValueError(f"{where}: track {k:02d} changes its control flags")
            if isrc and t.isrc and isrc != t.isrc:
                raise ValueError(f"{where}: track {k:02d} has two ISRCs")
            t.isrc = t.isrc or isrc
        if time <= prev_time or time >= lead_out:
            raise ValueError(f"{where}: time {frames_text(time)} is not after the previous "
                             f"entry and before the lead-out")
        tracks[-1].index[index] = time
        prev_time = time
    if not tracks or 1 not in tracks[-1].index:
        raise ValueError(f"{path.name}: no tracks, or the last track has no INDEX 01")
    if min(tracks[0].index.values()) != 0:
        raise ValueError(f"{path.name}: track 01 does not start at 00:00:00")
    return tracks, lead_out, upcs.pop() if upcs else None


def check_md5_files(folder: Path) -> list[str]:
    """Check every ``*.md5`` file in ``folder`` (md5sum format); the files checked."""
    checked = []
    for q in sorted(folder.iterdir()):
        if not (q.is_file() and q.name.lower().endswith(".md5")):
            continue
        for n, line in enumerate(q.read_text("ascii", "replace").splitlines(), 1):
            if not line.strip():
                continue
            m = re.fullmatch(r"([0-9a-fA-F]{32}) [ *](.+)", line.strip())
            if not m:
                raise ValueError(f"{q.name} line {n}: not '<md5> *<file>'")
            target = _find(folder, m.group(2).strip())
            h = hashlib.md5()
            with open(target, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 22), b""):
                    h.update(chunk)
            if h.hexdigest() != m.group(1).lower():
                raise ValueError(f"{target.name}: MD5 {h.hexdigest()} does not match "
                                 f"{q.name} ({m.group(1).lower()})")
            checked.append(target.name)
    return checked


def read_ddp(folder: str | os.PathLike, check_checksums: bool = True) -> DdpImage:
    """Parse a DDP 2.00 audio-CD fileset; ValueError with the reason when it is malformed."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder")
    level, id_upc = _read_ddpid(folder)
    image, sectors, pq, pq_bytes = _read_map(folder)
    size = image.stat().st_size
    if size != sectors * SECTOR_BYTES:
        raise ValueError(f"{image.name} is {size} bytes; DDPMS says {sectors} sectors "
                         f"({sectors * SECTOR_BYTES} bytes)")
    tracks, lead_out, pq_upc = _read_pq(pq, pq_bytes)
    if lead_out != sectors:
        raise ValueError(f"the lead-out ({frames_text(lead_out)}) is not the end of "
                         f"{image.name} ({frames_text(sectors)})")
    if id_upc and pq_upc and id_upc != pq_upc:
        raise ValueError(f"DDPID's UPC/EAN {id_upc} differs from {pq.name}'s {pq_upc}")
    checked = check_md5_files(folder) if check_checksums else []
    return DdpImage(folder, level, id_upc or pq_upc, image, pq, sectors, lead_out, tracks,
                    checked)


# ---------------------------------------------------------------------------- verifying
def _show(index: dict[int, int]) -> str:
    return ", ".join(f"{i:02d} {frames_text(v)}" for i, v in sorted(index.items()))


def verify_ddp(written: Written, layout: CdLayout) -> DdpImage:
    """Read the fileset back and compare it with ``layout`` and the audio's digests;
    ValueError naming the first difference."""
    img = read_ddp(written.folder)
    fail = "DDP verification failed: "
    if sorted(img.checksums_checked) != sorted(written.md5):
        raise ValueError(fail + f"the MD5 file covers {img.checksums_checked}")
    if img.catalog != layout.catalog:
        raise ValueError(fail + f"catalog {img.catalog!r}, expected {layout.catalog!r}")
    if len(img.tracks) != len(layout.tracks):
        raise ValueError(fail + f"{len(img.tracks)} tracks, expected {len(layout.tracks)}")
    if img.lead_out != PREGAP_FRAMES + layout.frames:
        raise ValueError(fail + f"lead-out at {frames_text(img.lead_out)}, expected "
                         f"{frames_text(PREGAP_FRAMES + layout.frames)}")
    for k, (got, want) in enumerate(zip(img.tracks, layout.tracks), 1):
        index = {1: PREGAP_FRAMES + want.start}
        if k == 1:
            index[0] = 0
        elif want.pregap is not None:
            index[0] = PREGAP_FRAMES + want.pregap
        if got.index != index:
            raise ValueError(fail + f"track {k:02d} indexes {_show(got.index)}, expected "
                             f"{_show(index)}")
        if got.isrc != want.isrc or got.control != layout.control or got.scms:
            raise ValueError(fail + f"track {k:02d}: ISRC {got.isrc!r} / control "
                             f"{got.control:X}, expected {want.isrc!r} / "
                             f"{layout.control:X}")
    digests = _Digests()
    for block in img.program_blocks():
        digests.update(np.ascontiguousarray(block, dtype="<i2").tobytes())
    got = digests.finish()
    if len(got) != len(written.digests):
        raise ValueError(fail + f"the image holds {len(got)} s of audio, expected "
                         f"{len(written.digests)} s")
    for second, (a, b) in enumerate(zip(got, written.digests)):
        if a != b:
            raise ValueError(fail + f"the image's audio differs from the album's 16-bit "
                             f"samples in second {second} of the album")
    return img


# ---------------------------------------------------------------------------- the album
BLOCK = 1 << 20


def needs_rendition(sample_rate: int, subtype: str, channels: int) -> bool:
    """Whether the album file's samples cannot go to the CD as they are."""
    return not (sample_rate == CD_RATE and subtype == "PCM_16" and channels == 2)


def rendition_note(sample_rate: int, subtype: str, channels: int) -> str | None:
    """The one line that says the DDP is not the album file's samples, or None."""
    if not needs_rendition(sample_rate, subtype, channels):
        return None
    depth = {"PCM_16": "16-bit", "PCM_24": "24-bit", "FLOAT": "32-bit float"}.get(subtype,
                                                                                subtype)
    steps = ([f"resampled from {sample_rate} Hz"] if sample_rate != CD_RATE else []) \
        + (["TPDF-dithered to 16 bits"] if subtype != "PCM_16" else []) \
        + (["mono on both channels"] if channels == 1 else [])
    return (f"the DDP image gets a 44.1 kHz 16-bit stereo rendition of the {sample_rate} Hz "
            f"{depth} album ({', '.join(steps)})")


def _file_blocks(path: Path, samples: int) -> Iterator[np.ndarray]:
    """The 16-bit album file's samples, as written (dither included)."""
    import soundfile as sf

    with sf.SoundFile(str(path)) as f:
        left = samples
        while left > 0:
            d = f.read(min(BLOCK, left), dtype="int16", always_2d=True)
            if d.shape[0] == 0:
                raise ValueError(f"{path.name} ended early")
            left -= d.shape[0]
            yield d if d.shape[1] == 2 else np.repeat(d, 2, axis=1)


def _rendition_blocks(album: np.ndarray, sample_rate: int, samples: int) -> Iterator[np.ndarray]:
    """The float album at 44.1 kHz (the project's resampler), quantized to 16 bits with the
    project's seeded TPDF dither (``automaster.io.quantize``); a mono album's samples go
    to both channels."""
    from automaster.io import DITHER_SEED, ArraySource, ResampledSource, quantize

    src = ArraySource(album, sample_rate)
    if sample_rate != CD_RATE:
        src = ResampledSource(src, CD_RATE)
    rng = np.random.default_rng(DITHER_SEED)
    for s in range(0, samples, BLOCK):
        q = quantize(src.read(s, min(s + BLOCK, samples)), 16, rng).T
        yield q if q.shape[1] == 2 else np.repeat(q, 2, axis=1)  # mono: the same on both


def write_album_ddp(folder: Path, album: np.ndarray, sample_rate: int, layout: CdLayout,
                    album_file: Path | None, subtype: str) -> dict:
    """Write and verify the album's DDP in ``folder``; the record for album.json.
    ``album_file`` (the written album) is the source when it is 16-bit 44.1 kHz stereo;
    otherwise the float ``album`` is rendered to that."""
    samples = layout.frames * SECTOR_SAMPLES
    channels = int(album.shape[0])
    if needs_rendition(sample_rate, subtype, channels) or album_file is None:
        blocks = _rendition_blocks(album, sample_rate, samples)
        source = rendition_note(sample_rate, subtype, channels) or "44.1 kHz 16-bit rendition"
    else:
        blocks = _file_blocks(album_file, samples)
        source = album_file.name
    written = write_ddp(folder, layout, blocks)
    img = verify_ddp(written, layout)
    tracks = []
    for k, t in enumerate(img.tracks, 1):
        tracks.append({"number": k, "index_00": None if t.pregap is None
                       else frames_text(t.pregap), "index_01": frames_text(t.start),
                       "isrc": t.isrc, "start_sample_44100": img.start_sample(k)})
    return {"folder": folder.name, "level": LEVEL, "files": written.files,
            "checksum_file": CHECKSUM_NAME, "md5": written.md5, "verified": True,
            "audio_source": source, "sample_rate": CD_RATE, "bit_depth": 16,
            "sectors": written.sectors, "pregap_frames": PREGAP_FRAMES,
            "lead_out": frames_text(img.lead_out), "catalog": img.catalog,
            "control": f"{layout.control:X}", "tracks": tracks}
