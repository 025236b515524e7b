"""Per-track analysis (energy, loudness, tempo, key) and the album's running order.

Features come from the input mix (at most 90 s from its middle), mono, decimated to
about 11 kHz, in a 2048-point STFT with a 256-sample hop (23 ms):

- loudness: the input's integrated loudness (BS.1770, measured by the caller);
- onset rate: peaks of the spectral flux (log-magnitude increases) per second;
- tempo: the autocorrelation of the flux, searched between 60 and 200 BPM, weighted by a
  log-normal prior centred on 120 BPM (one octave wide) against octave errors;
- spectral centroid: energy-weighted mean over frames (brightness);
- key: a 12-bin chroma (100 Hz - 2 kHz) correlated with the Krumhansl-Kessler major
  and minor profiles in all 24 keys; "confidence" is the best correlation;
- energy: a 0..1 score, the mean of three clipped scales: loudness from -30 to -8 LUFS,
  onset rate from 0 to 6 per second, centroid from 500 Hz to 4 kHz (log).

``--sequence auto``: the tracks sorted by energy, strongest first, then every following
pair swapped: e1, e3, e2, e5, e4, ... The album opens with its most energetic track, the
overall energy falls towards the end, and the transitions alternate down and up, the
shape that surveys of released albums describe (strong openers, varied contrast between
neighbours). It is a heuristic proposal; the reasons are printed and written to the
report, and ``--sequence keep`` (the default) uses the given order.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

ANALYSIS_RATE = 11025
NFFT = 2048
HOP = 256
NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
MAX_ANALYSIS_SECONDS = 90.0


@dataclass
class Features:
    loudness_lufs: float
    onset_rate: float
    tempo_bpm: float
    centroid_hz: float
    key: str
    key_confidence: float
    energy: float

    def as_dict(self) -> dict:
        d = asdict(self)
        for k, v in d.items():
            if isinstance(v, float):
                d[k] = round(v, 3) if math.isfinite(v) else None
        return d


def _decimated_mono(x: np.ndarray, sr: int) -> tuple[np.ndarray, float]:
    """Mono, at most MAX_ANALYSIS_SECONDS from the middle, averaged over q samples (a
    boxcar decimation: its aliasing is irrelevant for these coarse features)."""
    n = int(MAX_ANALYSIS_SECONDS * sr)
    s = max(0, (x.shape[1] - n) // 2)
    seg = np.asarray(x[:, s:s + n], dtype=np.float32)
    mono = seg.mean(axis=0)
    q = max(1, int(round(sr / ANALYSIS_RATE)))
    m = mono.size // q * q
    if q > 1 and m:
        mono = mono[:m].reshape(-1, q).mean(axis=1)
    return mono, sr / q


def analyze(x: np.ndarray, sample_rate: int, loudness_lufs: float) -> Features:
    """Features of one track (channels, n) at ``sample_rate`` (see the module doc)."""
    mono, rate = _decimated_mono(x, sample_rate)
    if mono.size < NFFT:
        mono = np.pad(mono, (0, NFFT - mono.size))
    frames = np.lib.stride_tricks.sliding_window_view(mono, NFFT)[::HOP]
    mag = np.abs(np.fft.rfft(frames * np.hanning(NFFT).astype(np.float32), axis=1))
    freqs = np.fft.rfftfreq(NFFT, 1.0 / rate)
    power = mag.astype(np.float64) ** 2
    frame_rate = rate / HOP

    # onset strength: half-wave rectified increase of log magnitude
    logm = np.log1p(1000.0 * mag / max(float(mag.max()), 1e-12))
    flux = np.maximum(np.diff(logm, axis=0), 0.0).sum(axis=1)
    onset_rate = _onset_rate(flux, frame_rate)
    tempo = _tempo(flux, frame_rate)

    e = power.sum(axis=1)
    total = float(e.sum())
    centroid = float((power @ freqs).sum() / total) if total > 0 else 0.0

    sel = (freqs >= 100.0) & (freqs <= 2000.0)
    pc = np.mod(np.round(12.0 * np.log2(freqs[sel] / 440.0)).astype(int) + 9, 12)
    chroma = np.bincount(pc, weights=power[:, sel].sum(axis=0), minlength=12)
    key, conf = _key(chroma)

    def clip01(v: float) -> float:
        return float(min(max(v, 0.0), 1.0)) if math.isfinite(v) else 0.0

    energy = (clip01((loudness_lufs + 30.0) / 22.0) + clip01(onset_rate / 6.0)
              + clip01(math.log2(max(centroid, 1.0) / 500.0) / 3.0)) / 3.0
    return Features(float(loudness_lufs), float(onset_rate), float(tempo), float(centroid), key,
                    float(conf), float(energy))


def _onset_rate(flux: np.ndarray, frame_rate: float) -> float:
    if flux.size < 3 or not np.any(flux > 0):
        return 0.0
    thr = flux.mean() + flux.std()
    peaks = (flux[1:-1] > flux[:-2]) & (flux[1:-1] >= flux[2:]) & (flux[1:-1] > thr)
    idx = np.flatnonzero(peaks) + 1
    min_gap = max(1, int(0.1 * frame_rate))
    count, last = 0, -min_gap
    for i in idx:
        if i - last >= min_gap:
            count += 1
            last = i
    return count / (flux.size / frame_rate)


def _tempo(flux: np.ndarray, frame_rate: float) -> float:
    f = flux - flux.mean()
    if f.size < 4 or not np.any(f):
        return math.nan
    n = 1 << int(math.ceil(math.log2(2 * f.size)))
    spec = np.fft.rfft(f, n)
    ac = np.fft.irfft(np.abs(spec) ** 2, n)[:f.size]
    lo = max(1, int(frame_rate * 60.0 / 200.0))
    hi = min(ac.size - 2, int(frame_rate * 60.0 / 60.0) + 1)
    if hi <= lo:
        return math.nan
    lags = np.arange(lo, hi + 1)
    bpm = 60.0 * frame_rate / lags
    prior = np.exp(-0.5 * (np.log2(bpm / 120.0)) ** 2)
    score = ac[lags] * prior
    k = int(np.argmax(score))
    lag = float(lags[k])
    if 0 < k < lags.size - 1:  # parabolic refinement of the peak
        a, b, c = ac[lags[k] - 1], ac[lags[k]], ac[lags[k] + 1]
        den = a - 2 * b + c
        if den < 0:
            lag += 0.5 * (a - c) / den
    return 60.0 * frame_rate / lag


def _key(chroma: np.ndarray) -> tuple[str, float]:
    if not np.any(chroma > 0):
        return "unknown", 0.0
    c = chroma / chroma.sum()
    best, name = -2.0, "unknown"
    for tonic in range(12):
        for profile, mode in ((KK_MAJOR, "major"), (KK_MINOR, "minor")):
            r = float(np.corrcoef(c, np.roll(profile, tonic))[0, 1])
            if r > best:
                best, name = r, f"{NAMES[tonic]} {mode}"
    return name, best


def propose_order(features: list[Features]) -> tuple[list[int], list[str]]:
    """Indices in the proposed order and one reason per position (see the module doc)."""
    n = len(features)
    ranked = sorted(range(n), key=lambda i: (-features[i].energy, i))
    order = ranked[:1]
    rest = ranked[1:]
    for j in range(0, len(rest), 2):
        pair = rest[j:j + 2]
        order.extend(reversed(pair) if len(pair) == 2 else pair)
    reasons = []
    for pos, i in enumerate(order):
        e = features[i].energy
        if pos == 0:
            reasons.append(f"opens the album: the highest energy ({e:.2f})")
            continue
        prev = features[order[pos - 1]].energy
        step = "down" if e < prev else "up" if e > prev else "level"
        why = (f"{step} from {prev:.2f} to {e:.2f}: "
               + ("contrast after the previous track" if step == "down" else
                  "lifts the energy again" if step == "up" else "same energy"))
        if pos == n - 1:
            why += "; closes the album"
        reasons.append(why)
    return order, reasons


def keep_order(n: int) -> tuple[list[int], list[str]]:
    return list(range(n)), ["given order"] * n
