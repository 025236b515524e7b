"""Render: the chain without limiter and loudness stage, in blocks, into a float store.

Blocks are about 60 s, each with a lead-in (and, for the zero-phase crossover, a lead-out)
that warms the filter and compressor state up and is thrown away. The result goes to a
:class:`FloatStore` (memory, or an unnamed temporary file for long inputs) while its
loudness is measured on a background worker.
"""

from __future__ import annotations

import tempfile

import numpy as np

from automaster.errors import UserError
from automaster.io import Source
from automaster.metering import BackgroundMeter, Meter
from automaster.pipeline.job import Job, Progress, block_frames, blocks
from automaster.pipeline.traces import BandTraces


class FloatStore:
    """(channels, frames) float32 buffer in memory, or in an unnamed temporary file when
    larger than ``memory_bytes`` (deleted automatically, even on a crash). Reads and writes
    may come from several threads (the codec checks encode one store side by side)."""

    def __init__(self, channels: int, frames: int, memory_bytes: int,
                 tmp_dir: str | None = None) -> None:
        import threading

        self.channels, self.frames = channels, frames
        self._mem: np.ndarray | None = None
        self._file = None
        self._lock = threading.Lock()  # a file's seek + read/write is one step
        if channels * frames * 4 <= memory_bytes:
            self._mem = np.zeros((channels, frames), dtype=np.float32)
        else:
            self._file = tempfile.TemporaryFile(dir=tmp_dir, prefix=".automaster-")

    @property
    def in_memory(self) -> bool:
        return self._mem is not None

    def write(self, start: int, block: np.ndarray) -> None:
        if self._mem is not None:
            self._mem[:, start:start + block.shape[1]] = block
            return
        data = np.ascontiguousarray(block.T, dtype=np.float32).tobytes()
        with self._lock:
            self._file.seek(start * self.channels * 4)
            self._file.write(data)

    def read(self, start: int, stop: int) -> np.ndarray:
        lo, hi = max(start, 0), min(stop, self.frames)
        if self._mem is not None and lo == start and hi == stop:
            return self._mem[:, start:stop]
        out = np.zeros((self.channels, max(0, stop - start)), dtype=np.float32)
        if hi > lo:
            if self._mem is not None:
                out[:, lo - start:hi - start] = self._mem[:, lo:hi]
            else:
                with self._lock:
                    self._file.seek(lo * self.channels * 4)
                    raw = self._file.read((hi - lo) * self.channels * 4)
                out[:, lo - start:hi - start] = np.frombuffer(raw, np.float32).reshape(
                    hi - lo, self.channels).T
        return out

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        self._mem = None


def render_pre_limiter(chain, p, source: Source, store: FloatStore, job: Job, device,
                       progress: Progress, comp_trace: BandTraces | None,
                       reference_lufs: float) -> Meter:
    """Chain without limiter/loudness into ``store``; returns the meter of the result.
    ``reference_lufs`` is the whole input's loudness: every block's thresholds use it."""
    import torch

    sr = source.sample_rate
    block = block_frames(job, source.frames)
    # lead-in: long enough for the compressor's release (5 time constants) to forget the
    # block's start; the same length as lead-out for the zero-phase crossover
    release_s = float(chain.denormalize(p.detach().cpu())[0].get("multiband.release_ms", 0.0)) / 1000.0
    lead = int(max(job.lead_seconds, 5.0 * release_s) * sr)
    meter = BackgroundMeter(Meter(sr, source.channels, true_peak=False))
    progress.stage("render", source.frames)
    with torch.no_grad():
        for s, e in blocks(source.frames, block):
            a = max(0, s - lead)
            # lead-out too: the crossover runs zero-phase (forward and backward in time)
            z = min(source.frames, e + lead)
            x = torch.from_numpy(np.ascontiguousarray(source.read(a, z)))[None].to(device)
            y, trace = chain.render(x, p, ceiling_dbtp=None, measure_output=False,
                                    reference_lufs=reference_lufs)
            out = y[0, :, s - a:e - a].float().cpu().numpy()
            if not np.isfinite(out).all():
                raise UserError("the chain produced non-finite samples with this setting", job.name)
            store.write(s, out)
            meter.process(out)
            if comp_trace is not None:
                comp_trace.add(s, trace["band_gain_db"][0, :, s - a:e - a].float().cpu().numpy())
            progress.advance(e - s)
    return meter.join()
