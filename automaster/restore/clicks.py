"""Clicks and pops: short outliers against a local AR prediction, repaired by LSAR
interpolation.

Detection, vectorized over the whole signal, per channel:

- the signal is cut into blocks of ``BLOCK`` samples; each block gets an AR model of order
  ``ORDER`` (autocorrelation method, Hann window, Levinson-Durbin, batched);
- the forward prediction error e_f[n] = sum_j a_j x[n-j] and the backward one
  e_b[n] = sum_j a_j x[n+j] are computed with the block's model. A click's onset is an
  outlier of e_f, its end one of e_b; max(|e_f|, |e_b|) is the statistic;
- the robust local level is the median |e_f| of sub-blocks of ``SUB`` samples / 0.6745,
  the largest of each sub-block and its two neighbours (so a drum attack, whose error is
  loud for many samples, raises its own threshold);
- runs of samples whose min(|e_f|, |e_b|) exceeds ``EXTENT_THRESHOLD`` x that level
  (an outlier seen from both sides: the click itself, not the p samples after it that
  the forward error smears it over, nor the p before it of the backward error)
  (gaps of up to ``EXTENT_GAP`` samples bridged) are events when their peak exceeds
  ``THRESHOLD`` x the level (hysteresis: the high threshold decides, the low one gives
  the extent); an event longer than ``MAX_CLICK_MS`` is not a click (a transient) and
  is left alone.

Repair (only at the events): the event, widened by ``MARGIN`` samples before it and
``MARGIN`` + half its length after it (a click's decaying tail hides under the music's
own prediction error), is treated as missing and re-estimated by least-squares AR
interpolation (LSAR, Godsill & Rayner) with an order-``REPAIR_ORDER`` model fitted on
``CONTEXT`` samples either side of it.

Found (documented threshold): at least ``MIN_EVENTS`` events, or ``MIN_RATE_PER_MIN``
per minute of audio, whichever is more (a lone outlier in clean music is more likely a
transient than damage).
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ._common import Finding, ar_fit, autocorr, levinson, lsar_interpolate

ORDER = 24
BLOCK = 2048
SUB = 256
THRESHOLD = 20.0
EXTENT_THRESHOLD = 4.0
EXTENT_GAP = 6
MAX_CLICK_MS = 2.5
MARGIN = 3
REPAIR_ORDER = 40
CONTEXT = 768
MIN_EVENTS = 5
MIN_RATE_PER_MIN = 10.0


def _residuals(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Forward and backward AR prediction errors of one channel (blockwise models)."""
    p, B = ORDER, BLOCK
    T = len(x)
    nb = -(-T // B)
    xp = np.zeros(nb * B + 2 * p, dtype=np.float32)
    xp[p:p + T] = x
    blocks = xp[p:p + nb * B].reshape(nb, B).astype(np.float64)
    blocks = blocks - blocks.mean(axis=1, keepdims=True)
    a, _ = levinson(autocorr(blocks, p), p)
    a32 = a.astype(np.float32)
    fw = sliding_window_view(xp[:nb * B + p], p + 1).reshape(nb, B, p + 1)  # x[n-p..n]
    ef = np.einsum("nbk,nk->nb", fw, a32[:, ::-1]).reshape(-1)[:T]
    bw = sliding_window_view(xp[p:], p + 1)[:nb * B].reshape(nb, B, p + 1)  # x[n..n+p]
    eb = np.einsum("nbk,nk->nb", bw, a32).reshape(-1)[:T]
    return ef, eb


def _local_level(e: np.ndarray) -> np.ndarray:
    T = len(e)
    ns = -(-T // SUB)
    pad = np.zeros(ns * SUB, dtype=e.dtype)
    pad[:T] = np.abs(e)
    med = np.median(pad.reshape(ns, SUB), axis=1) / 0.6745
    m = med.copy()
    m[1:] = np.maximum(m[1:], med[:-1])
    m[:-1] = np.maximum(m[:-1], med[1:])
    return np.maximum(np.repeat(m, SUB)[:T], 1e-7)


def detect_channel(x: np.ndarray, sample_rate: int) -> list[tuple[int, int]]:
    """Click events (start, stop) of one channel, stop exclusive."""
    ef, eb = _residuals(x)
    level = _local_level(ef)
    aef, aeb = np.abs(ef), np.abs(eb)
    stat = np.maximum(aef, aeb) / level
    both = np.minimum(aef, aeb) / level
    idx = np.flatnonzero(both > EXTENT_THRESHOLD)
    if idx.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(idx) > EXTENT_GAP)
    first = np.r_[0, breaks + 1]
    starts = idx[first]
    stops = np.r_[idx[breaks], idx[-1]] + 1
    peak = np.maximum.reduceat(stat[idx], first)
    hit = peak > THRESHOLD
    starts, stops = starts[hit], stops[hit]
    if starts.size == 0:
        return []
    longest = int(MAX_CLICK_MS * 1e-3 * sample_rate)
    keep = (stops - starts) <= longest
    edge = ORDER + MARGIN + 1
    keep &= (starts >= edge) & (stops <= len(x) - edge)
    return list(zip(starts[keep].tolist(), stops[keep].tolist()))


def repair_channel(x: np.ndarray, events: list[tuple[int, int]]) -> np.ndarray:
    """LSAR-interpolate each event (widened by MARGIN) in a copy of one channel."""
    y = np.array(x, dtype=np.float64)
    p = REPAIR_ORDER
    T = len(y)
    for s, e in events:
        s, e = max(s - MARGIN, p), min(e + MARGIN + (e - s) // 2, T - p)
        lo, hi = max(0, s - CONTEXT), min(T, e + CONTEXT)
        ctx = np.r_[y[lo:s], y[e:hi]]
        if len(ctx) < 4 * p:
            continue
        a = ar_fit(ctx - ctx.mean(), p)
        w0, w1 = max(0, s - 3 * p), min(T, e + 3 * p)
        seg = y[w0:w1]
        unknown = np.zeros(len(seg), dtype=bool)
        unknown[s - w0:e - w0] = True
        y[s:e] = lsar_interpolate(seg, unknown, a)
    return y.astype(x.dtype)


def remove_clicks(x: np.ndarray, sample_rate: int, apply: bool = True) -> tuple[np.ndarray, Finding]:
    events = [detect_channel(ch.astype(np.float32), sample_rate) for ch in x]
    count = sum(len(ev) for ev in events)
    minutes = x.shape[-1] / sample_rate / 60.0
    needed = max(MIN_EVENTS, int(np.ceil(MIN_RATE_PER_MIN * minutes)))
    found = count >= needed
    do = apply and found
    out = x
    change = {}
    if do:
        out = np.stack([repair_channel(ch, ev) if ev else ch for ch, ev in zip(x, events)])
        diff = out - x
        change = {"samples_repaired": int(np.count_nonzero(diff)),
                  "largest_correction": float(np.abs(diff).max())}
    lengths = [e - s for ev in events for s, e in ev]
    measured = {"events": count, "events_per_channel": [len(e) for e in events],
                "per_minute": count / max(minutes, 1e-9),
                "longest_ms": 1e3 * max(lengths, default=0) / sample_rate,
                "threshold": THRESHOLD, "found_at_events": needed}
    if found:
        s = f"{count} clicks ({count / max(minutes, 1e-9):.1f}/min)"
        s += "; repaired by AR interpolation" if do else "; not applied"
        action = f"LSAR interpolation of {count} events" if do else "none"
    else:
        s = "no clicks" if count == 0 else f"no clicks ({count} isolated outlier(s), below the {needed}-event threshold; left alone)"
        action = "none"
    f = Finding("clicks", found, do, s, measured, change, action)
    f.events = events  # for tests and tools; not serialized
    return out, f
