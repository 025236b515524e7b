"""Polarity and low-frequency anti-phase between the two channels; optional mono bass.

Correlation meter (:func:`measure`): the Pearson correlation of left and right,
broadband, in the low bands ``LOW_FROM_HZ`` to each of ``LOW_TOPS_HZ`` (from Welch spectra of
block means of ~32 samples; the most negative one counts), and above it. Bass is almost always in phase in a mix, so:

- low-band correlation below ``-ANTI_PHASE`` with the low band carrying at least
  ``MIN_LOW_SHARE_DB`` of the energy -> anti-phase found;
  - and the rest of the spectrum also negatively correlated (< 0) -> one channel is
    inverted: the fix inverts the right channel;
  - otherwise (the rest in phase) only the low end is anti-phase: a band of one channel
    was inverted. :func:`anti_phase_band` finds where it ends (the normalized
    cross-spectrum turns from negative to positive) and which channel carries it (the one
    that cancels itself around that crossover); the fix inverts that channel's content
    below the crossover back (:func:`flip_low_band`, zero phase). A band inverted with an
    ideal crossover comes back exactly; with a gradual one, the 1/3 octave around the
    crossover keeps a dip (what the inversion cancelled cannot be recovered).
- ``mono_bass`` (``--mono-bass HZ``): the low band below HZ of both channels becomes
  their mean (the same zero-phase crossover), whether or not anything was found.
"""
from __future__ import annotations

import numpy as np

from ._common import Finding, block_means, db, dot
from ._filters import butter_sos, sosfiltfilt

LOW_FROM_HZ = 20.0
LOW_TOPS_HZ = (60.0, 90.0, 120.0)
ANTI_PHASE = 0.3
MIN_LOW_SHARE_DB = -30.0
MIN_CROSSOVER_HZ = 40.0
MAX_CROSSOVER_HZ = 400.0
DIP_MARGIN_DB = 1.0


def lowpass(x: np.ndarray, sample_rate: float, cutoff_hz: float) -> np.ndarray:
    """Zero-phase 2nd-order Butterworth low-pass, forward and backward (LR4 magnitude)."""
    sos = butter_sos(2, cutoff_hz, "lowpass", sample_rate)
    pad = int(min(x.shape[-1] - 1, 4 * sample_rate / cutoff_hz))
    return sosfiltfilt(sos, x, pad, about="mean")  # audio cut anywhere: see _filters.sosfiltfilt


def measure(x: np.ndarray, sample_rate: int) -> dict:
    """The correlation meter: broadband (full rate); low band from the Welch auto- and
    cross-spectra, sum Re S_LR / sqrt(sum S_LL sum S_RR) over [``LOW_FROM_HZ``, top) for
    each top in ``LOW_TOPS_HZ`` (brick-wall bands, so content just above a sub-bass
    inversion does not dilute it), the most negative of those carrying at least
    ``MIN_LOW_SHARE_DB`` of the energy reported as ``low_correlation`` with its
    ``low_band_hz``; and the rest above that band (broadband minus low, as mean-square
    quantities)."""
    L, R = x[0], x[1]  # float32 audio: the products are summed in float64 (see dot)
    ll, rr, lr = dot(L, L), dot(R, R), dot(L, R)
    broad = float(lr / np.sqrt(ll * rr)) if ll * rr > 0 else 0.0
    f, Sll, Srr, Slr = _spectra(x, sample_rate)
    df = f[1] - f[0]
    e_all = (ll + rr) / len(L)
    best = None
    for top in LOW_TOPS_HZ:
        b = _band(f, LOW_FROM_HZ, top)
        pl, pr, pc = Sll[b].sum() * df, Srr[b].sum() * df, Slr[b].real.sum() * df
        corr = float(pc / np.sqrt(pl * pr)) if pl * pr > 0 else 0.0
        share = db((pl + pr) / max(e_all, 1e-30))
        eligible = share >= MIN_LOW_SHARE_DB
        key = (eligible, -corr)
        if best is None or key > best[0]:
            best = (key, top, corr, share, pl, pr, pc)
    _, top, low_corr, share, pl, pr, pc = best
    c_all = lr / len(L)
    eL_hi = max(ll / len(L) - pl, 1e-30)
    eR_hi = max(rr / len(R) - pr, 1e-30)
    high_corr = (c_all - pc) / np.sqrt(eL_hi * eR_hi)
    return {"correlation": broad, "low_correlation": low_corr, "low_band_hz": [LOW_FROM_HZ, top],
            "high_correlation": float(np.clip(high_corr, -1, 1)), "low_share_db": share}


def _spectra(x: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Welch spectra below ~700 Hz of the two channels and their cross-spectrum, from block
    means of D samples (rate ~1.4 kHz; the block mean is flat within 0.2 dB to 200 Hz and
    within 1 dB to 400 Hz, the same for both channels, so ratios are unaffected)."""
    D = max(1, int(sample_rate // 1400))
    dec = block_means(x[:2], D)
    rate = sample_rate / D
    n = int(min(dec.shape[-1], 1 << int(round(np.log2(rate * 2.0)))))  # ~2 s segments: 0.5 Hz
    f, S = _welch(dec, rate, n)
    return f, S[0, 0].real, S[1, 1].real, S[0, 1]


def _welch(x: np.ndarray, rate: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Welch auto- and cross-spectra of the rows of x (channels, M) in one pass: what
    ``scipy.signal.welch`` / ``csd`` give with their defaults (periodic Hann, ``n``-sample
    segments, half overlapping, each segment's mean removed, one-sided density, mean over
    segments): S[i, j] = mean over segments of conj(X_i) X_j, scaled. Checked against
    scipy in the tests."""
    hop = n // 2
    segs = np.lib.stride_tricks.sliding_window_view(x, n, axis=-1)[..., ::hop, :]  # (ch, K, n)
    w = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)
    X = np.fft.rfft((segs - segs.mean(axis=-1, keepdims=True)) * w, axis=-1)
    S = np.einsum("ikf,jkf->ijf", np.conj(X), X) / X.shape[1]
    S /= rate * (w * w).sum()
    S[..., 1:n // 2 + (n % 2)] *= 2.0  # one-sided: all but DC (and Nyquist for even n)
    return np.fft.rfftfreq(n, 1.0 / rate), S


def _band(f: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return (f >= lo) & (f < hi)


def anti_phase_band(x: np.ndarray, sample_rate: int) -> dict:
    """Where the low-frequency anti-phase ends, and which channel carries it.

    crossover_hz: in the normalized real cross-spectrum Re S_LR / sqrt(S_LL S_RR), averaged
    over 1/3-octave bands from 20 Hz, the first band (scanning up) that is no longer
    negative; its lower edge, within [``MIN_CROSSOVER_HZ``, ``MAX_CROSSOVER_HZ``].
    channel: a band inverted in one channel with a gradual filter cancels that channel
    around the crossover (low and high parts in opposite sign), so the channel whose level
    at the crossover (+-1/6 octave) dips more below its own level an octave either side is
    the one flipped; within ``DIP_MARGIN_DB`` of each other, the right channel (index 1)."""
    f, Sll, Srr, Slr = _spectra(x, sample_rate)
    c = Slr.real / np.sqrt(Sll * Srr + 1e-30)
    cross = MAX_CROSSOVER_HZ
    lo = 20.0
    while lo < MAX_CROSSOVER_HZ:
        hi = lo * 2 ** (1 / 3)
        b = _band(f, lo, hi)
        if b.any() and np.average(c[b], weights=np.sqrt(Sll[b] * Srr[b]) + 1e-30) >= 0:
            cross = lo
            break
        lo = hi
    cross = float(np.clip(cross, MIN_CROSSOVER_HZ, MAX_CROSSOVER_HZ))
    dips = []
    for S in (Sll, Srr):
        at = S[_band(f, cross * 2 ** (-1 / 6), cross * 2 ** (1 / 6))].mean()
        below = S[_band(f, cross / 2 * 2 ** (-1 / 6), cross / 2 * 2 ** (1 / 6))].mean()
        above = S[_band(f, cross * 2 * 2 ** (-1 / 6), cross * 2 * 2 ** (1 / 6))].mean()
        dips.append(db(at / np.sqrt(below * above + 1e-30)))
    channel = 0 if dips[0] < dips[1] - DIP_MARGIN_DB else 1
    return {"crossover_hz": cross, "channel": channel, "dip_db": dips}


def flip_low_band(ch: np.ndarray, sample_rate: int, crossover_hz: float) -> np.ndarray:
    """One channel with its content below crossover_hz inverted: zero-phase, in the
    frequency domain, gain -1 below crossover / 2^(1/6), +1 above crossover x 2^(1/6), a
    raised-cosine (cos(pi t)) transition between; the signal is zero-padded by 1 s each
    side (the transition's impulse response is a few tens of ms)."""
    T = len(ch)
    pad = int(sample_rate)
    n = T + 2 * pad
    nfft = 1 << int(np.ceil(np.log2(n)))
    X = np.fft.rfft(np.r_[np.zeros(pad), ch, np.zeros(nfft - T - pad)])
    f = np.fft.rfftfreq(nfft, 1 / sample_rate)
    lo, hi = crossover_hz * 2 ** (-1 / 6), crossover_hz * 2 ** (1 / 6)
    t = np.clip(np.log(np.maximum(f, 1e-9) / lo) / np.log(hi / lo), 0.0, 1.0)
    g = -np.cos(np.pi * t)
    return np.fft.irfft(X * g, nfft)[pad:pad + T]


def fix_polarity(x: np.ndarray, sample_rate: int, apply: bool = True,
                 mono_bass_hz: float | None = None) -> tuple[np.ndarray, Finding]:
    if x.shape[0] != 2:
        return x, Finding("polarity", False, False, "mono: no polarity check",
                          {}, {}, "none")
    m = measure(x, sample_rate)
    anti = m["low_correlation"] < -ANTI_PHASE and m["low_share_db"] >= MIN_LOW_SHARE_DB
    kind = None
    if anti:
        kind = "inverted" if m["high_correlation"] < 0 else "low_anti_phase"
    found = kind is not None
    do = apply and found
    out = x
    actions = []
    band = None
    if kind == "low_anti_phase":
        band = anti_phase_band(x, sample_rate)
        m.update(anti_phase_crossover_hz=band["crossover_hz"], anti_phase_channel=band["channel"],
                 crossover_dip_db=band["dip_db"])
    if do and kind == "inverted":
        out = np.stack([x[0], -x[1]])
        actions.append("inverted the right channel")
    elif do:
        c = band["channel"]
        out = x.copy()
        out[c] = flip_low_band(x[c].astype(np.float64), sample_rate, band["crossover_hz"]).astype(x.dtype)
        actions.append(f"{'left' if c == 0 else 'right'} channel below {band['crossover_hz']:.0f} Hz inverted")
    if mono_bass_hz:
        d = lowpass((out[0] - out[1]).astype(np.float64) / 2, sample_rate, float(mono_bass_hz))
        out = np.stack([out[0] - d, out[1] + d]).astype(x.dtype)
        actions.append(f"mono below {float(mono_bass_hz):g} Hz")
    after = measure(out, sample_rate) if (do or mono_bass_hz) else m
    change = {"correlation_after": after["correlation"], "low_correlation_after": after["low_correlation"]}
    if kind == "inverted":
        s = f"one channel inverted (correlation {m['correlation']:+.2f}, below {m['low_band_hz'][1]:g} Hz {m['low_correlation']:+.2f})"
    elif kind == "low_anti_phase":
        s = (f"low-frequency anti-phase (correlation below {m['low_band_hz'][1]:g} Hz {m['low_correlation']:+.2f}, "
             f"up to about {band['crossover_hz']:.0f} Hz)")
    else:
        s = f"polarity fine (correlation {m['correlation']:+.2f}, below {m['low_band_hz'][1]:g} Hz {m['low_correlation']:+.2f})"
    if do or mono_bass_hz:
        s += f"; {', '.join(actions)} (now {after['correlation']:+.2f}, low {after['low_correlation']:+.2f})"
    elif found:
        s += "; not applied"
    measured = dict(m, anti_phase_threshold=-ANTI_PHASE, kind=kind)
    return out, Finding("polarity", found, bool(do or mono_bass_hz), s, measured, change,
                        "; ".join(actions) or "none")
