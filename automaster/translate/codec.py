"""Lossy codecs: encode, decode, measure, and the ceiling loop that makes a decoded master
meet its true-peak ceiling.

A lossy encoder does not preserve the waveform: the decoded signal's peaks can pass the
ceiling the limiter held (measured on the bundled example: an ``.ogg`` master limited at
-1 dBTP decoded at -0.79 dBTP; re-encoded -1 dBTP masters gave -0.06 dBTP as MP3). So a
master for a lossy format (or, with ``--codec-safe``, a lossless master that a streaming
service will transcode) is encoded, decoded and measured with the project's one true-peak
meter (:mod:`automaster.metering`, the 4x interpolator of ``dsp._bs1770``); when the decoded
true peak passes the ceiling, the limiter's ceiling is lowered by the overshoot plus
:data:`MARGIN_DB` and the master rendered and encoded again, at most :data:`MAX_ENCODES`
times (:func:`fit_ceiling`).

What the installed libsndfile (through ``soundfile``) can write, and how its
``compression_level`` maps to a bitrate (libsndfile 1.2.2, measured on 10 s of the bundled
example, file size x 8 / duration):

- Ogg Vorbis: ``compression_level`` = 1 - Vorbis quality (VBR). The writer's 0.3
  (quality 0.7) gave 206 kbit/s stereo.
- Ogg Opus: CBR-like, ``bitrate per channel = (1 - level) * 244 kbit/s + 6 kbit/s`` (level 0:
  473 kbit/s stereo, 0.7: 151, 1.0: 12); ``bitrate_mode`` is refused. Opus only codes 8,
  12, 16, 24 and 48 kHz, so other rates are resampled to 48 kHz for it
  (:func:`automaster.io.resample`'s filter) and the decoded file is 48 kHz.
- MP3 (LAME): with ``bitrate_mode='CONSTANT'``, ``kbit/s = 320 - level * 288`` at 32 kHz and
  above (level 2/3: 128.7 kbit/s, 0: 321.8). MPEG audio only codes 8-48 kHz
  (:data:`MP3_RATES`): another rate is resampled to the lowest MP3 rate at or above it, and
  a high-resolution master (above 48 kHz) to 44.1 kHz when it is a multiple of 11025 Hz
  (88.2, 176.4 kHz), else to 48 kHz, as a transcoding service would.
- AAC is not available in libsndfile, so it is not checked.
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

__all__ = ["Codec", "OUTPUT_CODECS", "CODEC_SAFE", "MARGIN_DB", "MAX_ENCODES", "MP3_RATES", "FitResult",
           "encode", "decode_measure", "check_codec", "check_codecs", "fit_ceiling", "mp3_level", "opus_level"]

OPUS_RATES = (8000, 12000, 16000, 24000, 48000)
OPUS_RATE = 48000  # other rates are resampled to this for Opus
MP3_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)  # MPEG-1/2/2.5
MARGIN_DB = 0.1  # the limiter goes this much below what the overshoot alone asks for
MAX_ENCODES = 4  # render + encode at most this many times
MAX_LOWERING_DB = 6.0  # never lower the limiter's ceiling by more than this in total
BLOCK = 1 << 18


def mp3_level(kbps: float) -> float:
    """libsndfile ``compression_level`` for a constant MP3 bitrate (MPEG-1, 32-320 kbit/s)."""
    if not 32.0 <= kbps <= 320.0:
        raise ValueError(f"MP3 bitrate must be 32-320 kbit/s, got {kbps}")
    return (320.0 - kbps) / 288.0


def opus_level(kbps_total: float, channels: int) -> float:
    """libsndfile ``compression_level`` for an Opus bitrate (total over ``channels``)."""
    per_channel = kbps_total / channels
    if not 6.0 <= per_channel <= 250.0:
        raise ValueError(f"Opus bitrate must be 6-250 kbit/s per channel, got {per_channel}")
    return 1.0 - (per_channel - 6.0) / 244.0


@dataclass(frozen=True)
class Codec:
    """One lossy encoding: libsndfile format/subtype and its bitrate setting.

    ``kbps`` is the nominal total bitrate for stereo (None: VBR quality setting); the
    compression level is derived per channel count by :meth:`sf_kwargs`."""

    name: str
    format: str  # libsndfile major format: "OGG" or "MP3"
    subtype: str  # "VORBIS", "OPUS", "MPEG_LAYER_III"
    kbps: float | None = None
    vorbis_quality: float | None = None
    extension: str = ".ogg"

    @property
    def sample_rates(self) -> tuple[int, ...] | None:
        """The rates the codec can code (None: any)."""
        return {"OPUS": OPUS_RATES, "MPEG_LAYER_III": MP3_RATES}.get(self.subtype)

    def coded_rate(self, sample_rate: int) -> int:
        """The sample rate the encoder is fed: ``sample_rate`` when the codec codes it;
        otherwise 48 kHz for Opus, and for MP3 the lowest MP3 rate at or above it, or above
        48 kHz 44.1 kHz for multiples of 11025 Hz and 48 kHz for the others."""
        rates = self.sample_rates
        if rates is None or sample_rate in rates:
            return sample_rate
        if self.subtype == "OPUS":
            return OPUS_RATE
        above = [r for r in rates if r >= sample_rate]
        if above:
            return min(above)
        return 44100 if sample_rate % 11025 == 0 else 48000

    def sf_kwargs(self, channels: int) -> dict[str, Any]:
        if self.subtype == "VORBIS":
            return {"compression_level": 1.0 - float(self.vorbis_quality or 0.7)}
        if self.subtype == "OPUS":
            return {"compression_level": opus_level(self.kbps * channels / 2.0, channels)}
        if self.subtype == "MPEG_LAYER_III":
            return {"compression_level": mp3_level(self.kbps), "bitrate_mode": "CONSTANT"}
        raise ValueError(f"unknown codec subtype {self.subtype}")

    def describe(self) -> str:
        if self.subtype == "VORBIS":
            return f"Ogg Vorbis, quality {self.vorbis_quality:g} (VBR)"
        kind = "Ogg Opus" if self.subtype == "OPUS" else "MP3 (CBR)"
        return f"{kind} {self.kbps:g} kbit/s (stereo)"


# the output formats (automaster.io's container names) and what they are encoded with
OUTPUT_CODECS: dict[str, Codec] = {
    "OGG": Codec("vorbis-q0.7", "OGG", "VORBIS", vorbis_quality=0.7, extension=".ogg"),
    "OPUS": Codec("opus-160k", "OGG", "OPUS", kbps=160.0, extension=".opus"),
    "MP3": Codec("mp3-320k", "MP3", "MPEG_LAYER_III", kbps=320.0, extension=".mp3"),
}

# --codec-safe: what streaming services and listeners transcode a delivered master to
CODEC_SAFE: tuple[Codec, ...] = (
    Codec("mp3-128k", "MP3", "MPEG_LAYER_III", kbps=128.0, extension=".mp3"),
    Codec("mp3-320k", "MP3", "MPEG_LAYER_III", kbps=320.0, extension=".mp3"),
    Codec("opus-96k", "OGG", "OPUS", kbps=96.0, extension=".opus"),
    Codec("opus-160k", "OGG", "OPUS", kbps=160.0, extension=".opus"),
)


def _resampled(source, codec: Codec):
    rate = codec.coded_rate(source.sample_rate)
    if rate == source.sample_rate:
        return source
    from automaster.io import ResampledSource

    return ResampledSource(source, rate)


def encode(source, path: str | os.PathLike, codec: Codec) -> None:
    """Encode a Source (``read(start, stop)`` -> (channels, n) float) into ``path``.

    Samples are written as float (libsndfile converts); clipping is left to the codec:
    peaks above full scale are exactly what the ceiling loop is there to catch."""
    import soundfile as sf

    from automaster.io import sf_path

    src = _resampled(source, codec)
    with sf.SoundFile(sf_path(path), "w", samplerate=src.sample_rate, channels=src.channels,
                      format=codec.format, subtype=codec.subtype,
                      **codec.sf_kwargs(src.channels)) as f:
        for s in range(0, src.frames, BLOCK):
            e = min(s + BLOCK, src.frames)
            f.write(np.ascontiguousarray(src.read(s, e).T, dtype=np.float32))


def decode_measure(path: str | os.PathLike):
    """Decode a file with libsndfile and measure it block by block: loudness, loudness
    range and 4x true peak (:class:`automaster.metering.Meter`). Returns
    (Measurement, sample rate)."""
    import soundfile as sf

    from automaster.io import sf_path
    from automaster.metering import Meter

    with sf.SoundFile(sf_path(path)) as f:
        meter = Meter(f.samplerate, f.channels, true_peak=True)
        while True:
            data = f.read(BLOCK, dtype="float32", always_2d=True)
            if data.shape[0] == 0:
                break
            meter.process(np.ascontiguousarray(data.T))
        return meter.result(), int(f.samplerate)


@dataclass
class CodecCheck:
    """One encode/decode of a master: the decoded file's figures."""

    codec: Codec
    measurement: Any  # automaster.metering.Measurement of the decoded signal
    decoded_rate: int

    @property
    def true_peak_dbtp(self) -> float:
        return float(self.measurement.true_peak_dbtp)

    def as_dict(self) -> dict[str, Any]:
        m = self.measurement
        return {"codec": self.codec.name, "description": self.codec.describe(),
                "decoded_sample_rate": self.decoded_rate,
                "decoded_true_peak_dbtp": _r(m.true_peak_dbtp),
                "decoded_lufs": _r(m.integrated_lufs),
                "decoded_sample_peak_dbfs": _r(m.sample_peak_dbfs)}


def _r(v: float) -> float | None:
    return round(float(v), 2) if math.isfinite(v) else None


def check_codec(source, codec: Codec, path: str | os.PathLike | None = None,
                tmp_dir: str | None = None) -> CodecCheck:
    """Encode ``source`` with ``codec`` and measure the decoded result. With ``path`` the
    encoded file is left there (the caller owns it); otherwise a temporary file in
    ``tmp_dir`` is used and deleted."""
    if path is not None:
        encode(source, path, codec)
        m, rate = decode_measure(path)
        return CodecCheck(codec, m, rate)
    from automaster.io import discard_temp_file, new_temp_file

    # .automaster-codec.<pid>@<host>.<random>.mp3: removed on Ctrl-C, and by a later check
    # in the same folder when a killed run (SIGKILL) left it
    tmp = new_temp_file(Path(tmp_dir or tempfile.gettempdir()) / "automaster-codec",
                        suffix=codec.extension)
    try:
        encode(source, tmp, codec)
        m, rate = decode_measure(tmp)
    finally:
        discard_temp_file(tmp)
    return CodecCheck(codec, m, rate)


def check_codecs(source, codecs: list[Codec], paths: list[str | os.PathLike | None],
                 tmp_dir: str | None = None) -> list[CodecCheck]:
    """:func:`check_codec` for each codec (and its ``paths`` entry), in order. Several run
    side by side on threads, one per core: the encoders and decoders run in libsndfile,
    which soundfile calls without the GIL (measured on two 1-minute MP3 checks: 1.3x with a
    training run on both cores)."""
    workers = min(len(codecs), os.cpu_count() or 1)
    if workers <= 1:
        return [check_codec(source, c, p, tmp_dir) for c, p in zip(codecs, paths)]
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="automaster-codec")
    try:
        futures = [pool.submit(check_codec, source, c, p, tmp_dir) for c, p in zip(codecs, paths)]
        return [f.result() for f in futures]
    finally:  # on an error or Ctrl-C the checks not started are dropped; running ones
        pool.shutdown(wait=True, cancel_futures=True)  # finish and remove their temp files


@dataclass
class FitResult:
    """Outcome of :func:`fit_ceiling`."""

    ceiling_dbtp: float | None
    met: bool
    tries: list[dict[str, Any]] = field(default_factory=list)
    checks: list[CodecCheck] = field(default_factory=list)  # the last try's
    limiter_ceiling_dbtp: float | None = None

    @property
    def encodes(self) -> int:
        return len(self.tries)

    def worst_dbtp(self) -> float:
        return max((c.true_peak_dbtp for c in self.checks), default=-math.inf)

    def as_dict(self) -> dict[str, Any]:
        return {"ceiling_dbtp": self.ceiling_dbtp, "met": self.met, "encodes": self.encodes,
                "limiter_ceiling_dbtp": None if self.limiter_ceiling_dbtp is None
                else round(self.limiter_ceiling_dbtp, 3),
                "margin_db": MARGIN_DB, "max_encodes": MAX_ENCODES,
                "codecs": [c.as_dict() for c in self.checks], "tries": self.tries}


def fit_ceiling(render: Callable[[float | None], Any], ceiling_dbtp: float | None,
                codecs: list[Codec] | tuple[Codec, ...], *,
                keep: tuple[Codec, Callable[[], str | os.PathLike]] | None = None,
                tmp_dir: str | None = None, max_encodes: int = MAX_ENCODES,
                margin_db: float = MARGIN_DB) -> FitResult:
    """Render, encode with every codec, decode, measure; lower the limiter ceiling until
    every decoded true peak is at or below ``ceiling_dbtp``.

    ``render(limiter_ceiling_dbtp)`` returns the master as a Source (it may reuse one
    buffer: each try's checks finish before the next render). ``keep=(codec, new_path)``:
    that codec's encoding of the last try is written to ``new_path()`` (called once per try,
    the caller owns and cleans up every path it hands out) and left there. With
    ``ceiling_dbtp`` None there is no limiter: one render, checks only measured.
    """
    if max_encodes < 1:
        raise ValueError("max_encodes must be at least 1")
    limiter = ceiling_dbtp
    result = FitResult(ceiling_dbtp, met=True)
    for attempt in range(max_encodes):
        source = render(limiter)
        paths = [keep[1]() if keep is not None and codec == keep[0] else None for codec in codecs]
        checks = check_codecs(source, list(codecs), paths, tmp_dir)
        result.checks, result.limiter_ceiling_dbtp = checks, limiter
        worst = result.worst_dbtp()
        result.tries.append({"limiter_ceiling_dbtp": None if limiter is None else round(limiter, 3),
                             "decoded_true_peak_dbtp": {c.codec.name: _r(c.true_peak_dbtp)
                                                        for c in checks}})
        if ceiling_dbtp is None or worst <= ceiling_dbtp:
            result.met = True
            return result
        result.met = False
        lowered = limiter - (worst - ceiling_dbtp) - margin_db
        if ceiling_dbtp - lowered > MAX_LOWERING_DB + 1e-9:
            if limiter <= ceiling_dbtp - MAX_LOWERING_DB + 1e-9:
                break
            lowered = ceiling_dbtp - MAX_LOWERING_DB
        limiter = lowered
    return result
