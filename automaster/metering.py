"""Streaming loudness, true-peak, loudness-range, crest and spectrum meters (numpy + numba).

Why not the torch meters in ``dsp``: these run block by block with carried filter state, so
a 60-minute file is measured in bounded memory, and they cost no torch import. Audio blocks
are ``(channels, samples)`` arrays fed in order to :meth:`Meter.process`.

- Integrated loudness: ITU-R BS.1770-4 (K-weighting, 400 ms blocks on a 100 ms hop, absolute
  gate -70 LUFS, relative gate -10 LU). Channel weights are 1 (mono and stereo only).
- Loudness range: EBU Tech 3342 (3 s short-term windows on a 100 ms hop, gates -70 LUFS and
  -20 LU, 10th to 95th percentile). NaN when fewer than two windows pass.
- True peak: the 4x polyphase interpolator of ``scipy.signal.resample_poly(x, 4, 1)``
  (81-tap Kaiser(5) windowed sinc), evaluated only where a bound says the peak could be,
  so it equals ``max |resample_poly(x, 4, 1)|`` exactly while costing a fraction of it.
- Crest factor: sample peak (dBFS) minus RMS (dBFS, all channels pooled).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

ABSOLUTE_GATE_LUFS = -70.0
RELATIVE_GATE_LU = -10.0
LRA_RELATIVE_GATE_LU = -20.0

# BS.1770 K-weighting prototype (pre-filter high shelf + RLB high-pass), as analog
# parameters so the filter can be re-derived at any rate.
_SHELF_HZ, _SHELF_GAIN_DB, _SHELF_Q = 1681.974450955533, 3.999843853973347, 0.7071752369554196
_HP_HZ, _HP_Q = 38.13547087602444, 0.5003270373238773

TP_HALF = 10  # input samples either side used by the 4x interpolator


def _to_db(value: float, power: bool = False) -> float:
    if value <= 0 or not math.isfinite(value):
        return -math.inf
    return (10.0 if power else 20.0) * math.log10(value)


def k_weighting_sos(sample_rate: float) -> np.ndarray:
    """(2, 6) second-order sections of the K-weighting filter at ``sample_rate``.

    The shelf uses the bilinear form whose 48 kHz coefficients are BS.1770's table; the
    high-pass numerator is scaled to unity gain at high frequencies (the table's
    [1, -2, 1] adds about +0.04 dB there).
    """
    k = math.tan(math.pi * _SHELF_HZ / sample_rate)
    vh = 10.0 ** (_SHELF_GAIN_DB / 20.0)
    vb = vh ** 0.4996667741545416
    a0 = 1.0 + k / _SHELF_Q + k * k
    shelf = [(vh + vb * k / _SHELF_Q + k * k) / a0, 2.0 * (k * k - vh) / a0,
             (vh - vb * k / _SHELF_Q + k * k) / a0, 1.0, 2.0 * (k * k - 1.0) / a0,
             (1.0 - k / _SHELF_Q + k * k) / a0]
    k = math.tan(math.pi * _HP_HZ / sample_rate)
    a0 = 1.0 + k / _HP_Q + k * k
    hp = [1.0 / a0, -2.0 / a0, 1.0 / a0, 1.0, 2.0 * (k * k - 1.0) / a0,
          (1.0 - k / _HP_Q + k * k) / a0]
    return np.array([shelf, hp], dtype=np.float64)


def resample_poly_filter() -> np.ndarray:
    """The 81-tap lowpass ``scipy.signal.resample_poly(x, 4, 1)`` designs, times 4:
    firwin(81, 1/4, window=("kaiser", 5.0)), i.e. a Kaiser(5)-windowed sinc at a quarter
    band, scaled to unit DC gain (written out so the meters need no scipy.signal)."""
    n = 8 * TP_HALF + 1
    m = np.arange(n) - (n - 1) / 2.0
    h = 0.25 * np.sinc(0.25 * m) * np.kaiser(n, 5.0)
    return 4.0 * h / h.sum()


def _tp_phase_taps() -> np.ndarray:
    """(2*TP_HALF+1, 4) taps: column phi gives y[4n+phi] from x[n-TP_HALF .. n+TP_HALF],
    the polyphase form of :func:`resample_poly_filter`."""
    h = resample_poly_filter()
    taps = np.zeros((2 * TP_HALF + 1, 4))
    for phi in range(4):
        for m, t in enumerate(h[phi::4]):
            # y[4n+phi] += t * x[n + TP_HALF - m]; row j <-> x[n - TP_HALF + j]
            taps[2 * TP_HALF - m, phi] = t
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

    Centres need TP_HALF samples of context on both sides inside ``buf``. Work goes by
    segments, loudest first; a segment whose bound (L1 norm of the taps times its largest
    |sample|) cannot beat the best value so far is skipped. Returns max(floor, found).
    """
    taps = tp_taps().astype(np.float32)
    l1 = float(np.abs(taps).sum(axis=0).max())
    # per phase, only the non-zero taps (phase 0 of the quarter-band sinc is one tap)
    phases = [[(j, float(taps[j, phi])) for j in range(taps.shape[0]) if abs(taps[j, phi]) > 1e-12]
              for phi in range(taps.shape[1])]
    best = floor
    starts = np.arange(lo, hi, segment)
    for ch in range(buf.shape[0]):
        row = buf[ch]
        a = np.abs(row)
        seg_max = np.array([a[s - TP_HALF:min(s + segment, hi) + TP_HALF].max() for s in starts])
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
                    np.multiply(row[s - TP_HALF + j:s - TP_HALF + j + n], t, out=tmp)
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
        self.hop = max(1, int(round(0.1 * sample_rate)))
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
        self._tp_hist = np.zeros((channels, 2 * TP_HALF), dtype=np.float32)
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
        # buf[t] is signal sample (before - 2*TP_HALF + t); centres with full context are
        # t in [TP_HALF, len - TP_HALF); the ones before the signal start are skipped
        buf = np.concatenate([self._tp_hist, x], axis=1)
        before = self._count - x.shape[1]
        lo = TP_HALF + max(0, TP_HALF - before)
        hi = buf.shape[1] - TP_HALF
        if hi > lo:
            self._tp_best = true_peak_positions(buf, lo, hi, self._tp_best)
        self._tp_hist = buf[:, -2 * TP_HALF:].copy()

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

    def integrated_lufs(self) -> float:
        """Gated integrated loudness so far (LUFS, -inf when nothing passes the gates)."""
        if not self._loudness:
            return math.nan
        hops = self.hop_energies()
        if hops.size >= 4:
            c = np.concatenate([[0.0], np.cumsum(hops)])
            blocks = (c[4:] - c[:-4]) / 4.0
        elif self._count:
            total = float(hops.sum()) * self.hop + self._hop_acc
            blocks = np.array([total / self._count])
        else:
            return -math.inf
        return gated_loudness(blocks, RELATIVE_GATE_LU)

    def short_term_lufs(self) -> np.ndarray:
        """Short-term loudness (3 s windows, 100 ms hop), (windows,) LUFS."""
        hops = self.hop_energies()
        if hops.size < 30:
            return np.zeros(0)
        c = np.concatenate([[0.0], np.cumsum(hops)])
        e = (c[30:] - c[:-30]) / 30.0
        with np.errstate(divide="ignore"):
            return -0.691 + 10.0 * np.log10(np.maximum(e, 1e-30))

    def loudness_range(self) -> float:
        """EBU Tech 3342 loudness range in LU (NaN when undefined)."""
        st = self.short_term_lufs()
        st = st[st > ABSOLUTE_GATE_LUFS]
        if st.size < 2:
            return math.nan
        gate = -0.691 + 10.0 * math.log10(float(np.mean(10.0 ** ((st + 0.691) / 10.0)))) \
            + LRA_RELATIVE_GATE_LU
        st = st[st > gate]
        if st.size < 2:
            return math.nan
        lo, hi = np.percentile(st, [10.0, 95.0])
        return float(hi - lo)

    def true_peak_linear(self) -> float:
        """Largest 4x-interpolated magnitude (linear), including the tail after the end."""
        if not self._tp:
            raise ValueError("true peak was not enabled on this meter")
        if self._count == 0:
            return 0.0
        pad = np.zeros((self.channels, TP_HALF), dtype=np.float32)
        # flush: evaluate the last TP_HALF centres against trailing zeros, without counting
        hist, best = self._tp_hist, self._tp_best
        buf = np.concatenate([hist, pad], axis=1)
        n_last = min(TP_HALF, self._count)
        hi = buf.shape[1] - TP_HALF
        lo = hi - n_last
        return true_peak_positions(buf, lo, hi, best)

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


def gated_loudness(blocks: np.ndarray, relative_gate_lu: float) -> float:
    """BS.1770 two-stage gated loudness (LUFS) of block mean-square energies (blocks,)."""
    with np.errstate(divide="ignore"):
        level = -0.691 + 10.0 * np.log10(np.maximum(blocks, 1e-30))
    keep = (level > ABSOLUTE_GATE_LUFS) & (blocks > 0)
    if not keep.any():
        return -math.inf
    gate = -0.691 + 10.0 * math.log10(float(blocks[keep].mean())) + relative_gate_lu
    keep &= level > gate
    if not keep.any():
        return -math.inf
    return -0.691 + 10.0 * math.log10(float(blocks[keep].mean()))


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
