"""Broadband noise (hiss): measured in the quiet passages; reduced by spectral gating only
when asked (``--denoise AMOUNT``).

Measurement: the mid signal is cut into ``FRAME`` sample frames; the quietest
``QUIET_FRACTION`` of the non-silent frames are the quiet passages. Their power spectra
(Hann, per channel) give the noise profile: per bin, the median over those frames divided
by ln 2 (the median of an exponentially distributed power is ln 2 times its mean), and
capped by a smooth floor model fitted where hiss dominates (:func:`_floor_model`). The
hiss level is the profile's power in ``BAND_HZ``, in dBFS; it is broadband when the
profile's spectral flatness there reaches ``MIN_FLATNESS``. Found (documented threshold):
level above ``FOUND_DBFS``, broadband, and the quiet passages at least ``QUIET_GAP_DB``
below the loud ones (otherwise what was measured is the music).

Reduction (own STFT gate): Hann frames of ``FRAME`` samples, hop FRAME/4, weighted
overlap-add. Per bin, the power smoothed over 5 bins (one frame) is compared with the
profile; its SNR in dB maps linearly from ``GATE_LOW_DB`` (full reduction) to
``GATE_HIGH_DB`` (no change), full reduction being AMOUNT x ``MAX_REDUCTION_DB``; the gain
is then spread by a 3 x 3 maximum (the open bins of a music line keep their neighbours
open) and smoothed over 3 bins. Bins well above the noise floor are left exactly as they
were.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import fft as sfft
from scipy.ndimage import uniform_filter

from ._common import Finding, db

FRAME = 2048
QUIET_FRACTION = 0.1
BAND_HZ = (2000.0, 16000.0)
MIN_FLATNESS = 0.3
FOUND_DBFS = -75.0
QUIET_GAP_DB = 15.0
GATE_LOW_DB = 3.0
GATE_HIGH_DB = 12.0
MAX_REDUCTION_DB = 30.0
FIT_ROUNDS = 3
FIT_REJECT_DB = 3.0


def _window() -> np.ndarray:
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(FRAME) / FRAME)).astype(np.float32)


def noise_profile(x: np.ndarray, sample_rate: int) -> dict:
    n = x.shape[-1] // FRAME
    fr = x[:, :n * FRAME].reshape(x.shape[0], n, FRAME)
    frames = fr[0] if x.shape[0] == 1 else (fr.sum(axis=0) / x.shape[0])  # the mid signal
    # per-frame mean square: float32 products summed per frame (2048 terms), then float64
    rms = np.sqrt(np.einsum("ij,ij->i", frames, frames).astype(np.float64) / FRAME)
    live = np.flatnonzero(rms > 1e-6)
    if live.size < 10:
        return {"profile": None}
    order = live[np.argsort(rms[live])]
    quiet = order[:max(3, int(QUIET_FRACTION * len(order)))]
    loud = order[-max(3, int(QUIET_FRACTION * len(order))):]
    w = _window()
    scale = 1.0 / (np.sum(w ** 2) * sample_rate / 2)  # one-sided PSD per Hz
    prof = []
    for ch in x:
        fr = ch[:n * FRAME].reshape(n, FRAME)[quiet] * w
        S = sfft.rfft(fr, axis=-1)
        P = (S.real ** 2 + S.imag ** 2).astype(np.float64)
        prof.append(np.median(P, axis=0) / math.log(2))
    prof = np.array(prof)  # (channels, bins): mean power per frame and bin
    freqs = np.fft.rfftfreq(FRAME, 1 / sample_rate)
    prof = np.minimum(prof, np.stack([_floor_model(p, freqs) for p in prof]))
    band = (freqs >= BAND_HZ[0]) & (freqs <= min(BAND_HZ[1], 0.45 * sample_rate))
    pb = prof.mean(axis=0)[band] + 1e-30
    level = db(pb.sum() * scale * (freqs[1] - freqs[0]))
    flat = float(np.exp(np.mean(np.log(pb))) / np.mean(pb))
    gap = db(np.mean(rms[loud] ** 2) / max(np.mean(rms[quiet] ** 2), 1e-30))
    return {"profile": prof, "level_dbfs": level, "flatness": flat, "quiet_gap_db": gap,
            "quiet_frames": int(len(quiet))}


def _floor_model(prof: np.ndarray, freqs: np.ndarray) -> np.ndarray:
    """A smooth model of the noise floor: a straight line in dB over log frequency fitted
    to the profile in ``BAND_HZ`` (where hiss lives and the quiet passages' music is
    weakest), refitted ``FIT_ROUNDS`` times without the bins more than ``FIT_REJECT_DB``
    above it (the music's lines), and extended to all frequencies (flat below 50 Hz).

    The profile used is the minimum of the measured one and this model: below ~2 kHz the
    quiet passages' own music (bass, voice) would otherwise be taken for noise and gated."""
    band = (freqs >= BAND_HZ[0]) & (freqs <= min(BAND_HZ[1], freqs[-1] * 0.9))
    lf = np.log2(np.maximum(freqs, 50.0))
    d = 10 * np.log10(prof + 1e-30)
    use = band.copy()
    coef = np.array([0.0, float(np.median(d[band]))]) if band.any() else np.array([0.0, d.max()])
    for _ in range(FIT_ROUNDS):
        if use.sum() < 8:
            break
        coef = np.polyfit(lf[use], d[use], 1)
        use = band & (d <= np.polyval(coef, lf) + FIT_REJECT_DB)
    return 10 ** (np.polyval(coef, lf) / 10)


def _stft(x: np.ndarray) -> tuple[np.ndarray, int]:
    hop = FRAME // 4
    T = x.shape[-1]
    n = -(-(T + FRAME) // hop) + 1
    pad = np.zeros(x.shape[:-1] + ((n - 1) * hop + FRAME,), dtype=np.float32)
    pad[..., FRAME:FRAME + T] = x
    fr = np.lib.stride_tricks.sliding_window_view(pad, FRAME, axis=-1)[..., ::hop, :]
    return sfft.rfft(fr * _window(), axis=-1), pad.shape[-1]


def _istft(S: np.ndarray, length: int, T: int) -> np.ndarray:
    """Weighted overlap-add, vectorized: frames i and i + 4 do not overlap (hop FRAME/4),
    so each of the 4 phases is one reshape and one add."""
    hop = FRAME // 4
    w = _window()
    fr = sfft.irfft(S, FRAME, axis=-1).astype(np.float32, copy=False) * w
    out = np.zeros(S.shape[:-2] + (length + FRAME,), dtype=np.float32)
    norm = np.zeros(length + FRAME, dtype=np.float32)
    for r in range(4):
        part = fr[..., r::4, :]
        span = part.shape[-2] * FRAME
        out[..., r * hop:r * hop + span] += part.reshape(part.shape[:-2] + (span,))
        norm[r * hop:r * hop + span] += np.tile(w * w, part.shape[-2])
    return out[..., FRAME:FRAME + T] / np.maximum(norm[FRAME:FRAME + T], 1e-8)


def _smooth(a: np.ndarray, nt: int, nf: int) -> np.ndarray:
    return uniform_filter(a, size=(1,) * (a.ndim - 2) + (nt, nf), mode="nearest")


def _max3x3(a: np.ndarray) -> np.ndarray:
    """Maximum over each cell's 3 x 3 (frames x bins) neighbourhood, edges replicated
    (what ``scipy.ndimage.maximum_filter(size=3)`` gives on the last two axes, 20 x faster)."""
    m = a.copy()
    np.maximum(m[..., 1:], a[..., :-1], out=m[..., 1:])
    np.maximum(m[..., :-1], a[..., 1:], out=m[..., :-1])
    r = m.copy()
    np.maximum(r[..., 1:, :], m[..., :-1, :], out=r[..., 1:, :])
    np.maximum(r[..., :-1, :], m[..., 1:, :], out=r[..., :-1, :])
    return r


def gate(x: np.ndarray, profile: np.ndarray, amount: float) -> np.ndarray:
    S, length = _stft(x.astype(np.float32))
    P = (S.real ** 2 + S.imag ** 2).astype(np.float32)
    snr_db = 10 * np.log10(_smooth(P, 1, 5) / (profile[:, None, :].astype(np.float32) + 1e-20) + 1e-20)
    t = np.clip((snr_db - GATE_LOW_DB) / (GATE_HIGH_DB - GATE_LOW_DB), 0.0, 1.0)
    gain_db = -amount * MAX_REDUCTION_DB * (1.0 - t)
    # spread the open bins (a music line's window leakage, its onset) before smoothing:
    # averaging the gain in dB pulled a lone music bin down with its gated neighbours
    lin = (10 ** (gain_db / 20)).astype(np.float32)
    gain = _smooth(_max3x3(lin), 1, 3)
    return _istft(S * gain, length, x.shape[-1])


def denoise(x: np.ndarray, sample_rate: int, amount: float | None) -> tuple[np.ndarray, Finding]:
    info = noise_profile(x, sample_rate)
    if info["profile"] is None:
        return x, Finding("noise", False, False, "no hiss (too little non-silent audio to measure)",
                          {}, {}, "none")
    found = (info["level_dbfs"] > FOUND_DBFS and info["flatness"] >= MIN_FLATNESS
             and info["quiet_gap_db"] >= QUIET_GAP_DB)
    do = amount is not None and amount > 0
    out = x
    change = {}
    measured = {"hiss_dbfs": info["level_dbfs"], "band_hz": list(BAND_HZ),
                "flatness": info["flatness"], "quiet_gap_db": info["quiet_gap_db"],
                "found_above_dbfs": FOUND_DBFS}
    if do:
        out = gate(x, info["profile"], float(amount)).astype(x.dtype)
        after = noise_profile(out, sample_rate)
        change = {"amount": float(amount), "hiss_after_dbfs": after.get("level_dbfs"),
                  "max_reduction_db": float(amount) * MAX_REDUCTION_DB}
    s = (f"hiss at {info['level_dbfs']:.1f} dBFS ({BAND_HZ[0] / 1000:g}-{BAND_HZ[1] / 1000:g} kHz, "
         f"quiet passages)")
    s = (s if found else "no hiss (" + s[:-1].replace("hiss at ", "") + ")")
    suggestion = None
    if do:
        s += f"; spectral gate, amount {amount:g}: now {change['hiss_after_dbfs']:.1f} dBFS"
    elif found:
        suggestion = "--denoise 0.5"
        s += "; not reduced (hiss can be part of the music): try --denoise 0.5"
    return out, Finding("noise", found, do, s, measured, change,
                        f"STFT spectral gate, amount {amount:g}" if do else "none", suggestion)
