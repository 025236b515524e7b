"""The mastering pipeline: analyse, choose a setting, render, normalize, limit, write.

1. Analysis pass over the whole input (streaming meter): loudness, true peak, LRA, crest.
   Silence or near-silence (below -70 LUFS integrated or -80 dBFS peak) stops here: it is
   passed through unchanged, with a warning, instead of being pushed up to the target.
2. Setting: ``--params-in`` values, or the network's prediction (from the same bounded set
   of analysis windows its feature extractor would pick from the whole track), or the
   built-in preset when no trained model exists; with a reference, refined by
   :mod:`automaster.reference`. ``intensity`` blends the identity setting towards it in
   normalized parameter space.
3. Render in blocks (about 60 s, each with 2 s of lead-in that warms the filter and
   compressor state up and is thrown away) through ``MasteringChain`` without limiter or loudness
   stage. The result goes to a float store (memory, or an unnamed temporary file for long
   inputs) while its loudness is measured.
4. Loudness and ceiling: one global gain, then the chain's true-peak limiter, again in
   blocks with lead-in. The loudness of the limited output is measured and the gain is
   re-aimed (see :class:`GainSearch`) until it is within 0.15 LU of the target. The result
   is then checked with the streaming 4x true-peak meter over every output sample (the
   same interpolator as the limiter's, dsp/_bs1770.py, which only estimates peaks near
   the ceiling); where it reads above the ceiling, the limiter's own ceiling is lowered
   and the search resumes, and a tiny global trim is the last resort. The accepted pass
   is written (quantized and dithered by the sink).

Memory stays bounded by the block size whatever the input length (60 min of stereo
44.1 kHz: about 1.1 GB peak RSS, the same as for 3 min). Meters (K-weighting, true peak)
run on a worker thread beside the render, so a second core is used; torch itself runs
single-threaded (see master_source). Inputs longer than the memory budget keep the
pre-limiter render in an unnamed temporary file and write the output while verifying it.
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from automaster.errors import InputError, UserError, one_line
from automaster.io import ArraySource, Source
from automaster.metering import BackgroundMeter, Meter, Measurement

SILENCE_LUFS = -70.0
SILENCE_PEAK_DBFS = -80.0
LOUDNESS_TOLERANCE_LU = 0.15  # |output - target| accepted without another limiter pass
MAX_LIMITER_PASSES = 8
TP_MARGIN_DB = 0.02
BLOCK_FRAMES = 2_880_000  # 60 s at 48 kHz: ~0.5 GB of chain temporaries per block
LEAD_SECONDS = 2.0
LIMITER_MARGIN_DB = 0.07  # the limiter aims this far under the ceiling: its interpolator and
# the independent 4x measurement (resample_poly) differ by up to ~0.06 dB on bright material
# (tests/test_dsp_dynamics.py); the verification pass lowers the aim if that is not enough
TAIL_SECONDS = 0.05
FAST_RELEASE_MS = 40.0  # limiter release used when the predicted one cannot reach the target
MEMORY_BYTES = 192 << 20
HELD_GAIN = np.float32(10.0 ** (-0.05 / 20.0))  # limiter gain below this = "held down"
TRACE_POINTS = 2000

_noted: set[str] = set()


def _stderr_once(key: str, message: str) -> None:
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


class Progress:
    """No-op progress sink; the CLI passes a tqdm-backed one."""

    def stage(self, name: str, frames: int) -> None:  # a pass over `frames` samples begins
        pass

    def advance(self, frames: int) -> None:
        pass


# ---------------------------------------------------------------------------- helpers
def resolve_device(device: Any):
    """"auto" | "cpu" | "cuda[:n]" | torch.device -> torch.device (UserError if unusable)."""
    import torch

    if isinstance(device, torch.device):
        return device
    name = str(device or "auto").lower()
    # CUDA is used only after dsp's ops pass a quick self-check there (dsp._ops.device_problem)
    if name == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        from dsp._ops import device_problem

        problem = device_problem("cuda")
        if problem:
            _stderr_once("device", f"using the CPU: CUDA failed the self-check ({problem})")
            return torch.device("cpu")
        return torch.device("cuda")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError("--device cuda was requested but no CUDA device is available")
        from dsp._ops import device_problem

        try:
            dev = torch.device(name)
        except RuntimeError as exc:
            raise UserError(f"unknown device {device!r}; use auto, cpu or cuda") from exc
        problem = device_problem(dev)
        if problem:
            raise UserError(f"--device {name} cannot be used: {problem}")
        return dev
    if name == "cpu":
        return torch.device("cpu")
    raise UserError(f"unknown device {device!r}; use auto, cpu or cuda")


def default_model_available() -> bool:
    """Whether the registry's "default" checkpoint has its weights file."""
    from pathlib import Path

    from model.checkpoint import REGISTRY_DIR, CheckpointError, registered_models

    try:
        entry = registered_models().get("default")
    except CheckpointError:
        return False
    if not entry:
        return False
    stem = REGISTRY_DIR / entry["file"]
    weights = stem if stem.suffix == ".safetensors" else Path(str(stem) + ".safetensors")
    return weights.exists()


def load_model(spec: Any, device: Any):
    """Model spec -> MasteringModel on ``device``, or None when the default is not shipped.

    ``spec``: a MasteringModel, a registry name / checkpoint path, or None (the registry's
    default if its weights exist). Raises model.checkpoint.CheckpointError for bad files.
    """
    from model.checkpoint import load_checkpoint
    from model.mastering_model import MasteringModel

    dev = resolve_device(device)
    if isinstance(spec, MasteringModel):
        return spec.to(dev).eval()
    if spec is None:
        if not default_model_available():
            return None
        spec = "default"
    return load_checkpoint(spec, dev)


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


class FloatStore:
    """(channels, frames) float32 buffer in memory, or in an unnamed temporary file when
    larger than ``memory_bytes`` (deleted automatically, even on a crash)."""

    def __init__(self, channels: int, frames: int, memory_bytes: int,
                 tmp_dir: str | None = None) -> None:
        self.channels, self.frames = channels, frames
        self._mem: np.ndarray | None = None
        self._file = None
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
        self._file.seek(start * self.channels * 4)
        self._file.write(np.ascontiguousarray(block.T, dtype=np.float32).tobytes())

    def read(self, start: int, stop: int) -> np.ndarray:
        lo, hi = max(start, 0), min(stop, self.frames)
        if self._mem is not None and lo == start and hi == stop:
            return self._mem[:, start:stop]
        out = np.zeros((self.channels, max(0, stop - start)), dtype=np.float32)
        if hi > lo:
            if self._mem is not None:
                out[:, lo - start:hi - start] = self._mem[:, lo:hi]
            else:
                self._file.seek(lo * self.channels * 4)
                raw = self._file.read((hi - lo) * self.channels * 4)
                out[:, lo - start:hi - start] = np.frombuffer(raw, np.float32).reshape(
                    hi - lo, self.channels).T
        return out

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        self._mem = None


def _blocks(frames: int, block: int):
    for s in range(0, frames, block):
        yield s, min(s + block, frames)


def analysis_windows(source: Source, count: int, seconds: float) -> np.ndarray:
    """``count`` windows of ``seconds`` centred at (k + 0.5) / count of the signal, joined:
    (channels, count * L); the whole signal when it is shorter than that."""
    n = source.frames
    length = max(1, int(round(seconds * source.sample_rate)))
    if n <= count * length:
        return np.array(source.read(0, n), dtype=np.float32)
    parts = []
    for i in range(count):
        centre = (i + 0.5) / count * n
        start = int(min(max(round(centre - length / 2), 0), n - length))
        parts.append(source.read(start, start + length))
    return np.concatenate(parts, axis=1)


def excerpt_batch(source: Source, count: int, seconds: float) -> np.ndarray:
    """(count', channels, L) evenly spread excerpts (fewer when the signal is short)."""
    n = source.frames
    length = min(n, max(1, int(round(seconds * source.sample_rate))))
    count = max(1, min(count, n // length))
    out = []
    for i in range(count):
        centre = (i + 0.5) / count * n
        start = int(min(max(round(centre - length / 2), 0), n - length))
        out.append(source.read(start, start + length))
    return np.stack(out)


def measure_source(source: Source, *, true_peak: bool = True, spectrum: bool = False,
                   block: int = 1 << 20, progress: Progress | None = None,
                   name: str = "input", also: BackgroundMeter | None = None) -> Meter:
    """Stream a source through a Meter (and ``also`` a background one). InputError on
    NaN/inf samples."""
    meter = Meter(source.sample_rate, source.channels, true_peak=true_peak, spectrum=spectrum)
    for s, e in _blocks(source.frames, block):
        x = source.read(s, e)
        try:
            meter.process(x)
        except ValueError:
            if also is not None:
                also.join()
            bad = int(np.argmin(np.isfinite(x).all(axis=0)))
            raise InputError(f"contains NaN or infinite samples (first at "
                             f"{(s + bad) / source.sample_rate:.3f} s)", name) from None
        if also is not None:
            also.process(x)
        if progress:
            progress.advance(e - s)
    return meter


# ---------------------------------------------------------------------------- setting
def _limiter_gain(chain, y, release_ms: float, ceiling_dbtp: float):
    """Linear gain (1, n) of the chain's true-peak limiter for y (1, channels, n)."""
    import torch

    from dsp import limiter_gain

    limiter = chain.stages["limiter"]
    rel = torch.tensor([float(release_ms)], dtype=y.dtype, device=y.device)
    return limiter_gain(y, ceiling_dbtp, rel, chain.sample_rate, limiter.lookahead_ms)


def _reference_lufs(before: Measurement) -> float:
    """The input's loudness that the chain's thresholds and drive are relative to."""
    from dsp.level import CEIL_LUFS, FLOOR_LUFS

    v = before.integrated_lufs
    return float(min(max(v, FLOOR_LUFS), CEIL_LUFS)) if math.isfinite(v) else FLOOR_LUFS


def choose_setting(chain, source: Source, before: Measurement, job: Job, device) -> tuple[Any, dict]:
    """Normalized setting (1, n) and a dict describing where it came from."""
    import torch

    from automaster.presets import preset_settings
    from automaster.settings import complete_settings

    info: dict[str, Any] = {}
    identity = chain.identity_params(1, device=device)
    identity_phys = chain.denormalize(identity.cpu())[0]
    if job.settings is not None:
        full, filled = complete_settings(job.settings, chain.ranges, identity_phys,
                                         job.settings_path)
        if filled:
            info["filled_from_identity"] = filled
        p = chain.normalize([full]).to(device)
        info["source"] = "params-in"
    else:
        model = job.model
        if model is None or isinstance(model, (str, os.PathLike)):
            model = load_model(model, device)
            job.model = model if model is not None else job.model
        if model is not None:
            window = getattr(model.features, "window_seconds", 4.0)
            count = getattr(model.features, "n_windows", 8)
            x = analysis_windows(source, count, window)
            xt = torch.from_numpy(np.ascontiguousarray(x))[None].to(device)
            p = model.predict(xt, source.sample_rate, target_lufs=job.target_lufs,
                              ceiling_dbtp=job.ceiling_dbtp).to(device=device, dtype=torch.float32)
            if p.shape != (1, chain.num_params):
                raise UserError(f"the model predicts {tuple(p.shape)} parameters but the chain "
                                f"needs (1, {chain.num_params})")
            p = p.clamp(0.0, 1.0)
            meta = getattr(model, "checkpoint_metadata", None) or {}
            info["source"] = "model"
            info["model"] = meta.get("model_name") or meta.get("weights_file", type(model).__name__)
        elif job.reference is not None:
            p = identity.clone()
            info["source"] = "identity"
        else:
            msg = ("no trained model found (checkpoints/default.safetensors is missing); using "
                   "the built-in 'gentle' preset (automaster/presets.py)")
            (job.notify or (lambda m: _stderr_once("preset", m)))(msg)
            phys = preset_settings(identity_phys, chain.ranges, before.integrated_lufs)
            p = chain.normalize([phys]).to(device)
            info["source"] = "preset:gentle"
        if job.reference is not None:
            p, ref_info = match_to_reference(chain, source, job, p, device, _reference_lufs(before))
            info["reference"] = ref_info
            info["source"] = f"reference (from {info['source']})"
    if job.intensity != 1.0:
        from automaster.intensity import scale_setting

        p = scale_setting(chain, p, job.intensity)
    return p, info


def match_to_reference(chain, source: Source, job: Job, p0, device, reference_lufs: float) -> tuple[Any, dict]:
    """Fit the setting to job.reference (see automaster.reference)."""
    import torch

    from automaster import reference as ref_mod
    from automaster.io import ResampledSource

    rate = source.sample_rate
    opt_src: Source = source
    if rate > ref_mod.MAX_OPT_RATE:
        rate = ref_mod.MAX_OPT_RATE
        opt_src = ResampledSource(source, rate)
    ref_src = job.reference
    if ref_src.sample_rate > ref_mod.MAX_OPT_RATE:
        ref_src = ResampledSource(ref_src, ref_mod.MAX_OPT_RATE)
    many, sec = ref_mod.PROFILE_EXCERPTS, ref_mod.EXCERPT_SECONDS
    ref_x = torch.from_numpy(excerpt_batch(ref_src, many, sec)).to(device)
    # compare like with like: a mono master against the reference's mid signal
    if source.channels == 1 and ref_x.shape[1] == 2:
        ref_x = ref_x.mean(dim=1, keepdim=True)
    exc = torch.from_numpy(excerpt_batch(opt_src, ref_mod.EXCERPTS, sec)).to(device)
    with torch.no_grad():
        ref_profile = ref_mod.profile(ref_x, ref_src.sample_rate)
        in_profile = ref_mod.profile(torch.from_numpy(excerpt_batch(opt_src, many, sec))
                                     .to(device), rate)
        target_profile = ref_mod.retarget(ref_mod.profile(exc, rate), ref_profile, in_profile)
    chain_opt = chain
    if rate != source.sample_rate:
        from dsp import MasteringChain

        chain_opt = MasteringChain(sample_rate=rate).to(device)
    target = job.target_lufs
    p, info = ref_mod.match(chain_opt, exc, rate, target_profile, p0, target_lufs=target,
                            ceiling_dbtp=job.ceiling_dbtp, reference_lufs=reference_lufs)
    info["reference_profile"] = ref_profile.as_dict()
    info["input_profile"] = in_profile.as_dict()
    return p.to(device), info


# ---------------------------------------------------------------------------- render
def _render_pre_limiter(chain, p, source: Source, store: FloatStore, job: Job, device,
                        progress: Progress, comp_trace: BandTraces | None, reference_lufs: float) -> Meter:
    """Chain without limiter/loudness into ``store``; returns the meter of the result.
    ``reference_lufs`` is the whole input's loudness: every block's thresholds use it."""
    import torch

    sr = source.sample_rate
    block = _block_frames(job, source.frames)
    # lead-in: long enough for the compressor's release (5 time constants) to forget the
    # block's start; the same length as lead-out for the zero-phase crossover
    release_s = float(chain.denormalize(p.detach().cpu())[0].get("multiband.release_ms", 0.0)) / 1000.0
    lead = int(max(job.lead_seconds, 5.0 * release_s) * sr)
    meter = BackgroundMeter(Meter(sr, source.channels, true_peak=False))
    progress.stage("render", source.frames)
    with torch.no_grad():
        for s, e in _blocks(source.frames, block):
            a = max(0, s - lead)
            # lead-out too: the crossover runs zero-phase (forward and backward in time)
            z = min(source.frames, e + lead)
            x = torch.from_numpy(np.ascontiguousarray(source.read(a, z)))[None].to(device)
            y, trace = chain.render(x, p, ceiling_dbtp=None, measure_output=False, reference_lufs=reference_lufs)
            out = y[0, :, s - a:e - a].float().cpu().numpy()
            if not np.isfinite(out).all():
                raise UserError("the chain produced non-finite samples with this setting", job.name)
            store.write(s, out)
            meter.process(out)
            if comp_trace is not None:
                comp_trace.add(s, trace["band_gain_db"][0, :, s - a:e - a].float().cpu().numpy())
            progress.advance(e - s)
    return meter.join()


@dataclass
class _Pass:
    """One limiter pass: its gain, limiter ceiling, measured loudness and what to keep."""

    gain_db: float
    ceiling: float | None
    level: float
    slope: float  # fraction of output energy the limiter left alone (d loudness / d gain)
    meter: Meter
    cache: list | None
    trace: TraceReducer | None
    tp_db: float = math.nan
    emitted: bool = False  # its blocks already went to the output
    measurement: Measurement | None = None
    spectrum: tuple = (np.zeros(0), np.zeros(0))


def _debug(message: str) -> None:
    if os.environ.get("AUTOMASTER_DEBUG_PASSES"):
        print(f"automaster: debug: {message}", file=sys.stderr)


def _limiter_pass(chain, store: FloatStore, gain_db: float, release: float,
                  ceiling: float | None, job: Job, device, sr: int, progress: Progress,
                  keep: bool, tp: bool, emit: Callable[[np.ndarray], None] | None = None) -> _Pass:
    """Gain + limiter over the whole store, measuring loudness (and the true peak if ``tp``);
    blocks also go to ``emit`` when given (speculative writing of a likely final pass).

    With a memory cache the true peak is always measured: on the second core, in parallel,
    it is nearly free, and an accepted pass then needs no separate check."""
    tp = tp or keep
    bg = BackgroundMeter(Meter(sr, store.channels, true_peak=tp, spectrum=tp and job.detail))
    trace = TraceReducer(store.frames, sr) if job.detail else None
    cache: list | None = [] if keep else None
    limited_energy = 0.0
    progress.stage("limit", store.frames)
    for s, out, g in _limited(chain, store, gain_db, release, ceiling, job, device, sr):
        bg.process(out)
        # only the samples the limiter leaves alone get louder with more gain
        held = out[:, g <= HELD_GAIN]
        limited_energy += float(np.einsum("ij,ij->", held, held, dtype=np.float64))
        if cache is not None:
            cache.append(out)
        if emit is not None:
            emit(out)
        if trace is not None:
            trace.add(s, 20.0 * np.log10(np.maximum(g, 1e-6)))
        progress.advance(out.shape[1])
    meter = bg.join()
    level = meter.integrated_lufs()
    _debug(f"pass gain {gain_db:.3f} ceiling {ceiling} -> {level:.3f} LUFS")
    total = meter.energy
    slope = 1.0 - limited_energy / total if total > 0 else 1.0
    p = _Pass(gain_db, ceiling, level, slope, meter, cache, trace)
    if tp:
        p.measurement = meter.result()
        p.tp_db = p.measurement.true_peak_dbtp
        p.spectrum = meter.spectrum()
    return p


def _verify(p: _Pass, chain, store: FloatStore, release: float, job: Job, device, sr: int,
            progress: Progress, emit: Callable[[np.ndarray], None] | None = None) -> _Pass:
    """Add the true peak (and report spectrum) to a loudness pass. Without a cached output
    the pass is re-run, writing to ``emit`` on the way (the caller rewinds if rejected)."""
    if p.measurement is not None:
        return p  # measured during the pass
    q = _limiter_pass(chain, store, p.gain_db, release, p.ceiling, job, device, sr,
                      progress, False, tp=True, emit=emit)
    q.emitted = emit is not None
    return q


def _block_frames(job: Job, frames: int) -> int:
    """Block length: job.block_frames, or the whole signal when it is barely longer."""
    block = max(1, int(job.block_frames))
    return frames if frames <= 1.25 * block else block


def _limited(chain, store: FloatStore, gain_db: float, release_ms: float,
             ceiling: float | None, job: Job, device, sample_rate: int):
    """Yield (start, output block (channels, n) float32, limiter gain (n,) linear float32)."""
    import torch

    block = _block_frames(job, store.frames)
    lead = int(min(job.lead_seconds, 1.0) * sample_rate)
    tail = int(TAIL_SECONDS * sample_rate) + 32
    k = np.float32(10.0 ** (gain_db / 20.0))
    with torch.no_grad():
        for s, e in _blocks(store.frames, block):
            a, b = max(0, s - lead), min(store.frames, e + tail)
            y = store.read(a, b) * k
            if ceiling is None:
                yield s, y[:, s - a:e - a], np.ones(e - s, dtype=np.float32)
                continue
            yt = torch.from_numpy(np.ascontiguousarray(y))[None].to(device)
            g = _limiter_gain(chain, yt, release_ms, ceiling)[0, s - a:e - a]
            g = g.to(torch.float32).cpu().numpy()
            out = y[:, s - a:e - a] * g[None, :]
            yield s, out, g


def master_source(source: Source, job: Job, write: Callable[[np.ndarray], None] | None = None,
                  progress: Progress | None = None,
                  rewind: Callable[[], None] | None = None) -> MasterResult:
    """Master a (processing-rate) source; blocks go to ``write`` (or into result.audio).

    ``rewind``, when given with ``write``, discards what was written so far; it lets a long
    input write its likely-final limiter pass while verifying it instead of running it again.

    Torch and numba (dsp's kernels) run with ``job.threads`` threads meanwhile (restored
    afterwards): the chain's tensors are small, and a second OpenMP or numba worker on a
    busy 2-core machine was measured to make the render up to 10x slower (reference-mode
    steps: 0.06 s with one numba thread, 0.1-2 s with two). The meters' worker thread
    uses the second core instead.
    """
    import numba
    import torch

    saved = torch.get_num_threads()
    saved_numba = numba.get_num_threads()
    if job.threads:
        torch.set_num_threads(int(job.threads))
        numba.set_num_threads(min(int(job.threads), numba.config.NUMBA_NUM_THREADS))
    try:
        return _master_source(source, job, write, progress, rewind)
    finally:
        torch.set_num_threads(saved)
        numba.set_num_threads(saved_numba)


def _master_source(source: Source, job: Job, write: Callable[[np.ndarray], None] | None,
                   progress: Progress | None,
                   rewind: Callable[[], None] | None = None) -> MasterResult:
    import time

    progress = progress or Progress()
    sr, ch, frames = source.sample_rate, source.channels, source.frames
    timings: dict[str, float] = {}
    clock = [time.perf_counter()]

    def lap(name: str) -> None:
        now = time.perf_counter()
        timings[name] = round(timings.get(name, 0.0) + now - clock[0], 3)
        clock[0] = now

    collected: list[np.ndarray] | None = [] if write is None else None
    emit = write if write is not None else collected.append  # type: ignore[union-attr]
    if write is None:
        rewind = collected.clear  # type: ignore[union-attr]

    progress.stage("analyse", frames)
    tp_in = BackgroundMeter(Meter(sr, ch, loudness=False, true_peak=True, spectrum=job.detail))
    meter_in = measure_source(source, true_peak=False, progress=progress, name=job.name,
                              also=tp_in)
    before = meter_in.result()  # true peak filled in by finish_before(), once tp_in is done

    def finish_before() -> None:
        before.true_peak_dbtp = tp_in.join().result().true_peak_dbtp

    try:
        return _master_rest(source, job, emit, rewind, collected, progress, before, meter_in,
                            tp_in, finish_before, timings, lap)
    finally:
        tp_in.join()


def _master_rest(source: Source, job: Job, emit, rewind, collected, progress: Progress,
                 before: Measurement, meter_in: Meter, tp_in: BackgroundMeter, finish_before,
                 timings: dict, lap) -> MasterResult:
    """Everything after the analysis pass (see master_source)."""
    sr, ch, frames = source.sample_rate, source.channels, source.frames
    lap("analyse")
    report: dict[str, Any] = {"input": job.name, "sample_rate": sr, "channels": ch,
                              "duration_s": round(frames / sr, 3)}

    ref_spectrum = None
    if job.reference is not None:
        ref_meter = measure_source(job.reference, true_peak=False, spectrum=job.detail, name=job.reference_name)
        ref_m = ref_meter.result()
        if job.detail:
            f_ref, s_ref = ref_meter.spectrum()
            ref_spectrum = (f_ref, s_ref, ref_m.integrated_lufs)
        report["reference"] = {"file": job.reference_name, **ref_m.as_dict()}
        _refuse_silent_reference(ref_m, job.reference_name)  # in every mode, target or not
        if job.target_lufs is None:
            job.target_lufs = round(ref_m.integrated_lufs, 2)
        lap("reference_loudness")
    if job.target_lufs is None:
        job.target_lufs = -14.0
    report["target_lufs"] = job.target_lufs
    report["ceiling_dbtp"] = job.ceiling_dbtp
    report["intensity"] = job.intensity

    from dsp import MasteringChain

    device = resolve_device(job.device)
    chain = MasteringChain(sample_rate=sr).to(device)
    lap("load_torch")
    silent = (not math.isfinite(before.integrated_lufs) or before.integrated_lufs < SILENCE_LUFS
              or not math.isfinite(before.sample_peak_dbfs)
              or before.sample_peak_dbfs < SILENCE_PEAK_DBFS)
    if silent:
        job.warnings.append(f"silent or near-silent input ({_fmt(before.integrated_lufs)} LUFS, "
                            f"peak {_fmt(before.sample_peak_dbfs)} dBFS): passed through "
                            f"unchanged, not raised to the target")
        progress.stage("write", frames)
        for s, e in _blocks(frames, 1 << 20):
            emit(np.array(source.read(s, e), dtype=np.float32))
            progress.advance(e - s)
        settings = chain.denormalize(chain.identity_params(1))[0]
        finish_before()
        report.update({"source": "passthrough", "before": before.as_dict(),
                       "after": before.as_dict(), "gain_db": 0.0, "warnings": job.warnings})
        audio = np.concatenate(collected, axis=1) if collected is not None else None
        return MasterResult(audio, settings, report)

    p, info = choose_setting(chain, source, before, job, device)
    lap("setting")
    settings = chain.denormalize(p.detach().cpu())[0]
    report.update(info)
    release = float(settings.get("limiter.release_ms", 100.0))

    store = FloatStore(ch, frames, job.memory_bytes, job.tmp_dir)
    comp_trace = BandTraces(frames, sr) if job.detail else None
    try:
        pre = _render_pre_limiter(chain, p.detach(), source, store, job, device, progress,
                                  comp_trace, _reference_lufs(before))
        pre_lufs = pre.integrated_lufs()
        lap("render")
        target, ceiling = float(job.target_lufs), job.ceiling_dbtp
        if not math.isfinite(pre_lufs):
            raise UserError("the chain's output with this setting is silent", job.name)
        search = GainSearch(target, target - pre_lufs)
        lim_ceiling = None if ceiling is None else ceiling - LIMITER_MARGIN_DB
        gain_db = search.gain
        keep = store.in_memory  # cache the last pass when it fits in memory
        n_passes = 0
        best: _Pass | None = None
        while True:
            # loudness passes (no true peak: that costs as much as the rest of a pass)
            n_passes += 1
            cur = _limiter_pass(chain, store, gain_db, release, lim_ceiling, job, device, sr,
                                progress, keep, tp=False)
            err = target - cur.level
            if best is None or abs(err) < abs(target - best.level):
                best = cur
            done = ceiling is None or abs(err) <= LOUDNESS_TOLERANCE_LU
            nxt = None
            if not done and n_passes < MAX_LIMITER_PASSES:
                nxt = search.next(gain_db, cur.level, cur.slope)
                if nxt is None and release > FAST_RELEASE_MS:
                    # a slow limiter release caps the loudness it can reach: release faster
                    job.warnings.append(
                        f"the limiter's release was shortened from {release:.0f} to {FAST_RELEASE_MS:.0f} ms "
                        f"to reach {target:g} LUFS under the {ceiling:g} dBTP ceiling")
                    release = FAST_RELEASE_MS
                    settings["limiter.release_ms"] = release
                    search = GainSearch(target, gain_db)
                    n_passes, best = 0, None
                    continue
                if nxt is None:
                    job.warnings.append(
                        f"the target {target:g} LUFS is not reachable under the {ceiling:g} "
                        f"dBTP ceiling with this setting; the master is at {cur.level:.1f} LUFS")
            if nxt is not None:
                gain_db = nxt
                continue
            # verify the best pass against the independent 4x true-peak measurement; the
            # limiter holds its own interpolator's peaks, which can read a little lower
            best = _verify(best, chain, store, release, job, device, sr, progress,
                           emit if rewind is not None else None)
            excess = 0.0 if ceiling is None else max(0.0, best.tp_db - (ceiling - TP_MARGIN_DB))
            _debug(f"verify gain {best.gain_db:.3f} ceiling {best.ceiling} -> "
                   f"{best.level:.3f} LUFS, TP {best.tp_db:.3f}")
            if excess == 0.0 or n_passes >= MAX_LIMITER_PASSES:
                break
            if best.emitted:
                rewind()
            lim_ceiling = best.ceiling - excess - 0.005
            gain_db = best.gain_db
            search.lowered(excess + 0.005)
            best = None
        trim_db = 0.0
        if ceiling is not None and best.tp_db > ceiling - TP_MARGIN_DB:
            trim_db = ceiling - TP_MARGIN_DB - best.tp_db  # last resort: a small global trim
        trim = np.float32(10.0 ** (trim_db / 20.0))
        gain_db, lim_ceiling, lim_trace = best.gain_db, best.ceiling, best.trace
        lap("loudness_and_limiter")
        timings["limiter_passes"] = n_passes

        if best.emitted and trim_db:
            rewind()
            best.emitted = False
        progress.stage("write", frames)
        if best.emitted:
            pass  # written while verifying
        elif best.cache is not None:
            for out in best.cache:
                emit(out * trim if trim_db else out)
                progress.advance(out.shape[1])
        else:
            for _, out, _ in _limited(chain, store, gain_db, release, lim_ceiling, job, device,
                                      sr):
                emit(out * trim if trim_db else out)
                progress.advance(out.shape[1])
    finally:
        store.close()

    lap("write")
    finish_before()
    after = best.measurement
    for key in ("integrated_lufs", "true_peak_dbtp", "sample_peak_dbfs", "rms_dbfs"):
        setattr(after, key, getattr(after, key) + trim_db)
    report.update({
        "before": before.as_dict(),
        "after": after.as_dict(),
        "gain_db": round(gain_db + trim_db, 3),
        "true_peak_trim_db": round(trim_db, 3),
        "limiter_ceiling_dbtp": None if lim_ceiling is None else round(lim_ceiling, 3),
        "warnings": job.warnings,
        "timings_s": timings,
    })
    if job.detail:
        from automaster.report import smooth_spectrum

        f_in, s_in = tp_in.meter.spectrum()
        _, s_out = best.spectrum
        # before at the master's loudness, so the plot shows tone, not level
        shift = after.integrated_lufs - before.integrated_lufs
        shift = shift if math.isfinite(shift) else 0.0
        report["spectrum"] = smooth_spectrum(f_in, s_in + shift if s_in.size else s_in,
                                             s_out + trim_db if s_out.size else s_out)
        report["spectrum"]["before_shift_db"] = round(shift, 2)
        if ref_spectrum is not None:
            f_ref, s_ref, l_ref = ref_spectrum
            ref_shift = after.integrated_lufs - l_ref if math.isfinite(l_ref) else 0.0
            report["spectrum"]["reference_db"] = smooth_spectrum(f_ref, s_ref + ref_shift, s_ref[:0])["before_db"]
        report["gain_reduction"] = {
            **(comp_trace.as_dict() if comp_trace else {}),
            "limiter": lim_trace.as_dict() if lim_trace else None,
        }
    audio = np.concatenate(collected, axis=1) if collected is not None else None
    return MasterResult(audio, settings, report)


class GainSearch:
    """Root finder for the normalization gain g (dB): limited-output loudness L(g) = target.

    L is increasing and concave (the limiter flattens it) and may saturate below the
    target. Until the root is bracketed, steps use a slope estimate (the fraction of
    output energy the limiter leaves alone, or the secant when smaller); once bracketed,
    the Illinois variant of regula falsi. Never more than ``MAX_EXTRA_DB`` above the first
    guess; None when more gain stops making it louder.
    """

    MAX_EXTRA_DB = 24.0
    MAX_STEP_DB = 6.0

    def __init__(self, target: float, first_gain: float) -> None:
        self.target = target
        self.gain = first_gain
        self.max_gain = first_gain + self.MAX_EXTRA_DB
        self.lo: list[float] | None = None  # [gain, level - target < 0]
        self.hi: list[float] | None = None  # [gain, level - target >= 0]
        self.last: tuple[float, float] | None = None
        self.kept: str | None = None

    def lowered(self, delta_db: float) -> None:
        """The limiter's ceiling was lowered by ``delta_db``: L dropped by at most that much,
        so points below the target stay below and those above by more stay above."""
        if self.hi is not None:
            self.hi[1] -= delta_db
            if self.hi[1] <= 0.0:
                self.hi = None
        self.last, self.kept = None, None

    def next(self, gain: float, level: float, slope: float) -> float | None:
        """Next gain after measuring ``level`` at ``gain`` (None: the target is out of reach);
        ``slope``: an estimate of dL/dgain there."""
        f = level - self.target
        if self.last is not None and abs(gain - self.last[0]) > 1e-6:
            secant = (level - self.last[1]) / (gain - self.last[0])
            if self.hi is None and f < 0 and self.last[1] < self.target \
                    and gain > self.last[0] + 1.0 and secant < 0.02:
                return None  # saturated: more gain no longer makes it louder
            if math.isfinite(secant) and secant > 0:
                slope = min(slope, secant)
        self.last = (gain, level)
        if f < 0:
            if self.lo is None or gain >= self.lo[0]:
                self.lo = [gain, f]
            kept = "hi"
        else:
            if self.hi is None or gain <= self.hi[0]:
                self.hi = [gain, f]
            kept = "lo"
        if self.lo is not None and self.hi is not None:
            if kept == self.kept:  # Illinois: the same end kept twice, halve its value
                end = self.hi if kept == "hi" else self.lo
                end[1] *= 0.5
            self.kept = kept
            (g0, f0), (g1, f1) = self.lo, self.hi
            nxt = g0 - f0 * (g1 - g0) / (f1 - f0) if f1 > f0 else 0.5 * (g0 + g1)
        else:
            step = -f / min(max(slope, 0.05), 1.0)
            nxt = gain + max(-self.MAX_STEP_DB, min(self.MAX_STEP_DB, step))
        if nxt > self.max_gain:
            if gain >= self.max_gain - 1e-6:
                return None
            nxt = self.max_gain
        self.gain = nxt
        return nxt


def _fmt(v: float) -> str:
    return f"{v:.1f}" if math.isfinite(v) else "-inf"


# ---------------------------------------------------------------------------- public API
def master(audio: Any, sample_rate: int, target_lufs: float | None = None,
           ceiling_dbtp: float | None = -1.0, intensity: float = 1.0, reference: Any = None,
           reference_sample_rate: int | None = None, model: Any = None, device: Any = "auto",
           *, settings: dict[str, float] | None = None, detail: bool = False) -> MasterResult:
    """Master ``audio`` (channels, samples) or (samples,) at ``sample_rate``.

    target_lufs: integrated loudness of the result; None (the default) matches the
    reference's loudness when a reference is given, else -14 LUFS. ceiling_dbtp: true-peak ceiling (None: no limiter). intensity:
    0 = identity setting .. 1 = full predicted setting. reference: a finished master to
    match, as an array (channels, samples) at ``reference_sample_rate`` (default
    ``sample_rate``) or a file path. model: MasteringModel, checkpoint name/path or None.
    settings: explicit {parameter: physical value} (skips prediction). Returns a
    MasterResult with audio (channels, samples) float32 at the same rate and channel count.
    """
    x = _as_audio_array(audio, "audio")
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2:
        raise ValueError(f"audio must be (channels, samples) or (samples,), got shape {x.shape}")
    _check_orientation(x, "audio")
    if x.shape[0] not in (1, 2):
        raise ValueError(f"audio must be mono or stereo, got {x.shape[0]} channels")
    _check_args(sample_rate, target_lufs, ceiling_dbtp, intensity)
    if x.shape[1] < int(0.4 * sample_rate):
        raise ValueError(f"audio is too short ({x.shape[1] / sample_rate:.3f} s; at least 0.4 s)")
    if not np.isfinite(x).all():
        raise ValueError("audio contains NaN or infinite samples")
    if reference is not None and settings is not None:
        raise ValueError("give either a reference or explicit settings, not both")
    job = Job(target_lufs=target_lufs, ceiling_dbtp=ceiling_dbtp, intensity=float(intensity),
              settings=dict(settings) if settings is not None else None, model=model,
              device=device, detail=detail, name="audio")
    if reference is not None:
        job.reference, job.reference_name = _reference_source(reference, reference_sample_rate
                                                              or sample_rate)
    return master_source(ArraySource(x, sample_rate), job)


def _reference_source(reference: Any, sample_rate: int) -> tuple[Source, str]:
    if isinstance(reference, (str, os.PathLike)):
        from automaster.io import check_input_info, probe, read_audio

        check_input_info(probe(reference), downmix=True)
        data, sr = read_audio(reference)
        name = os.fspath(reference)
    else:
        data, sr, name = _as_audio_array(reference, "reference"), int(sample_rate), "reference"
        if data.ndim == 1:
            data = data[None, :]
        if data.ndim != 2:
            raise ValueError(f"reference must be (channels, samples), got shape {data.shape}")
        _check_orientation(data, "reference")
        if not np.isfinite(data).all():
            raise ValueError("reference contains NaN or infinite samples")
        if data.shape[1] < int(0.4 * sr):
            raise ValueError("reference is too short (at least 0.4 s)")
    if data.shape[0] > 2:
        from automaster.io import downmix_matrix

        data = downmix_matrix(data.shape[0]) @ data
    return ArraySource(data, sr), name


# ---- input checks for the public API and the reference (issue #9) ----
def _as_audio_array(audio: Any, what: str) -> np.ndarray:
    """An API caller's samples -> float32 ndarray, full scale 1.0.

    Float arrays (and float tensors, detached from autograd) are taken as they are; integer
    PCM (int8/int16/int32, and offset-binary uint8) is divided by its full scale; anything
    else (bool, complex, other integer widths, objects, strings) is a TypeError.
    """
    if hasattr(audio, "detach") and hasattr(audio, "cpu") and hasattr(audio, "numpy"):
        t = audio.detach().cpu()  # a tensor that requires grad: its values, without the graph
        if t.is_floating_point():
            t = t.float()  # float16/bfloat16 have no numpy twin
        audio = t.numpy()
    x = np.asarray(audio)
    kind, dt = x.dtype.kind, x.dtype
    if kind == "f":
        return x.astype(np.float32, copy=False)
    if kind in "iu" and dt.itemsize <= 4 and not (kind == "u" and dt.itemsize > 1):
        full = float(2 ** (8 * dt.itemsize - 1))
        offset = full if kind == "u" else 0.0  # 8-bit WAV PCM is unsigned, centred on 128
        return ((x.astype(np.float64) - offset) / full).astype(np.float32)
    if kind == "b":
        raise TypeError(f"{what} is a bool array; pass float samples in [-1, 1] (or int16/int32 PCM)")
    if kind == "c":
        raise TypeError(f"{what} is complex; pass real float samples in [-1, 1]")
    if kind in "iu":
        raise TypeError(f"{what} has dtype {dt}; integer PCM must be int8, int16, int32 or "
                        f"uint8 (a Python list of ints is int64: convert to float in [-1, 1])")
    raise TypeError(f"{what} has dtype {dt}; pass float samples in [-1, 1]")


def _check_orientation(x: np.ndarray, what: str) -> None:
    if x.shape[0] > x.shape[1]:
        if x.shape[1] <= 8:
            raise ValueError(f"{what} has shape {x.shape}, which looks like (samples, channels); "
                             f"pass it transposed ({what}.T) as (channels, samples)")
        raise ValueError(f"{what} must be (channels, samples); got {x.shape} (transposed?)")


def _refuse_silent_reference(m: Measurement, name: str) -> None:
    """A silent or near-silent reference gives nothing to match (its spectrum and width are
    noise): refuse it whether or not a loudness target is given."""
    if (not math.isfinite(m.integrated_lufs) or m.integrated_lufs < SILENCE_LUFS
            or not math.isfinite(m.sample_peak_dbfs) or m.sample_peak_dbfs < SILENCE_PEAK_DBFS):
        raise InputError(f"the reference is silent or near-silent ({_fmt(m.integrated_lufs)} "
                         f"LUFS, peak {_fmt(m.sample_peak_dbfs)} dBFS); there is nothing to "
                         f"match", name)


def check_reference_level(reference: Source, name: str) -> None:
    """Measure a reference once and refuse it if silent (the CLI calls this up front)."""
    _refuse_silent_reference(measure_source(reference, true_peak=False, name=name).result(),
                             name)


def _check_args(sample_rate: Any, target_lufs: Any, ceiling_dbtp: Any, intensity: Any) -> None:
    from automaster.io import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE

    if not isinstance(sample_rate, (int, np.integer)) or not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise ValueError(f"sample_rate must be an integer in [{MIN_SAMPLE_RATE}, {MAX_SAMPLE_RATE}], "
                         f"got {sample_rate!r}")
    if target_lufs is not None and not (math.isfinite(target_lufs) and -70.0 < target_lufs <= 0.0):
        raise ValueError(f"target_lufs must be in (-70, 0], got {target_lufs}")
    if ceiling_dbtp is not None and not (math.isfinite(ceiling_dbtp) and -30.0 <= ceiling_dbtp <= 0.0):
        raise ValueError(f"ceiling_dbtp must be in [-30, 0], got {ceiling_dbtp}")
    if not (math.isfinite(intensity) and 0.0 <= intensity <= 1.0):
        raise ValueError(f"intensity must be in [0, 1], got {intensity}")


def describe(m: dict[str, Any]) -> str:
    """'-23.1 LUFS, -6.0 dBTP, LRA 5.2 LU' from a Measurement.as_dict()."""
    def f(v: Any, unit: str) -> str:
        return f"{v:.1f} {unit}" if isinstance(v, (int, float)) else f"n/a {unit}"
    return (f"{f(m.get('integrated_lufs'), 'LUFS')}, {f(m.get('true_peak_dbtp'), 'dBTP')}, "
            f"LRA {f(m.get('loudness_range_lu'), 'LU')}")


__all__ = ["MasterResult", "Job", "Progress", "master", "master_source", "load_model",
           "resolve_device", "describe", "one_line"]
