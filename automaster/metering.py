"""Streaming loudness, true-peak, loudness-range, crest and spectrum meters (numpy + numba).

Why not the torch meters in ``dsp``: these run block by block with carried filter state, so
a 60-minute file is measured in bounded memory, and they cost no torch import. Audio blocks
are ``(channels, samples)`` arrays fed in order to :meth:`Meter.process`.

The definitions (K-weighting coefficients, block structure, gates, loudness range and the
true-peak interpolator) are ``dsp._bs1770``'s, the same ones ``dsp``'s torch meters and the
limiter use; that module is numpy only, so importing this one does not import torch.

- Integrated loudness: ITU-R BS.1770-4 (K-weighting, 400 ms blocks on a 100 ms hop, absolute
  gate -70 LUFS, relative gate -10 LU). Channel weights are 1 (mono and stereo only).
- Loudness range: EBU Tech 3342 (3 s short-term windows on a 100 ms hop, gates -70 LUFS and
  -20 LU, 10th to 95th percentile). NaN when fewer than two windows pass.
- True peak: the limiter's 4x interpolator (24 taps per phase, Kaiser-windowed sinc),
  evaluated only where a bound says the peak could be, so it equals ``dsp.true_peak`` while
  costing a fraction of a full 4x upsampling.
- Crest factor: sample peak (dBFS) minus RMS (dBFS, all channels pooled).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from dsp._bs1770 import (  # one definition, shared with dsp (numpy only: no torch import)
    ABSOLUTE_GATE_LUFS,
    LRA_RELATIVE_GATE_LU,
    LUFS_OFFSET,
    MOMENTARY_HOPS,
    RELATIVE_GATE_LU,
    SHORT_TERM_HOPS,
    TP_AFTER,
    TP_BEFORE,
    gated_loudness,
    hop_samples,
    interpolation_kernel,
    k_weighting_sos,
)
from dsp._bs1770 import loudness_range as _loudness_range

__all__ = ["ABSOLUTE_GATE_LUFS", "LRA_RELATIVE_GATE_LU", "RELATIVE_GATE_LU", "BackgroundMeter", "Measurement",
           "Meter", "gated_loudness", "k_weighting_sos", "measure", "tp_taps", "true_peak_positions"]

TP_CONTEXT = TP_BEFORE + TP_AFTER  # input samples kept between blocks for the interpolator


def _to_db(value: float, power: bool = False) -> float:
    if value <= 0 or not math.isfinite(value):
        return -math.inf
    return (10.0 if power else 20.0) * math.log10(value)


def _tp_phase_taps() -> np.ndarray:
    """(TP_CONTEXT + 1, 4) taps: column phi gives x(n + phi/4) from x[n - TP_BEFORE .. n + TP_AFTER]
    (row j <-> x[n - TP_BEFORE + j]); column 0 is the sample itself."""
    taps = np.zeros((TP_CONTEXT + 1, 4))
    taps[TP_BEFORE, 0] = 1.0
    taps[:, 1:] = interpolation_kernel().T
    return taps


_TAPS: np.ndarray | None = None


def tp_taps() -> np.ndarray:
    """Cached interpolator taps, see :func:`_tp_phase_taps`."""
    global _TAPS
    if _TAPS is None:
        _TAPS = _tp_phase_taps()
    return _TAPS


def true_peak_positions(buf: np.ndarray, lo: int, hi: int, floor: float,
                        segment: int = 1 << 15) -> float:
    """Largest |4x interpolated value| of rows ``buf`` (channels, n) at centres [lo, hi).

    Centres need TP_BEFORE samples of context before and TP_AFTER after inside ``buf``. Work goes by
    segments, loudest first; a segment whose bound (L1 norm of the taps times its largest
    |sample|) cannot beat the best value so far is skipped. Returns max(floor, found).
    """
    taps = tp_taps().astype(np.float32)
    l1 = float(np.abs(taps).sum(axis=0).max())
    # per phase, only the non-zero taps (phase 0 is one tap)
    phases = [[(j, float(taps[j, phi])) for j in range(taps.shape[0]) if abs(taps[j, phi]) > 1e-12]
              for phi in range(taps.shape[1])]
    best = floor
    starts = np.arange(lo, hi, segment)
    for ch in range(buf.shape[0]):
        row = buf[ch]
        a = np.abs(row)
        seg_max = np.array([a[s - TP_BEFORE:min(s + segment, hi) + TP_AFTER].max() for s in starts])
        for i in np.argsort(-seg_max):
            if l1 * float(seg_max[i]) <= best:
                break
            s = int(starts[i])
            e = min(s + segment, hi)
            n = e - s
            acc = np.empty(n, dtype=np.float32)
            tmp = np.empty(n, dtype=np.float32)
            for taps_phi in phases:
                acc.fill(0.0)
                for j, t in taps_phi:
                    np.multiply(row[s - TP_BEFORE + j:s - TP_BEFORE + j + n], t, out=tmp)
                    acc += tmp
                best = max(best, float(acc.max()), float(-acc.min()))
    return best


@dataclass
class Measurement:
    """Loudness figures of one signal; non-finite values mean 'undefined' (e.g. silence)."""

    integrated_lufs: float
    true_peak_dbtp: float
    sample_peak_dbfs: float
    rms_dbfs: float
    crest_db: float
    loudness_range_lu: float
    duration_s: float

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict (non-finite numbers -> None), values rounded to 0.01 dB."""
        out: dict[str, Any] = {}
        for key, val in self.__dict__.items():
            out[key] = round(float(val), 3) if math.isfinite(val) else None
        return out


class Meter:
    """Streaming meter. Feed (channels, samples) blocks in order; then call :meth:`result`.

    ``loudness``: K-weighted loudness and LRA; ``true_peak``: the 4x true peak;
    ``spectrum``: a long-term power spectrum of the channel mean (for reports).
    """

    SPECTRUM_FFT = 8192

    def __init__(self, sample_rate: int, channels: int, *, true_peak: bool = True,
                 spectrum: bool = False, loudness: bool = True) -> None:
        if sample_rate <= 0 or channels <= 0:
            raise ValueError(f"bad meter setup: {sample_rate} Hz, {channels} channels")
        self.sample_rate = int(sample_rate)
        self.channels = int(channels)
        self.hop = hop_samples(sample_rate)
        self._loudness = loudness
        self._sos = k_weighting_sos(sample_rate)
        self._zi = np.zeros((self._sos.shape[0], channels, 2))  # (sections, channels, 2)
        self._hop_acc = 0.0
        self._hop_fill = 0
        self._hops: list[np.ndarray] = []
        self._count = 0
        self._sumsq = 0.0
        self._peak = 0.0
        self._tp = true_peak
        self._tp_hist = np.zeros((channels, TP_CONTEXT), dtype=np.float32)
        self._tp_best = 0.0
        self._spec = spectrum
        self._spec_buf = np.zeros(0, dtype=np.float64)
        self._spec_acc = np.zeros(self.SPECTRUM_FFT // 2 + 1)
        self._spec_frames = 0

    # ------------------------------------------------------------------ feeding
    def process(self, block: np.ndarray) -> None:
        """Add the next (channels, n) block. Raises ValueError on NaN/inf samples."""
        from automaster._kernels import k_weighted_power

        if block.ndim != 2 or block.shape[0] != self.channels:
            raise ValueError(f"meter expects ({self.channels}, n) blocks, got {block.shape}")
        n = block.shape[1]
        if n == 0:
            return
        if not np.isfinite(block).all():
            raise ValueError("audio contains NaN or infinite samples")
        x = np.ascontiguousarray(block, dtype=np.float32)
        self._count += n
        self._sumsq += float(np.einsum("ij,ij->", x, x, dtype=np.float64))
        self._peak = max(self._peak, float(np.abs(x).max()))
        if self._loudness:  # K-weighted energy per 100 ms hop (channel sum)
            self._add_power(k_weighted_power(x, self._sos, self._zi))
        if self._tp:
            self._add_true_peak(x)
        if self._spec:
            self._add_spectrum(x.mean(axis=0, dtype=np.float64))

    def _add_power(self, power: np.ndarray) -> None:
        pos = 0
        n = power.size
        if self._hop_fill:
            take = min(self.hop - self._hop_fill, n)
            self._hop_acc += float(power[:take].sum())
            self._hop_fill += take
            pos = take
            if self._hop_fill == self.hop:
                self._hops.append(np.array([self._hop_acc / self.hop]))
                self._hop_acc, self._hop_fill = 0.0, 0
        full = (n - pos) // self.hop
        if full:
            seg = power[pos:pos + full * self.hop].reshape(full, self.hop)
            self._hops.append(seg.mean(axis=1))
            pos += full * self.hop
        if pos < n:
            self._hop_acc += float(power[pos:].sum())
            self._hop_fill += n - pos

    def _add_true_peak(self, x: np.ndarray) -> None:
        # buf[t] is signal sample (before - TP_CONTEXT + t); centres with full context are
        # t in [TP_BEFORE, len - TP_AFTER); the ones before the signal start are skipped
        buf = np.concatenate([self._tp_hist, x], axis=1)
        before = self._count - x.shape[1]
        lo = max(TP_BEFORE, TP_CONTEXT - before)
        hi = buf.shape[1] - TP_AFTER
        if hi > lo:
            self._tp_best = true_peak_positions(buf, lo, hi, self._tp_best)
        self._tp_hist = buf[:, -TP_CONTEXT:].copy()

    def _add_spectrum(self, mono: np.ndarray) -> None:
        nfft = self.SPECTRUM_FFT
        buf = np.concatenate([self._spec_buf, mono])
        frames = buf.size // nfft
        if frames:
            win = np.hanning(nfft)
            seg = buf[:frames * nfft].reshape(frames, nfft) * win
            self._spec_acc += (np.abs(np.fft.rfft(seg, axis=1)) ** 2).sum(axis=0) / (win**2).sum()
            self._spec_frames += frames
        self._spec_buf = buf[frames * nfft:]

    # ------------------------------------------------------------------ results
    @property
    def samples(self) -> int:
        return self._count

    @property
    def energy(self) -> float:
        """Sum of squares of every sample seen (all channels)."""
        return self._sumsq

    def hop_energies(self) -> np.ndarray:
        """Channel-summed K-weighted mean square of each complete 100 ms hop, (hops,)."""
        return np.concatenate(self._hops) if self._hops else np.zeros(0)

    def integrated_lufs(self, gain_db: float = 0.0) -> float:
        """Gated integrated loudness so far (LUFS, -inf when nothing passes the gates).

        ``gain_db``: judge the absolute -70 LUFS gate at the level the signal will have
        after that gain (the loudness of the signal raised by ``gain_db``, minus
        ``gain_db``). For an intermediate signal whose final level is set later: a quiet
        mix rendered at -70.5 LUFS that will be raised by 56 dB is not silence.
        """
        if not self._loudness:
            return math.nan
        hops = self.hop_energies()
        if hops.size >= MOMENTARY_HOPS:
            c = np.concatenate([[0.0], np.cumsum(hops)])
            blocks = (c[MOMENTARY_HOPS:] - c[:-MOMENTARY_HOPS]) / MOMENTARY_HOPS
        elif self._count:
            total = float(hops.sum()) * self.hop + self._hop_acc
            blocks = np.array([total / self._count])
        else:
            return -math.inf
        if gain_db:
            scale = 10.0 ** (gain_db / 10.0)
            return gated_loudness(blocks * scale, RELATIVE_GATE_LU) - gain_db
        return gated_loudness(blocks, RELATIVE_GATE_LU)

    def short_term_lufs(self) -> np.ndarray:
        """Short-term loudness (3 s windows, 100 ms hop), (windows,) LUFS."""
        e = self._short_term_energy()
        with np.errstate(divide="ignore"):
            return LUFS_OFFSET + 10.0 * np.log10(np.maximum(e, 1e-30))

    def _short_term_energy(self) -> np.ndarray:
        hops = self.hop_energies()
        if hops.size < SHORT_TERM_HOPS:
            return np.zeros(0)
        c = np.concatenate([[0.0], np.cumsum(hops)])
        return (c[SHORT_TERM_HOPS:] - c[:-SHORT_TERM_HOPS]) / SHORT_TERM_HOPS

    def loudness_range(self) -> float:
        """EBU Tech 3342 loudness range in LU (NaN when undefined)."""
        return _loudness_range(self._short_term_energy())

    def true_peak_linear(self) -> float:
        """Largest 4x-interpolated magnitude (linear), including the tail after the end."""
        if not self._tp:
            raise ValueError("true peak was not enabled on this meter")
        if self._count == 0:
            return 0.0
        # flush: the last TP_AFTER centres, against trailing zeros (buf[t] is signal sample
        # count - TP_CONTEXT + t), without changing the running state
        buf = np.concatenate([self._tp_hist, np.zeros((self.channels, TP_AFTER), dtype=np.float32)], axis=1)
        hi = TP_CONTEXT
        lo = hi - min(TP_AFTER, self._count)
        return true_peak_positions(buf, lo, hi, self._tp_best)

    def spectrum(self) -> tuple[np.ndarray, np.ndarray]:
        """(frequencies Hz, mean power density in dB) of the channel mean; empty if unset."""
        if not self._spec or self._spec_frames == 0:
            return np.zeros(0), np.zeros(0)
        freqs = np.fft.rfftfreq(self.SPECTRUM_FFT, 1.0 / self.sample_rate)
        power = self._spec_acc / self._spec_frames
        return freqs, 10.0 * np.log10(np.maximum(power, 1e-20))

    def result(self) -> Measurement:
        """Everything measured so far."""
        n = max(self._count, 1)
        rms_db = _to_db(math.sqrt(self._sumsq / (n * self.channels)))
        peak_db = _to_db(self._peak)
        crest = peak_db - rms_db if math.isfinite(peak_db) and math.isfinite(rms_db) else math.nan
        tp = _to_db(self.true_peak_linear()) if self._tp else math.nan
        return Measurement(
            integrated_lufs=self.integrated_lufs(),
            true_peak_dbtp=tp,
            sample_peak_dbfs=peak_db,
            rms_dbfs=rms_db,
            crest_db=crest,
            loudness_range_lu=self.loudness_range(),
            duration_s=self._count / self.sample_rate,
        )


def measure(x: np.ndarray, sample_rate: int, *, true_peak: bool = True,
            block: int = 1 << 20) -> Measurement:
    """Measure a whole (channels, samples) array (convenience around :class:`Meter`)."""
    x = np.atleast_2d(x)
    m = Meter(sample_rate, x.shape[0], true_peak=true_peak)
    for s in range(0, x.shape[1], block):
        m.process(x[:, s:s + block])
    return m.result()


class BackgroundMeter:
    """A :class:`Meter` fed on a worker thread, so metering overlaps rendering on a second
    core (the numba and numpy inner loops release the GIL). Blocks are processed in order;
    they must not be modified after :meth:`process`. At most ``depth`` blocks wait."""

    def __init__(self, meter: Meter, depth: int = 3, threaded: bool | None = None) -> None:
        from concurrent.futures import ThreadPoolExecutor

        if threaded is None:  # AUTOMASTER_METER_THREAD=0 meters inline (e.g. one-core hosts)
            threaded = os.environ.get("AUTOMASTER_METER_THREAD", "1") != "0"
        self.meter = meter
        self._depth = depth
        self._pool = (ThreadPoolExecutor(max_workers=1, thread_name_prefix="automaster-meter")
                      if threaded else None)
        self._pending: list = []

    def process(self, block: np.ndarray) -> None:
        """Queue the next (channels, n) block; errors surface here or in :meth:`join`."""
        if self._pool is None:
            self.meter.process(block)
            return
        while len(self._pending) >= self._depth:
            self._pending.pop(0).result()
        self._pending.append(self._pool.submit(self.meter.process, block))

    def join(self) -> Meter:
        """Wait for every queued block; returns the filled meter."""
        try:
            for f in self._pending:
                f.result()
        finally:
            self._pending.clear()
            if self._pool is not None:
                self._pool.shutdown(wait=True)
        return self.meter
