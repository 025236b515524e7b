"""Audio files in and out: probing, block sources, channel mapping, resampling, dither.

Formats (libsndfile through ``soundfile``; the output format follows the extension):

=============  ==============================  ===========================
extension      format                          --bit-depth
=============  ==============================  ===========================
.wav .wave     WAV (RF64 above 4 GB)           16, 24 (default), 32f
.aif .aiff     AIFF                            16, 24 (default), 32f
.flac          FLAC                            16, 24 (default)
.ogg .oga      Ogg Vorbis (quality 0.7, VBR)   n/a (lossy, float input)
.opus          Ogg Opus 160 kbit/s, 48 kHz     n/a (lossy, float input)
.mp3           MP3 320 kbit/s CBR (LAME)       n/a (lossy, float input)
=============  ==============================  ===========================

Default word length: 24-bit PCM. The mastering gain and limiter change every sample, so
the input's word length carries no meaning afterwards; 24 bits keep the dither noise far
below any audible level, and every player reads it.

Lossy output (Vorbis, Opus, MP3; settings in ``automaster.translate.codec``) is written
from the limited float signal. The encoder itself adds true peak (a -1 dBTP master decoded
at up to +0.1 dBTP as Opus), so the command line encodes, decodes and measures the file
and lowers the limiter's ceiling until the decoded true peak meets the ceiling
(``automaster.translate.deliver``); :class:`AudioWriter` alone only encodes.

Word-length reduction (16/24-bit PCM) adds TPDF dither (two uniform variables, +-1 LSB
peak, i.e. triangular) before rounding, seeded so a run is reproducible. Float output
is written as is, without dither.

Resampling (``--sample-rate``): ``scipy.signal.resample_poly`` with our own filter
instead of its default (a 10-zero-crossing Kaiser(5) design whose stopband sits near
-50 dB): a Kaiser-windowed sinc (``kaiserord``) with 100 dB stopband attenuation, the
passband flat to 0.90 and the stopband starting at 1.00 of the lower Nyquist frequency,
so nothing above the output's Nyquist aliases and nothing audible is cut. Long signals
are resampled in blocks with enough context that the result equals a one-shot call.

Sources are objects with ``sample_rate``, ``channels``, ``frames`` and
``read(start, stop) -> (channels, stop - start) float32`` (zero outside the signal), so
the pipeline handles a 60-minute file and a short array the same way.
"""

from __future__ import annotations

import math
import os
import re
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import numpy as np

from automaster.errors import InputError, OutputError, UserError, one_line

EXTENSIONS = {".wav": "WAV", ".wave": "WAV", ".flac": "FLAC", ".ogg": "OGG", ".oga": "OGG",
              ".aif": "AIFF", ".aiff": "AIFF", ".aifc": "AIFF", ".opus": "OPUS", ".mp3": "MP3"}
FORMAT_EXTENSION = {"WAV": ".wav", "FLAC": ".flac", "OGG": ".ogg", "AIFF": ".aiff", "OPUS": ".opus",
                    "MP3": ".mp3"}
LOSSY_FORMATS = ("OGG", "OPUS", "MP3")  # encoded with automaster.translate.codec.OUTPUT_CODECS
BIT_DEPTHS = ("16", "24", "32f")
DEFAULT_BIT_DEPTH = "24"
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 8000, 192000
MIN_DURATION_S = 0.4
DITHER_SEED = 0x5EED


class Source(Protocol):
    """Random-access audio: ``read(start, stop)`` -> (channels, stop-start) float32."""

    sample_rate: int
    channels: int
    frames: int

    def read(self, start: int, stop: int) -> np.ndarray: ...


# ---------------------------------------------------------------------------- formats
def output_format(path: str | os.PathLike) -> str:
    """Format name ("WAV", "FLAC", "OGG", "AIFF", "OPUS", "MP3") from the output extension."""
    ext = Path(path).suffix.lower()
    if ext not in EXTENSIONS:
        known = ", ".join(sorted(EXTENSIONS))
        if not ext:  # "-o masters" for a folder that does not exist yet
            raise OutputError(f"the output has no file extension and is not an existing folder; "
                              f"use one of {known}, or create the folder first", path)
        raise OutputError(f"unsupported output extension {ext!r}; use one of {known}", path)
    return EXTENSIONS[ext]


def output_subtype(fmt: str, bit_depth: str | None) -> str:
    """libsndfile subtype for a container and ``--bit-depth`` (None = default)."""
    if fmt in LOSSY_FORMATS:
        from automaster.translate.codec import OUTPUT_CODECS

        codec = OUTPUT_CODECS[fmt]
        if bit_depth is not None:
            raise UserError(f"--bit-depth does not apply to {codec.describe()} (lossy) output")
        return codec.subtype
    depth = DEFAULT_BIT_DEPTH if bit_depth is None else str(bit_depth)
    if depth not in BIT_DEPTHS:
        raise UserError(f"--bit-depth must be one of {', '.join(BIT_DEPTHS)}, got {depth!r}")
    if depth == "32f":
        if fmt == "FLAC":
            raise UserError("FLAC cannot store 32-bit float; use --bit-depth 16 or 24")
        return "FLOAT"
    return f"PCM_{depth}"


@dataclass(frozen=True)
class AudioInfo:
    """What ``soundfile.info`` says about a file."""

    path: str
    frames: int
    sample_rate: int
    channels: int
    format: str
    subtype: str
    declared_frames: int | None = None  # WAV: frames the data chunk's size announces

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0

    @property
    def truncated(self) -> bool:
        """The header announces more audio than the file holds (a cut-off download/copy)."""
        return self.declared_frames is not None and self.declared_frames > self.frames

    def truncation_message(self) -> str:
        sr = self.sample_rate or 1
        return (f"truncated file: the header announces {self.declared_frames} frames "
                f"({self.declared_frames / sr:.2f} s) but the file holds only {self.frames} "
                f"({self.frames / sr:.2f} s)")


def sf_path(path: str | os.PathLike) -> str | bytes:
    """``path`` for soundfile: bytes on POSIX (``os.fsencode``), so that a file name that
    is not UTF-8 (a Latin-1 name from an old archive, which Python keeps as surrogate
    escapes) opens; soundfile would encode the str as strict UTF-8 and fail."""
    return os.fspath(path) if os.name == "nt" else os.fsencode(path)


def probe(path: str | os.PathLike) -> AudioInfo:
    """Open ``path`` just enough to read its header; InputError for anything unusable."""
    import soundfile as sf

    p = Path(path)
    if not p.exists():
        raise InputError("file not found", path)
    if p.is_dir():
        raise InputError("is a folder, not an audio file", path)
    if not os.access(p, os.R_OK):
        raise InputError("permission denied (not readable)", path)
    if p.stat().st_size == 0:
        raise InputError("empty file (0 bytes)", path)
    try:
        info = sf.info(sf_path(p))
    except Exception as e:  # LibsndfileError, RuntimeError, TypeError from odd headers
        raise InputError(f"not a readable audio file ({_sf_reason(e)})", path) from None
    declared = wav_declared_frames(p) if str(info.format) in ("WAV", "WAVEX", "RF64") else None
    return AudioInfo(str(p), int(info.frames), int(info.samplerate), int(info.channels),
                     str(info.format), str(info.subtype), declared)


def wav_declared_frames(path: str | os.PathLike) -> int | None:
    """Frames announced by a RIFF/RF64 WAV's ``data`` chunk size (None when unknown).

    libsndfile silently shortens the frame count to what the file holds, so a truncated WAV
    would otherwise be mastered short without a word; compare this with ``frames``. The
    "unknown size" conventions of streamed WAVs (0 and 0xFFFFFFFF) give None.
    """
    import struct

    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[8:12] != b"WAVE" or head[:4] not in (b"RIFF", b"RF64"):
                return None
            ds64_data = None
            block_align = None
            for _ in range(4096):  # chunks before "data"; a sane file has a handful
                hdr = f.read(8)
                if len(hdr) < 8:
                    return None
                cid, size = hdr[:4], struct.unpack("<I", hdr[4:])[0]
                if cid == b"ds64":
                    body = f.read(min(size, 64))
                    if len(body) >= 16:
                        ds64_data = struct.unpack("<Q", body[8:16])[0]
                    f.seek(size - len(body) + (size & 1), 1)
                elif cid == b"fmt ":
                    body = f.read(min(size, 64))
                    if len(body) >= 14:
                        block_align = struct.unpack("<H", body[12:14])[0]
                    f.seek(size - len(body) + (size & 1), 1)
                elif cid == b"data":
                    if head[:4] == b"RF64" and size == 0xFFFFFFFF:
                        size = ds64_data
                    elif size in (0, 0xFFFFFFFF):
                        return None
                    if not size or not block_align:
                        return None
                    return int(size) // int(block_align)
                else:
                    f.seek(size + (size & 1), 1)
    except (OSError, struct.error, ValueError, OverflowError):
        return None
    return None


def _sf_reason(e: BaseException) -> str:
    text = one_line(getattr(e, "error_string", "") or e).removeprefix("Error : ")
    return text.replace("Error opening", "error opening") if text else type(e).__name__


def check_input_info(info: AudioInfo, *, downmix: bool = False,
                     allow_truncated: bool = False) -> None:
    """Reject empty, too short, out-of-range-rate, (unless downmix) multichannel and
    (unless allow_truncated) truncated files."""
    if info.truncated and not allow_truncated:
        raise InputError(f"{info.truncation_message()}; pass --allow-truncated to use what is "
                         f"there", info.path)
    if info.frames <= 0:
        raise InputError("empty audio file (no samples)", info.path)
    if not MIN_SAMPLE_RATE <= info.sample_rate <= MAX_SAMPLE_RATE:
        raise InputError(f"sample rate {info.sample_rate} Hz is outside the supported "
                         f"{MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz", info.path)
    if info.duration < MIN_DURATION_S:
        raise InputError(f"too short ({info.duration:.3f} s; at least {MIN_DURATION_S} s is "
                         f"needed)", info.path)
    if info.channels > 2 and not downmix:
        raise InputError(f"has {info.channels} channels; only mono and stereo are supported "
                         f"(use --downmix to fold it down to stereo)", info.path)


# ---------------------------------------------------------------------------- sources
class ArraySource:
    """An in-memory (channels, frames) float32 signal."""

    def __init__(self, data: np.ndarray, sample_rate: int) -> None:
        data = np.asarray(data)
        if data.ndim != 2:
            raise ValueError(f"audio must be (channels, samples), got shape {data.shape}")
        self.data = np.ascontiguousarray(data, dtype=np.float32)
        self.sample_rate = int(sample_rate)
        self.channels = int(data.shape[0])
        self.frames = int(data.shape[1])

    def read(self, start: int, stop: int) -> np.ndarray:
        """Samples [start, stop) as (channels, stop-start), zero outside the signal."""
        if start >= 0 and stop <= self.frames:
            return self.data[:, start:stop]
        out = np.zeros((self.channels, max(0, stop - start)), dtype=np.float32)
        lo, hi = max(start, 0), min(stop, self.frames)
        if hi > lo:
            out[:, lo - start:hi - start] = self.data[:, lo:hi]
        return out


class FileSource:
    """Reads blocks straight from an audio file (bounded memory). Close it when done."""

    def __init__(self, path: str | os.PathLike) -> None:
        import soundfile as sf

        self.path = os.fspath(path)
        try:
            self._f = sf.SoundFile(sf_path(self.path))
        except Exception as e:
            raise InputError(f"not a readable audio file ({_sf_reason(e)})", self.path) from None
        self.sample_rate = int(self._f.samplerate)
        self.channels = int(self._f.channels)
        self.frames = int(self._f.frames)
        self._pos = -1

    def read(self, start: int, stop: int) -> np.ndarray:
        out = np.zeros((self.channels, max(0, stop - start)), dtype=np.float32)
        lo, hi = max(start, 0), min(stop, self.frames)
        if hi <= lo:
            return out
        try:
            if self._pos != lo:
                self._f.seek(lo)
            data = self._f.read(hi - lo, dtype="float32", always_2d=True)
        except Exception as e:
            raise InputError(f"corrupt or truncated audio data ({_sf_reason(e)})",
                             self.path) from None
        if data.shape[0] != hi - lo:
            raise InputError(f"truncated audio data: the header announces {self.frames} frames "
                             f"but reading stopped at {lo + data.shape[0]}", self.path)
        self._pos = hi
        out[:, lo - start:hi - start] = data.T
        return out

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> "FileSource":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def downmix_matrix(channels: int) -> np.ndarray:
    """(2, channels) fold-down to stereo.

    Layouts follow the WAVE_FORMAT_EXTENSIBLE default order: 3 = L R C, 4 = L R Ls Rs,
    5 = L R C Ls Rs, 6 = L R C LFE Ls Rs (ITU-R BS.775: centre and surrounds at -3 dB,
    LFE dropped), 8 = 7.1 (back pair also at -3 dB). Other counts: odd channels to the
    left, even to the right, equal weights.
    """
    g = 1.0 / math.sqrt(2.0)
    layouts = {
        1: [[1.0], [1.0]],
        2: [[1.0, 0.0], [0.0, 1.0]],
        3: [[1, 0, g], [0, 1, g]],
        4: [[1, 0, g, 0], [0, 1, 0, g]],
        5: [[1, 0, g, g, 0], [0, 1, g, 0, g]],
        6: [[1, 0, g, 0, g, 0], [0, 1, g, 0, 0, g]],
        8: [[1, 0, g, 0, g, 0, g, 0], [0, 1, g, 0, 0, g, 0, g]],
    }
    if channels in layouts:
        return np.asarray(layouts[channels], dtype=np.float32)
    m = np.zeros((2, channels), dtype=np.float32)
    m[0, 0::2] = 2.0 / channels
    m[1, 1::2] = 2.0 / channels
    return m


class ChannelMapSource:
    """``matrix`` (out_channels, in_channels) applied to every block of ``source``."""

    def __init__(self, source: Source, matrix: np.ndarray) -> None:
        matrix = np.asarray(matrix, dtype=np.float32)
        if matrix.ndim != 2 or matrix.shape[1] != source.channels:
            raise ValueError(f"channel matrix {matrix.shape} does not fit {source.channels} "
                             f"channels")
        self.source = source
        self.matrix = matrix
        self.sample_rate = source.sample_rate
        self.channels = int(matrix.shape[0])
        self.frames = source.frames

    def read(self, start: int, stop: int) -> np.ndarray:
        return (self.matrix @ self.source.read(start, stop)).astype(np.float32, copy=False)


@lru_cache(maxsize=16)
def resampling_filter(up: int, down: int, attenuation_db: float = 100.0) -> np.ndarray:
    """Odd-length lowpass (DC gain 1) for resample_poly at ``up``/``down``, see module doc."""
    from scipy.signal import firwin, kaiserord

    rate = float(max(up, down))  # the filter runs at up*fs_in; 1/rate = lower Nyquist there
    width = 0.10 / rate          # transition 0.90 -> 1.00 of the lower Nyquist
    numtaps, beta = kaiserord(attenuation_db, width)
    numtaps |= 1
    return firwin(numtaps, 0.95 / rate, window=("kaiser", beta))


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Resample (channels, n) float audio in one call (see module doc for the filter)."""
    from scipy.signal import resample_poly

    if sr_in == sr_out:
        return np.asarray(x, dtype=np.float32)
    g = math.gcd(int(sr_in), int(sr_out))
    up, down = int(sr_out) // g, int(sr_in) // g
    y = resample_poly(np.asarray(x, dtype=np.float32), up, down, axis=-1,
                      window=resampling_filter(up, down))
    return y.astype(np.float32, copy=False)


class ResampledSource:
    """``source`` resampled to ``sample_rate``, computed per read with enough context that
    any block equals the same span of a one-shot resample of the whole signal."""

    def __init__(self, source: Source, sample_rate: int) -> None:
        g = math.gcd(int(source.sample_rate), int(sample_rate))
        self.up, self.down = int(sample_rate) // g, int(source.sample_rate) // g
        self.h = resampling_filter(self.up, self.down)
        half = (self.h.size - 1) // 2
        ctx = half // self.up + 2  # input samples of context each side
        self.context = -(-ctx // self.down) * self.down  # a multiple of down
        self.source = source
        self.sample_rate = int(sample_rate)
        self.channels = source.channels
        self.frames = -(-source.frames * self.up // self.down)

    def read(self, start: int, stop: int) -> np.ndarray:
        from scipy.signal import resample_poly

        n = max(0, stop - start)
        if n == 0:
            return np.zeros((self.channels, 0), dtype=np.float32)
        # input segment starting on a multiple of `down` so that its first output sample
        # has an integer index, with `context` samples either side
        s0 = (start * self.down // self.up) // self.down * self.down - self.context
        e0 = -(-stop * self.down // self.up) + self.context
        seg = self.source.read(s0, e0)
        y = resample_poly(seg, self.up, self.down, axis=-1, window=self.h)
        off = start - s0 * self.up // self.down
        out = y[:, off:off + n].astype(np.float32, copy=False)
        if out.shape[1] < n:  # cannot happen with the context above; keep shapes exact
            out = np.pad(out, ((0, 0), (0, n - out.shape[1])))
        return out


def materialize(source: Source, block: int = 1 << 20) -> ArraySource:
    """Read a whole source into memory."""
    if isinstance(source, ArraySource):
        return source
    data = np.empty((source.channels, source.frames), dtype=np.float32)
    for s in range(0, source.frames, block):
        e = min(s + block, source.frames)
        data[:, s:e] = source.read(s, e)
    return ArraySource(data, source.sample_rate)


def read_audio(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Whole file -> ((channels, samples) float32, sample rate). InputError on failure."""
    info = probe(path)
    with FileSource(path) as src:
        data = src.read(0, src.frames)
    if not np.isfinite(data).all():
        raise InputError("contains NaN or infinite samples", path)
    return data, info.sample_rate


# ---------------------------------------------------------------------------- writing
STALE_PART_AGE_S = 24 * 3600  # a part this old is stale whoever wrote it
_LIVE_TEMP: set[str] = set()  # temporary files this process created and has not yet settled
_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")


def _host_tag() -> str:
    import socket

    return re.sub(r"[^A-Za-z0-9-]", "", socket.gethostname())[:32] or "host"


TEMP_NAME_BYTES = 120  # of NAME kept in a temporary's name (file names: at most 255 bytes)


def _temp_stem(name: str) -> str:
    """NAME as it appears in its temporaries' names: itself, or when longer than
    TEMP_NAME_BYTES in UTF-8, its first bytes + "~" + 8 hex digits of its SHA-1, so that
    ``.NAME.<pid>@<host>.<random>.part`` stays within the 255-byte limit of a file name
    whenever NAME itself does (a 244-byte NAME failed with "File name too long")."""
    import hashlib

    raw = name.encode("utf-8", "surrogateescape")
    if len(raw) <= TEMP_NAME_BYTES:
        return name
    head = raw[:TEMP_NAME_BYTES - 9].decode("utf-8", "ignore")
    return f"{head}~{hashlib.sha1(raw).hexdigest()[:8]}"


def _part_pattern(name: str, suffix: str) -> "re.Pattern[str]":
    """Our temp names: ``.NAME.<pid>@<host>.<random>SUFFIX`` (current) or
    ``.NAME.<random>SUFFIX`` (before the pid was recorded); NAME as :func:`_temp_stem`."""
    return re.compile(r"\." + re.escape(_temp_stem(name))
                      + r"\.(?:(?P<pid>\d+)@(?P<host>[A-Za-z0-9-]*)\.)?"
                      r"[A-Za-z0-9_]{6,}" + re.escape(suffix))


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # someone else's process (or an odd number): assume alive
    return True


def temp_prefix(target: Path) -> str:
    """``.NAME.<pid>@<host>.``: the start of this process's temporary names for ``target``
    (see :func:`new_temp_file`; the album's staging folder uses it too)."""
    return f".{_temp_stem(Path(target).name)}.{os.getpid()}@{_host_tag()}."


def remove_stale_parts(target: Path, suffix: str = ".part", *,
                       folders: bool = False) -> list[Path]:
    """Delete hidden temporary files of ``target`` left by runs that died (SIGKILL, power
    loss): those whose writer (same host, pid in the name) no longer exists, and any older
    than STALE_PART_AGE_S. A live run's part is never touched. Returns what was removed.
    ``folders``: the temporaries are folders (an album's staging folder), removed whole."""
    import shutil
    import time

    pat = _part_pattern(target.name, suffix)
    host = _host_tag()
    removed = []
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        m = pat.fullmatch(entry.name)
        if m is None or entry.path in _LIVE_TEMP:
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        import stat as _stat

        if not (_stat.S_ISDIR(st.st_mode) if folders else _stat.S_ISREG(st.st_mode)):
            continue
        dead = (m.group("pid") is not None and m.group("host") == host
                and not _pid_alive(int(m.group("pid"))))
        if dead or now - st.st_mtime > STALE_PART_AGE_S:
            try:
                if folders:
                    shutil.rmtree(entry.path)
                else:
                    os.unlink(entry.path)
                removed.append(Path(entry.path))
            except OSError:
                pass
    return removed


def _block_signals():
    """Block the interrupt signals on this thread (returns the old mask, or None)."""
    import signal

    if not hasattr(signal, "pthread_sigmask"):
        return None
    sigs = {getattr(signal, n) for n in _SIGNALS if hasattr(signal, n)}
    try:
        return signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
    except (OSError, ValueError):
        return None


def _restore_signals(mask) -> None:
    import signal

    if mask is not None:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def new_temp_file(target: Path, suffix: str = ".part") -> Path:
    """Create a hidden temporary file beside ``target`` with the usual (umask) permissions
    (mkstemp's default 0600 would otherwise survive the final os.replace).

    The name carries this process's pid and host (``.NAME.<pid>@<host>.<random>.part``) so a
    later run can tell a dead run's leftover (removed here, see :func:`remove_stale_parts`)
    from a live one's. The file is registered (with the interrupt signals blocked, so no
    Ctrl-C/SIGTERM can land between its creation and its registration) until
    :func:`release_temp_file`; :func:`discard_temp_files` deletes whatever is still registered.
    """
    target = Path(target)
    remove_stale_parts(target, suffix)
    mask = _block_signals()
    try:
        fd, tmp = tempfile.mkstemp(prefix=temp_prefix(target), suffix=suffix,
                                   dir=target.parent)
        _LIVE_TEMP.add(tmp)
        os.close(fd)
    finally:
        _restore_signals(mask)
    try:
        mask = os.umask(0)
        os.umask(mask)
        try:
            os.chmod(tmp, 0o666 & ~mask)
        except OSError:
            pass
    except BaseException:
        discard_temp_file(Path(tmp))
        raise
    return Path(tmp)


def release_temp_file(tmp: str | os.PathLike) -> None:
    """Forget a temporary file (it was renamed into place or deleted)."""
    _LIVE_TEMP.discard(os.fspath(tmp))


def discard_temp_file(tmp: str | os.PathLike) -> str | None:
    """Delete a temporary file; returns None, or a reason when it could not be deleted (it
    is then emptied, so at least it holds no space, and a later run removes it)."""
    path = os.fspath(tmp)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as e:
        try:
            os.truncate(path, 0)
        except OSError:
            pass
        return one_line(e)
    finally:
        release_temp_file(path)
    return None


def discard_temp_files() -> list[str]:
    """Delete every temporary file this process still holds (on interrupt); returns the
    paths that could not be deleted."""
    left = []
    for path in sorted(_LIVE_TEMP):
        if discard_temp_file(path) is not None:
            left.append(path)
    return left


_QUANT_CHUNK = 1 << 16


def quantize(x: np.ndarray, bits: int, rng: np.random.Generator | None) -> np.ndarray:
    """Float (channels, n) in [-1, 1) -> integers on a ``bits``-bit grid (int16 or int32).

    With ``rng``, TPDF dither (difference of two uniform variables, +-1 LSB) is added
    before rounding; the result is clipped to the word's range. The two uniforms are the
    halves of one 32-bit draw (1/65536 LSB resolution is plenty for dither).
    """
    x = np.asarray(x)
    if x.shape[-1] > _QUANT_CHUNK:  # in cache-sized pieces: big temporaries cost page faults
        return np.concatenate([quantize(x[..., s:s + _QUANT_CHUNK], bits, rng)
                               for s in range(0, x.shape[-1], _QUANT_CHUNK)], axis=-1)
    scale = float(1 << (bits - 1))
    work = np.float32 if bits <= 16 else np.float64  # float32 holds 16-bit values + fraction
    y = np.multiply(x, scale, dtype=work)
    if rng is not None:
        r = rng.integers(0, 1 << 32, size=y.shape, dtype=np.uint32)
        d = (r & 0xFFFF).astype(work)
        d -= (r >> 16).astype(work)
        d *= work(1.0 / 65536.0)
        y += d
    y += work(0.5)
    np.floor(y, out=y)
    np.clip(y, -scale, scale - 1.0, out=y)
    return y.astype(np.int16 if bits == 16 else np.int32)


class AudioWriter:
    """Streams (channels, n) float blocks into ``path`` without ever leaving partial output.

    Data goes to a hidden temporary file in the output's folder; :meth:`commit` moves it into
    place with ``os.replace`` (atomic on one filesystem), :meth:`abort` deletes it. Used as a
    context manager it commits on success and aborts on an exception.
    """

    def __init__(self, path: str | os.PathLike, sample_rate: int, channels: int,
                 bit_depth: str | None = None, *, frames_hint: int = 0,
                 seed: int = DITHER_SEED) -> None:
        self.path = Path(path)
        fmt = output_format(self.path)
        self.subtype = output_subtype(fmt, bit_depth)
        if fmt == "WAV" and frames_hint * channels * 4 > 0xFFFF0000:
            fmt = "RF64"  # plain RIFF sizes are 32-bit
        self.format = fmt
        self.bits = {"PCM_16": 16, "PCM_24": 24}.get(self.subtype)
        try:
            self.tmp = new_temp_file(self.path)
        except OSError as e:
            raise OutputError(f"cannot create the output file ({one_line(e)})", self.path) from None
        self.channels = int(channels)
        self.sample_rate = int(sample_rate)
        self._seed = seed
        self._done = False
        self._f = None
        try:
            self._open()
        except BaseException:  # an interrupt in the first milliseconds (e.g. in the import)
            self._done = True
            discard_temp_file(self.tmp)
            raise

    def _open(self) -> None:
        import soundfile as sf

        kwargs, sf_format = {}, self.format
        if self.format in LOSSY_FORMATS:
            from automaster.translate.codec import OUTPUT_CODECS

            codec = OUTPUT_CODECS[self.format]
            kwargs, sf_format = codec.sf_kwargs(self.channels), codec.format
        try:
            self._f = sf.SoundFile(sf_path(self.tmp), "w", samplerate=self.sample_rate,
                                   channels=self.channels, format=sf_format,
                                   subtype=self.subtype, **kwargs)
        except Exception as e:
            discard_temp_file(self.tmp)
            raise OutputError(f"cannot write {self.format}/{self.subtype} at {self.sample_rate} "
                              f"Hz ({_sf_reason(e)})", self.path) from None
        self._rng = np.random.default_rng(self._seed) if self.bits else None

    def rewind(self) -> None:
        """Forget everything written so far and start the file again."""
        self._f.close()
        self._open()

    def write(self, block: np.ndarray) -> None:
        """Append a (channels, n) float block."""
        if block.shape[0] != self.channels:
            raise ValueError(f"expected {self.channels} channels, got {block.shape[0]}")
        if self.bits is None:
            data = np.ascontiguousarray(block.T, dtype=np.float32)
        else:
            q = quantize(block, self.bits, self._rng)
            if self.bits == 24:
                q = q << 8  # libsndfile keeps the top 24 bits of int32 data
            data = np.ascontiguousarray(q.T)
        try:
            self._f.write(data)
        except Exception as e:
            raise OutputError(f"write failed ({_sf_reason(e)})", self.path) from None

    def commit(self) -> None:
        """Finish the file and move it into place."""
        if self._done:
            return
        try:
            self._f.close()
            os.replace(self.tmp, self.path)
        except Exception as e:
            left = self.abort()
            extra = f"; could not remove the temporary file {self.tmp} ({left})" if left else ""
            raise OutputError(f"cannot finish the output file ({one_line(e)}){extra}",
                              self.path) from None
        release_temp_file(self.tmp)
        self._done = True

    def abort(self) -> str | None:
        """Drop the temporary file. Never raises: returns None, or why the file could not be
        deleted (e.g. the folder became read-only; it is then emptied, and a later run to
        this output removes it)."""
        if self._done:
            return None
        self._done = True
        try:
            if self._f is not None:
                self._f.close()
        except Exception:
            pass
        return discard_temp_file(self.tmp)

    def __enter__(self) -> "AudioWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


def write_audio(path: str | os.PathLike, audio: np.ndarray, sample_rate: int,
                bit_depth: str | None = None) -> None:
    """Write a whole (channels, samples) float array atomically (see :class:`AudioWriter`)."""
    audio = np.atleast_2d(np.asarray(audio, dtype=np.float32))
    with AudioWriter(path, sample_rate, audio.shape[0], bit_depth,
                     frames_hint=audio.shape[1]) as w:
        for s in range(0, audio.shape[1], 1 << 20):
            w.write(audio[:, s:s + (1 << 20)])
