"""Mains hum (50 or 60 Hz and its harmonics): detected as stable narrow peaks, removed by
zero-phase notches placed on each harmonic's own measured frequency.

Detection works on the power spectra of consecutive Hann-windowed segments of
``SEGMENT_S`` (~1.5 s, 0.67 Hz bins at 44.1 kHz), summed over channels, up to ``MAX_HZ``
(computed on the signal decimated to ~5.5 kHz: :func:`_segment_spectra`):

- for each mains family (50, 60 Hz) the strongest bin within +-0.5 % of k * f0 (k = 1..3)
  in the average spectrum is a candidate; its *prominence* is its power over the median
  of the spectrum 3-20 Hz to either side; the counted ones give the fundamental, and
  every harmonic up to ``MAX_HARMONICS`` is then searched within +-0.2 % of k times it;
- its frequency is refined by parabolic interpolation of the log power around the peak,
  then re-estimated in each segment: *stability* is the fraction of segments in which the
  peak stands ``SEGMENT_PROMINENCE_DB`` above that segment's local median, and the spread of
  the per-segment frequencies measures how much it wanders;
- a harmonic counts when its prominence reaches ``PROMINENCE_DB``, its stability
  ``STABILITY``, and the per-segment frequencies spread by at most
  max(``MAX_SPREAD_HZ``, 0.1 %) (a held musical note wanders more). Hum is *found* when one of the first three harmonics counts and either a
  second harmonic counts or the low one reaches ``SINGLE_PROMINENCE_DB``.

Once hum is found, a harmonic is *seen* at the lower bar of ``SEEN_PROMINENCE_DB`` and
``SEEN_STABILITY`` (same window and spread rule): lines partly hidden by the music.
The fix: for every harmonic from 1 to the highest one seen, a second-order notch
(``scipy.signal.iirnotch``), on the harmonic's own fine frequency (:func:`refine`, 0.08 Hz
bins) where it counts and on k x the fine fundamental otherwise (a weak line's own estimate
is pulled by the music), bandwidth 4 x the measured spread within
[``MIN_BANDWIDTH_HZ``, ``MAX_BANDWIDTH_HZ``], run forward and backward (zero phase, squared
depth). At 0.5 Hz, a notch within 0.08 Hz of its line takes >= 20 dB off it, and a music
line 1 Hz away loses 0.26 dB (a steady one; a note with vibrato or a short one more).
Reported: the family, each harmonic's frequency and level above the local spectrum, and
the level left after the notches.
"""
from __future__ import annotations

import math

import numpy as np

from scipy import fft as sfft

from ._common import Finding, db, decimate, decimator
from ._filters import notch_sos as notch_section, sosfiltfilt

SEGMENT_S = 1.486  # 65536 samples at 44.1 kHz
MAX_HARMONICS = 16
PROMINENCE_DB = 10.0
SINGLE_PROMINENCE_DB = 20.0
SEGMENT_PROMINENCE_DB = 6.0
STABILITY = 0.75
MIN_BANDWIDTH_HZ = 0.5
MAX_BANDWIDTH_HZ = 3.0
MAX_SPREAD_HZ = 0.25
SEEN_PROMINENCE_DB = 3.0
SEEN_STABILITY = 0.5
MAX_HZ = 1100.0  # top of the analysed spectra: above the highest harmonic searched
# (MAX_HARMONICS x 60 Hz x (1 + TOLERANCE) = 965 Hz) and its 20 Hz floor window
TOLERANCE = 0.005  # +-0.5 % around nominal mains
FINE_SEGMENT_S = 5.94  # 262144 samples at 44.1 kHz


def _segment_spectra(x: np.ndarray, sample_rate: int) -> tuple[np.ndarray, float]:
    """Per-segment power spectra summed over channels, (segments, bins) up to MAX_HZ.

    Computed on the signal decimated by D (a power of two, rate >= 4 x MAX_HZ: 5.5 kHz at
    44.1 kHz) through a Kaiser FIR flat to 1e-3 dB up to MAX_HZ and about 89 dB down where
    it would alias into it (:func:`~._common.decimator`): segments of n / D samples span
    the same time and give the same bins as n at the full rate, for 1/D of the FFT work
    (a signal shorter than 64 D samples is analysed at the full rate).
    Scaled by D^2, the same magnitudes as the full-rate spectra."""
    n = 1 << int(round(math.log2(SEGMENT_S * sample_rate)))
    T = x.shape[-1]
    if T < n:
        n = 1 << int(math.floor(math.log2(max(T, 256))))
    count = T // n
    factor, h = decimator(sample_rate, MAX_HZ)
    if n // factor < 64:  # a very short signal: full rate
        factor = 1
    xd = np.asarray(x, dtype=np.float32)
    if factor > 1:
        xd = decimate(xd, factor, h)
    m = n // factor
    w = np.hanning(m).astype(np.float32)
    top = int(MAX_HZ * n / sample_rate) + 2
    P = np.zeros((count, top))
    for c in range(x.shape[0]):
        seg = xd[c, :count * m].reshape(count, m) * w
        S = sfft.rfft(seg, axis=-1)[:, :top]
        P += S.real.astype(np.float64) ** 2 + S.imag.astype(np.float64) ** 2
    return P * float(factor) ** 2, sample_rate / n


def _local_floor(P: np.ndarray, peak: int, bin_hz: float) -> np.ndarray:
    lo_in, hi_in = int(3 / bin_hz), int(20 / bin_hz)
    idx = np.r_[peak - hi_in:peak - lo_in + 1, peak + lo_in:peak + hi_in + 1]
    idx = idx[(idx >= 1) & (idx < P.shape[-1])]
    return np.median(P[..., idx], axis=-1) + 1e-30


def _interp_peak(logp: np.ndarray, k: int) -> float:
    """Parabolic interpolation of a peak at bin k on log power: fractional bin offset."""
    if k <= 0 or k >= logp.shape[-1] - 1:
        return 0.0
    a, b, c = logp[k - 1], logp[k], logp[k + 1]
    den = a - 2 * b + c
    return float(np.clip(0.5 * (a - c) / den, -0.5, 0.5)) if den < 0 else 0.0


def _interp_peaks(logp: np.ndarray, k: np.ndarray) -> np.ndarray:
    """:func:`_interp_peak` of row i of logp at bin k[i], for all rows at once."""
    rows = np.arange(len(k))
    inner = (k > 0) & (k < logp.shape[-1] - 1)
    kk = np.clip(k, 1, logp.shape[-1] - 2)
    a, b, c = logp[rows, kk - 1], logp[rows, kk], logp[rows, kk + 1]
    den = a - 2 * b + c
    with np.errstate(divide="ignore", invalid="ignore"):
        off = np.clip(0.5 * (a - c) / den, -0.5, 0.5)
    return np.where(inner & (den < 0), off, 0.0)


def _measure_line(P: np.ndarray, mean: np.ndarray, log_mean: np.ndarray, logP: np.ndarray,
                  lo_hz: float, hi_hz: float, bin_hz: float) -> dict:
    """The strongest bin of the mean spectrum in [lo_hz, hi_hz]: its refined frequency, its
    prominence over the local median, its stability and frequency spread over segments."""
    lo = int(math.floor(lo_hz / bin_hz))
    hi = max(int(math.ceil(hi_hz / bin_hz)), lo + 1)
    peak = lo + int(np.argmax(mean[lo:hi + 1]))
    prom_db = db(mean[peak] / _local_floor(mean, peak, bin_hz))
    freq = (peak + _interp_peak(log_mean, peak)) * bin_hz
    seg_peak = peak - 1 + np.argmax(P[:, peak - 1:peak + 2], axis=1)
    seg_prom = P[np.arange(len(P)), seg_peak] / _local_floor(P, peak, bin_hz)
    ok = seg_prom >= 10 ** (SEGMENT_PROMINENCE_DB / 10)
    seg_f = (seg_peak + _interp_peaks(logP, seg_peak)) * bin_hz
    spread = float(np.std(seg_f[ok])) if ok.sum() >= 2 else bin_hz
    return {"frequency_hz": freq, "prominence_db": prom_db, "stability": float(ok.mean()),
            "spread_hz": spread}


def _steady(h: dict, prominence_db: float = PROMINENCE_DB, stability: float = STABILITY) -> bool:
    """Prominent, present in most segments, and not wandering (mains is a fixed line)."""
    return (h["prominence_db"] >= prominence_db and h["stability"] >= stability
            and h["spread_hz"] <= max(MAX_SPREAD_HZ, 0.001 * h["frequency_hz"]))


def detect(x: np.ndarray, sample_rate: int) -> dict:
    """Measure the 50 and 60 Hz families; return the more convincing one.

    Step 1: the first three harmonics are searched within +-``TOLERANCE`` of nominal;
    those that count give the fundamental estimate (weighted by k^2 and prominence).
    Step 2: every harmonic k is re-searched within +-max(1 bin, 0.2 %) of k x that
    estimate. A harmonic counts when it is prominent (``PROMINENCE_DB``), stable
    (``STABILITY``) and within that window. Found: a low harmonic (k <= 3) counts and
    either a second one counts or it alone reaches ``SINGLE_PROMINENCE_DB``.
    """
    P, bin_hz = _segment_spectra(x, sample_rate)
    mean = P.mean(axis=0)
    log_mean = np.log(mean + 1e-30)
    logP = np.log(P + 1e-30)
    top = min(MAX_HZ, 0.45 * sample_rate) - 25
    best = None
    for f0 in (50.0, 60.0):
        low = []
        for k in (1, 2, 3):
            h = _measure_line(P, mean, log_mean, logP, k * f0 * (1 - TOLERANCE),
                              k * f0 * (1 + TOLERANCE), bin_hz)
            h["harmonic"] = k
            h["counted"] = (_steady(h) and abs(h["frequency_hz"] - k * f0) <= k * f0 * TOLERANCE)
            low.append(h)
        seed = [h for h in low if h["counted"]]
        if not seed:
            f_est = f0
        else:
            w = np.array([h["harmonic"] ** 2 * 10 ** (min(h["prominence_db"], 40) / 10) for h in seed])
            f_est = float(np.sum(w * [h["frequency_hz"] / h["harmonic"] for h in seed]) / w.sum())
        harmonics = []
        for k in range(1, MAX_HARMONICS + 1):
            fk = k * f_est
            if fk > top:
                break
            half = max(1.01 * bin_hz, 0.002 * fk)
            h = _measure_line(P, mean, log_mean, logP, fk - half, fk + half, bin_hz)
            h["harmonic"] = k
            near = abs(h["frequency_hz"] - fk) <= half
            h["counted"] = bool(seed) and _steady(h) and near
            h["seen"] = bool(seed) and near and _steady(h, SEEN_PROMINENCE_DB, SEEN_STABILITY)
            harmonics.append(h)
        counted = [h for h in harmonics if h["counted"]]
        low_counted = [h for h in counted if h["harmonic"] <= 3]
        strongest = max((h["prominence_db"] for h in low_counted), default=0.0)
        found = bool(low_counted) and (len(counted) >= 2 or strongest >= SINGLE_PROMINENCE_DB)
        score = (found, len(counted), strongest)
        if best is None or score > best[0]:
            best = (score, f0, f_est, harmonics, found)
    _, f0, f_est, harmonics, found = best
    return {"mains_hz": f0, "fundamental_hz": f_est, "found": found, "harmonics": harmonics,
            "bin_hz": bin_hz}


def refine(x: np.ndarray, sample_rate: int, info: dict) -> None:
    """Fine frequencies of the harmonics of a detection, in place.

    The detection's 1.5 s segments resolve 0.67 Hz; a notch 1 Hz wide must sit within about
    0.15 Hz of the line to take 20 dB off it. Here the power spectrum is averaged over
    Hann segments of ``FINE_SEGMENT_S`` (about 6 s, half overlapping, zero-padded twice:
    0.08 Hz bins), and each harmonic's peak is searched within +-0.2 % (at least 0.3 Hz) of
    k x the detected fundamental and refined by parabolic interpolation of the log power
    (bias under 0.01 Hz for a Hann window zero-padded twice). A music line 1 Hz away is
    3 main-lobe half-widths away and does not pull it. Each harmonic gets "fine_hz"; the
    fundamental is re-estimated from the counted harmonics' fine frequencies (least
    squares of f_k = k f0, weighted by prominence) as "fine_fundamental_hz"."""
    T = x.shape[-1]
    n = 1 << int(round(math.log2(FINE_SEGMENT_S * sample_rate)))
    while n > 4096 and n > T:
        n //= 2
    hop = n // 2
    count = max(1, (T - n) // hop + 1)
    nfft = 2 * n
    w = np.hanning(n).astype(np.float32)
    top = int(MAX_HZ * nfft / sample_rate) + 2
    P = np.zeros(top)
    for c in range(x.shape[0]):
        for i in range(count):
            seg = x[c, i * hop:i * hop + n].astype(np.float32)
            if len(seg) < n:
                seg = np.pad(seg, (0, n - len(seg)))
            S = np.fft.rfft(seg * w, nfft)[:top]
            P += S.real.astype(np.float64) ** 2 + S.imag.astype(np.float64) ** 2
    logp = np.log(P + 1e-30)
    bin_hz = sample_rate / nfft
    f0 = info["fundamental_hz"]
    num = den = 0.0
    for h in info["harmonics"]:
        fk = h["harmonic"] * f0
        half = max(0.3, 0.002 * fk)
        lo, hi = int(math.floor((fk - half) / bin_hz)), int(math.ceil((fk + half) / bin_hz))
        if lo < 1 or hi >= top - 1:
            h["fine_hz"] = fk
            continue
        k = lo + int(np.argmax(P[lo:hi + 1]))
        h["fine_hz"] = (k + _interp_peak(logp, k)) * bin_hz
        if h["counted"]:
            wgt = 10 ** (min(h["prominence_db"], 40) / 10)
            num += wgt * h["harmonic"] * h["fine_hz"]
            den += wgt * h["harmonic"] ** 2
    info["fine_fundamental_hz"] = num / den if den > 0 else f0
    info["fine_bin_hz"] = bin_hz


def notch_plan(info: dict) -> list[dict]:
    """Notches for a detection: every harmonic from 1 to the highest one that is seen; one
    that counts (a strong line) at its own measured frequency, the others at k x the
    fundamental (under the music a weak line's own estimate is pulled by the music's
    spectrum; k x the fundamental, measured on the strong lines, is closer)."""
    seen = [h for h in info["harmonics"] if h.get("seen") or h["counted"]]
    if not seen or not info["found"]:
        return []
    top = max(h["harmonic"] for h in seen)
    plan = []
    for h in info["harmonics"][:top]:
        f0 = info.get("fine_fundamental_hz", info["fundamental_hz"])
        if h["counted"]:
            plan.append({"harmonic": h["harmonic"], "frequency_hz": h.get("fine_hz", h["frequency_hz"]),
                         "spread_hz": h["spread_hz"], "measured": True})
        else:
            plan.append({"harmonic": h["harmonic"], "frequency_hz": h["harmonic"] * f0,
                         "spread_hz": 0.0, "measured": False})
    return plan


def notch_sos(harmonics: list[dict], sample_rate: int) -> np.ndarray:
    sections = []
    for h in harmonics:
        bw = min(MAX_BANDWIDTH_HZ, max(MIN_BANDWIDTH_HZ, 4.0 * h["spread_hz"]))
        sections.append(notch_section(h["frequency_hz"], h["frequency_hz"] / bw, sample_rate)[0])
    return np.array(sections)


def remove_hum(x: np.ndarray, sample_rate: int, apply: bool = True) -> tuple[np.ndarray, Finding]:
    info = detect(x, sample_rate)
    counted = [h for h in info["harmonics"] if h["counted"]]
    do = apply and info["found"]
    out = x
    after = {}
    if info["found"]:
        refine(x, sample_rate, info)
    plan = notch_plan(info) if do else []
    if do:
        sos = notch_sos(plan, sample_rate)
        pad = int(min(x.shape[-1] - 1, 3 * sample_rate / MIN_BANDWIDTH_HZ))
        out = sosfiltfilt(sos, x, pad, about="mean").astype(x.dtype)
        P, bin_hz = _segment_spectra(out, sample_rate)
        mean = P.mean(axis=0)
        for h in counted:
            b = int(round(h["frequency_hz"] / bin_hz))
            after[h["harmonic"]] = db(mean[b - 1:b + 2].max() / _local_floor(mean, b, bin_hz))
    measured = {"mains_hz": info["mains_hz"], "fundamental_hz": info.get("fine_fundamental_hz", info["fundamental_hz"]),
                "harmonics": [{k: v for k, v in h.items()} for h in info["harmonics"] if h["counted"]],
                "prominence_threshold_db": PROMINENCE_DB, "stability_threshold": STABILITY}
    change = {"prominence_after_db": {str(k): v for k, v in after.items()},
              "notches_hz": [p["frequency_hz"] for p in plan]}
    if info["found"]:
        fund = info["fundamental_hz"]
        strongest = max(h["prominence_db"] for h in counted)
        s = (f"mains hum at {fund:.2f} Hz ({info['mains_hz']:.0f} Hz family), {len(counted)} "
             f"harmonic(s) up to {strongest:.1f} dB above the local spectrum")
        if do:
            worst = max(after.values()) if after else float("nan")
            s += f"; {len(plan)} zero-phase notches, lines now at most {worst:.1f} dB above it"
            action = f"{len(plan)} zero-phase notches on the measured harmonic frequencies"
        else:
            s += "; not applied"
            action = "none"
    else:
        s, action = "no mains hum", "none"
    return out, Finding("hum", info["found"], do, s, measured, change, action)
