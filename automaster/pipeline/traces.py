"""Gain-reduction traces for reports, reduced to a fixed number of points while the
blocks stream past."""

from __future__ import annotations

import numpy as np

TRACE_POINTS = 2000


class TraceReducer:
    """Keeps the minimum of a gain trace (dB) over ``points`` equal buckets of a signal."""

    def __init__(self, frames: int, sample_rate: int, points: int = TRACE_POINTS) -> None:
        self.bucket = max(1, -(-frames // points))
        self.values = np.zeros(-(-frames // self.bucket))
        self.sample_rate = sample_rate

    def add(self, start: int, trace: np.ndarray) -> None:
        """Trace values (n,) for samples [start, start + n)."""
        if trace.size == 0:
            return
        idx = (start + np.arange(trace.size)) // self.bucket
        np.minimum.at(self.values, idx, trace.astype(np.float64))

    def as_dict(self) -> dict[str, list[float]]:
        t = (np.arange(self.values.size) + 0.5) * self.bucket / self.sample_rate
        return {"time_s": np.round(t, 3).tolist(), "gain_db": np.round(self.values, 3).tolist()}


class BandTraces:
    """Gain-reduction traces of the multiband compressor: a :class:`TraceReducer` and the
    mean gain (dB over all samples) per band."""

    BANDS = ("low", "mid", "high")

    def __init__(self, frames: int, sample_rate: int) -> None:
        self.traces = {b: TraceReducer(frames, sample_rate) for b in self.BANDS}
        self.sums = dict.fromkeys(self.BANDS, 0.0)
        self.count = 0

    def add(self, start: int, gains: np.ndarray) -> None:
        """Gains in dB (3, n) for samples [start, start + n)."""
        for band, g in zip(self.BANDS, gains):
            self.traces[band].add(start, g)
            self.sums[band] += float(np.sum(g, dtype=np.float64))
        self.count += gains.shape[-1]

    def as_dict(self) -> dict[str, dict]:
        n = max(1, self.count)
        return {b: {**self.traces[b].as_dict(), "mean_gain_db": round(self.sums[b] / n, 3)} for b in self.BANDS}
