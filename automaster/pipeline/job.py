"""What one master is asked to do (:class:`Job`), what it returns (:class:`MasterResult`),
and the small plumbing every stage shares: progress, one-time notes, blocks, timings,
and the per-call thread count."""

from __future__ import annotations

import math
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np

from automaster.io import Source

BLOCK_FRAMES = 2_880_000  # 60 s at 48 kHz: ~0.5 GB of chain temporaries per block
LEAD_SECONDS = 2.0
MEMORY_BYTES = 192 << 20
# restoration holds the whole input in memory, and its stages peak at about 11x the float32
# input (measured: 666 MB for 3 min of stereo 44.1 kHz); 256 MB of input (12.7 min of
# stereo 44.1 kHz, 11.6 min at 48 kHz) keeps that under about 3 GB
RESTORE_MAX_BYTES = 256 << 20

_noted: set[str] = set()


def note_once(key: str, message: str) -> None:
    """Print ``message`` as an automaster note on stderr, once per process per ``key``."""
    if key not in _noted:
        _noted.add(key)
        print(f"automaster: note: {message}", file=sys.stderr, flush=True)


@dataclass
class MasterResult:
    """Outcome of one master: ``audio`` (channels, samples) float32 (None when streamed to a
    file), ``settings`` {chain parameter: physical value}, ``report`` (JSON-ready dict)."""

    audio: np.ndarray | None
    settings: dict[str, float]
    report: dict[str, Any]


@dataclass
class Job:
    """Everything the pipeline needs besides the audio."""

    target_lufs: float | None = -14.0  # None: the reference's loudness (or -14 without one)
    ceiling_dbtp: float | None = -1.0  # None: no limiter
    intensity: float = 1.0
    settings: dict[str, float] | None = None  # --params-in (physical, possibly partial)
    settings_path: str | None = None
    reference: Source | None = None
    reference_name: str = "reference"
    model: Any = None  # MasteringModel, checkpoint name/path, or None (default / preset)
    device: Any = "auto"
    detail: bool = False  # long-term spectra and gain-reduction traces for reports
    name: str = "input"
    block_frames: int = BLOCK_FRAMES
    lead_seconds: float = LEAD_SECONDS
    memory_bytes: int = MEMORY_BYTES
    tmp_dir: str | None = None
    notify: Callable[[str], None] | None = None  # one-line notes for the user
    threads: int | None = 1  # torch intra-op threads while mastering (None: leave as is)
    warnings: list[str] = field(default_factory=list)
    # restoration before the analysis (automaster.restore): "auto", "off" or a comma list
    # of fixes; denoise 0..1 (None: hiss is only reported); mono_bass_hz (None: off)
    restore: str = "auto"
    denoise: float | None = None
    mono_bass_hz: float | None = None
    restore_max_bytes: int = RESTORE_MAX_BYTES
    restoration: dict[str, Any] | None = None  # filled by the pipeline (report["restoration"])
    # renders of one source with one setting that differ only in target or ceiling (the
    # codec loop's tries): a dict the caller owns; the first render leaves its analysis and
    # pre-limiter render (store, meter, traces, limiter hold) there and the later ones start
    # from them. The caller closes cache["store"] when done (close_prelimiter).
    prelimiter: dict[str, Any] | None = None


class Progress:
    """No-op progress sink; the CLI passes a tqdm-backed one."""

    def stage(self, name: str, frames: int) -> None:  # a pass over `frames` samples begins
        pass

    def advance(self, frames: int) -> None:
        pass


class Timings(dict):
    """Seconds per stage: ``lap(name)`` adds the time since the previous lap to ``name``."""

    def __init__(self) -> None:
        super().__init__()
        self._clock = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self[name] = round(self.get(name, 0.0) + now - self._clock, 3)
        self._clock = now


@contextmanager
def compute_threads(threads: int | None) -> Iterator[None]:
    """Run the body with ``threads`` torch intra-op and numba threads; both counts are
    restored afterwards, whatever happens (None: leave them as they are).

    One thread is the default: the chain's tensors are small, and a second OpenMP or numba
    worker on a busy 2-core machine was measured to make the render up to 10x slower
    (reference-mode steps: 0.06 s with one numba thread, 0.1-2 s with two). The meters'
    worker thread uses the second core instead.
    """
    if not threads:
        yield
        return
    import numba
    import torch

    saved, saved_numba = torch.get_num_threads(), numba.get_num_threads()
    torch.set_num_threads(int(threads))
    numba.set_num_threads(min(int(threads), numba.config.NUMBA_NUM_THREADS))
    try:
        yield
    finally:
        torch.set_num_threads(saved)
        numba.set_num_threads(saved_numba)


def blocks(frames: int, block: int) -> Iterator[tuple[int, int]]:
    """(start, stop) of consecutive blocks of ``block`` frames covering [0, frames)."""
    for s in range(0, frames, block):
        yield s, min(s + block, frames)


def block_frames(job: Job, frames: int) -> int:
    """Block length: job.block_frames, or the whole signal when it is barely longer."""
    block = max(1, int(job.block_frames))
    return frames if frames <= 1.25 * block else block


def fmt(v: float) -> str:
    """A level for a message: one decimal, or -inf."""
    return f"{v:.1f}" if math.isfinite(v) else "-inf"


def close_prelimiter(cache: dict[str, Any] | None) -> None:
    """Release what renders left in a :attr:`Job.prelimiter` cache (its store's memory or
    temporary file)."""
    if cache:
        store = cache.get("store")
        if store is not None:
            store.close()
        cache.clear()
