"""De-mastering augmenter: turn a mastered excerpt into a plausible unmastered one.

Self-supervised pairs for training: the network sees ``degraded = demaster(master)``
and must predict chain parameters that bring it back to ``master``. Every stage
undoes one thing mastering typically does; each is applied with its own
probability and random settings drawn from a ``torch.Generator`` seeded per item,
so a seed always yields the identical pair.

Stages, in the order they are applied (the reverse of a mastering chain):

=====================  ==========================================  ================  =====
stage                  setting                                     range             prob
=====================  ==========================================  ================  =====
un-limiting            restore peaks: upward expansion of the      depth 1 .. 6 dB    0.7
                       2.9 ms peak envelope above (excerpt peak    slope 0.3 .. 1.0
                       - depth), gain = slope * excess (<= +6 dB)
expansion              undo compression: gain = (ratio - 1) *      ratio 1.05 .. 1.5  0.6
                       (20 ms RMS envelope - its median), clamped
                       to -12 .. +6 dB, 5 ms gain smoothing
transient restoration  boost attacks: gain = amount * (2 ms RMS    amount 0.1 .. 0.6  0.5
                       - 40 ms RMS, in dB, clamped 0 .. 12 dB)
width                  scale the side signal (stereo only)         0.6 .. 1.2 x       0.6
tilt EQ                low shelf 200 Hz at -t/2, high shelf        t -6 .. +6 dB      0.9
                       3 kHz at +t/2 (RBJ, Q 0.707)
band EQ                1 .. 3 RBJ peaking bands                    f 60 .. 12k Hz     0.8
                                                                   (log), gain -6 ..
                                                                   +6 dB, Q 0.5 .. 3
                                                                   (log)
level drop             integrated loudness set to master - drop    drop 3 .. 12 dB    1.0
peak guard             extra attenuation so the sample peak stays  <= -0.5 dBFS       1.0
                       below -0.5 dBFS (an unmastered mix does
                       not clip)
=====================  ==========================================  ================  =====

All dynamics gains are linked across channels and computed from envelopes on 32-sample
blocks (0.7 ms at 44.1 kHz), then interpolated back to samples. EQs are applied as zero-phase
magnitude responses of the RBJ biquads in the frequency domain (padded against
wrap-around), so the chain's RBJ EQ with negated gains has exactly the inverse
magnitude response.

Known inverse: tilt/band EQ, width and level are linear and the chain can undo them
exactly in magnitude (negated EQ gains at the same frequencies and Q, reciprocal
width, opposite gain; loudness normalization takes care of the peak guard). The
dynamics stages have no exact counterpart in the chain's settings. A pair therefore
has a known inverse only if no dynamics stage fired (``DemasterParams.invertible``);
parameter regression (``train/losses.py``) uses only those pairs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
from scipy.fft import next_fast_len

from dsp.biquad import biquad_response_db, high_shelf_coefficients, low_shelf_coefficients, peaking_coefficients
from dsp.eq import SHELF_Q
from dsp.width import stereo_width

RANGES: dict[str, tuple[float, float]] = {
    "unlimit_depth_db": (1.0, 6.0),
    "unlimit_slope": (0.3, 1.0),
    "expand_ratio": (1.05, 1.5),
    "transient_amount": (0.1, 0.6),
    "width": (0.6, 1.2),
    "tilt_db": (-6.0, 6.0),
    "band_freq_hz": (60.0, 12000.0),
    "band_gain_db": (-6.0, 6.0),
    "band_q": (0.5, 3.0),
    "level_drop_db": (3.0, 12.0),
}
PROBS: dict[str, float] = {
    "unlimit": 0.7,
    "expand": 0.6,
    "transient": 0.5,
    "width": 0.6,
    "tilt": 0.9,
    "bands": 0.8,
}
MAX_BANDS = 3
TILT_LOW_HZ = 200.0
TILT_HIGH_HZ = 3000.0
PEAK_GUARD_DBFS = -0.5
HOP = 32  # samples per envelope block
_LOG_SCALED = {"band_freq_hz", "band_q"}


@dataclass
class DemasterParams:
    """Settings of one de-mastering draw (physical units; disabled stages are neutral)."""

    unlimit: bool = False
    unlimit_depth_db: float = 3.0
    unlimit_slope: float = 0.0
    expand: bool = False
    expand_ratio: float = 1.0
    transient: bool = False
    transient_amount: float = 0.0
    width: float = 1.0
    tilt_db: float = 0.0
    bands: list[tuple[float, float, float]] = field(default_factory=list)  # (freq_hz, gain_db, q)
    level_drop_db: float = 0.0
    guard_db: float = 0.0  # extra attenuation applied by the peak guard (set by apply)

    @property
    def invertible(self) -> bool:
        """True when only linear stages fired, so the chain holds an exact inverse."""
        return not (self.unlimit or self.expand or self.transient)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["invertible"] = self.invertible
        return d


def _uniform(g: torch.Generator, name: str) -> float:
    low, high = RANGES[name]
    u = float(torch.rand((), generator=g, dtype=torch.float64))
    if name in _LOG_SCALED:
        return math.exp(math.log(low) + u * (math.log(high) - math.log(low)))
    return low + u * (high - low)


class Demasterer:
    """Random de-mastering at a fixed sample rate; see the module docstring for ranges.

    ``probs`` overrides stage probabilities (e.g. ``{"unlimit": 0, "expand": 0,
    "transient": 0}`` for invertible pairs only).
    """

    def __init__(self, sample_rate: int, probs: dict[str, float] | None = None) -> None:
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {sample_rate}")
        self.sample_rate = int(sample_rate)
        self.probs = dict(PROBS)
        for k, v in (probs or {}).items():
            if k not in PROBS:
                raise ValueError(f"unknown de-mastering stage {k!r}; known: {sorted(PROBS)}")
            if not 0.0 <= float(v) <= 1.0:
                raise ValueError(f"probability of {k!r} must lie in [0, 1], got {v}")
            self.probs[k] = float(v)

    # -- drawing --------------------------------------------------------------------
    def sample(self, generator: torch.Generator) -> DemasterParams:
        """Draw settings. Every value is always drawn, in a fixed order, so toggling a
        probability never shifts the random stream of the other stages."""
        g = generator
        coin = {k: float(torch.rand((), generator=g, dtype=torch.float64)) < self.probs[k] for k in PROBS}
        depth, slope = _uniform(g, "unlimit_depth_db"), _uniform(g, "unlimit_slope")
        ratio = _uniform(g, "expand_ratio")
        amount = _uniform(g, "transient_amount")
        width = _uniform(g, "width")
        tilt = _uniform(g, "tilt_db")
        n_bands = 1 + int(torch.randint(0, MAX_BANDS, (), generator=g))
        bands = [(_uniform(g, "band_freq_hz"), _uniform(g, "band_gain_db"), _uniform(g, "band_q")) for _ in range(MAX_BANDS)]
        drop = _uniform(g, "level_drop_db")
        nyq_safe = 0.45 * self.sample_rate
        return DemasterParams(
            unlimit=coin["unlimit"],
            unlimit_depth_db=depth,
            unlimit_slope=slope if coin["unlimit"] else 0.0,
            expand=coin["expand"],
            expand_ratio=ratio if coin["expand"] else 1.0,
            transient=coin["transient"],
            transient_amount=amount if coin["transient"] else 0.0,
            width=width if coin["width"] else 1.0,
            tilt_db=tilt if coin["tilt"] else 0.0,
            bands=[b for b in bands[:n_bands] if b[0] < nyq_safe] if coin["bands"] else [],
            level_drop_db=drop,
        )

    def __call__(self, x: torch.Tensor, seed: int | torch.Generator) -> tuple[torch.Tensor, DemasterParams]:
        """De-master ``x`` (channels, samples) or (batch, channels, samples) with one draw."""
        if isinstance(seed, torch.Generator):
            g = seed
        else:
            g = torch.Generator(device="cpu")
            g.manual_seed(int(seed))
        params = self.sample(g)
        return self.apply(x, params), params

    # -- processing -----------------------------------------------------------------
    def apply(self, x: torch.Tensor, params: DemasterParams) -> torch.Tensor:
        """Apply ``params`` to ``x`` (channels, samples) or (batch, channels, samples).

        Sets ``params.guard_db``. Returns float32 audio of the same shape.
        """
        squeeze = x.dim() == 2
        if squeeze:
            x = x.unsqueeze(0)
        if x.dim() != 3:
            raise ValueError(f"expected (channels, samples) or (batch, channels, samples), got {tuple(x.shape)}")
        ref = x.float()
        y = ref
        if params.unlimit:
            y = self._unlimit(y, params.unlimit_depth_db, params.unlimit_slope)
        if params.expand:
            y = self._expand(y, params.expand_ratio)
        if params.transient:
            y = self._transients(y, params.transient_amount)
        if params.width != 1.0 and y.shape[1] == 2:
            y = stereo_width(y, torch.full((y.shape[0],), params.width))
        if params.tilt_db != 0.0 or params.bands:
            y = self._eq(y, params.tilt_db, params.bands)
        y, params.guard_db = self._level(y, ref, params.level_drop_db)
        return y.squeeze(0) if squeeze else y

    # Dynamics run on envelopes decimated to HOP-sample blocks (0.7 ms at 44.1 kHz): the
    # envelopes and gain curves are far smoother than that, and it keeps a 12 s excerpt cheap.
    def _frames(self, ms: float) -> int:
        return max(1, int(round(ms * 1e-3 * self.sample_rate / HOP)))

    def _env_db(self, power: torch.Tensor, window_ms: float) -> torch.Tensor:
        """Moving RMS level in dB of block powers (b, 1, F) -> (b, 1, F)."""
        return 10.0 * torch.log10(_moving_average(power, self._frames(window_ms)) + 1e-10)

    def _apply(self, x: torch.Tensor, gain_db: torch.Tensor, smooth_ms: float) -> torch.Tensor:
        """Smooth a block gain curve (b, 1, F), upsample it linearly and apply it to x."""
        g = _moving_average(gain_db, self._frames(smooth_ms))
        g = torch.nn.functional.interpolate(g, scale_factor=HOP, mode="linear", align_corners=False)
        return x * _db_to_amp(g[..., : x.shape[-1]])

    def _unlimit(self, x: torch.Tensor, depth_db: float, slope: float) -> torch.Tensor:
        peak = _blocks(x.abs().amax(dim=1, keepdim=True)).amax(dim=-1)
        w = self._frames(2.9) | 1
        peak = torch.nn.functional.max_pool1d(peak, w, stride=1, padding=w // 2)
        peak_db = 20.0 * torch.log10(peak + 1e-10)
        thr = peak_db.amax(dim=-1, keepdim=True) - depth_db
        gain_db = (slope * (peak_db - thr).clamp_min(0.0)).clamp_max(6.0)
        return self._apply(x, gain_db, 2.0)

    def _expand(self, x: torch.Tensor, ratio: float) -> torch.Tensor:
        env = self._env_db(_block_power(x), 20.0)
        active = env > -60.0
        pivot = torch.stack([
            e[a].median() if bool(a.any()) else e.median() for e, a in zip(env.flatten(1), active.flatten(1))
        ]).view(-1, 1, 1)
        gain_db = ((ratio - 1.0) * (env - pivot)).clamp(-12.0, 6.0)
        return self._apply(x, gain_db, 5.0)

    def _transients(self, x: torch.Tensor, amount: float) -> torch.Tensor:
        power = _block_power(x)
        diff = (self._env_db(power, 2.0) - self._env_db(power, 40.0)).clamp(0.0, 12.0)
        return self._apply(x, amount * diff, 1.0)

    def eq_response_db(self, freqs_hz: torch.Tensor, tilt_db: float, bands: list[tuple[float, float, float]]) -> torch.Tensor:
        """Magnitude response in dB (float64, shape of ``freqs_hz``) of the tilt + band EQ,
        built from the chain's own RBJ biquad designs (``dsp.biquad``)."""
        sr = self.sample_rate
        sections = []
        if tilt_db != 0.0:
            sections.append(low_shelf_coefficients(_t(TILT_LOW_HZ), _t(-0.5 * tilt_db), _t(SHELF_Q), sr))
            sections.append(high_shelf_coefficients(_t(TILT_HIGH_HZ), _t(0.5 * tilt_db), _t(SHELF_Q), sr))
        for f, gain, q in bands:
            sections.append(peaking_coefficients(_t(f), _t(gain), _t(q), sr))
        if not sections:
            return torch.zeros_like(freqs_hz, dtype=torch.float64)
        return biquad_response_db(torch.cat(sections), freqs_hz, sr).sum(dim=0)

    def _eq(self, x: torch.Tensor, tilt_db: float, bands: list[tuple[float, float, float]]) -> torch.Tensor:
        t = x.shape[-1]
        pad = min(t - 1, 4096)
        xp = torch.nn.functional.pad(x, (pad, pad), mode="reflect") if pad > 0 else x
        n = next_fast_len(xp.shape[-1] + (xp.shape[-1] % 2), real=True)
        n += n % 2  # even: the last bin is Nyquist, so the grid below maps onto the bins exactly
        spec = torch.fft.rfft(xp, n=n, dim=-1)
        # The response is smooth: evaluate it on 4097 points, interpolate linearly to the bins.
        grid = torch.linspace(0.0, self.sample_rate / 2.0, 4097, dtype=torch.float64)
        resp_db = self.eq_response_db(grid, tilt_db, bands).float().view(1, 1, -1)
        resp_db = torch.nn.functional.interpolate(resp_db, size=spec.shape[-1], mode="linear", align_corners=True)
        y = torch.fft.irfft(spec * torch.pow(10.0, resp_db / 20.0), n=n, dim=-1)
        return y[..., pad : pad + t].contiguous()

    def _level(self, y: torch.Tensor, ref: torch.Tensor, drop_db: float) -> tuple[torch.Tensor, float]:
        """Set loudness to ref - drop (per item), then guard the peak. Returns (audio, guard dB)."""
        from dsp.loudness import integrated_loudness

        with torch.no_grad():
            l_ref = integrated_loudness(ref, self.sample_rate)
            l_y = integrated_loudness(y, self.sample_rate)
        ok = torch.isfinite(l_ref) & torch.isfinite(l_y)
        # Fall back to RMS for (near-)silent items where gated loudness is undefined.
        rms_delta = 20.0 * torch.log10(_rms(ref) / _rms(y).clamp_min(1e-12))
        delta = torch.where(ok, l_ref - l_y, rms_delta) - drop_db
        y = y * _db_to_amp(delta).view(-1, 1, 1)
        peak_db = 20.0 * torch.log10(y.abs().flatten(1).amax(dim=1).clamp_min(1e-12))
        guard = (PEAK_GUARD_DBFS - peak_db).clamp_max(0.0)
        y = y * _db_to_amp(guard).view(-1, 1, 1)
        return y, float(guard.min())


def _blocks(x: torch.Tensor) -> torch.Tensor:
    """(b, 1, t) -> (b, 1, F, HOP) zero-padded blocks."""
    t = x.shape[-1]
    x = torch.nn.functional.pad(x, (0, (-t) % HOP))
    return x.view(x.shape[0], x.shape[1], -1, HOP)


def _block_power(x: torch.Tensor) -> torch.Tensor:
    """Channel-linked mean power per block: (b, c, t) -> (b, 1, F)."""
    return _blocks(x.square().mean(dim=1, keepdim=True)).mean(dim=-1)


def _moving_average(x: torch.Tensor, window: int) -> torch.Tensor:
    """Centered moving average over the last axis (edge-clamped), O(samples)."""
    if window <= 1:
        return x
    left = window // 2
    xp = torch.nn.functional.pad(x.double(), (left + 1, window - left - 1), mode="replicate")
    c = xp.cumsum(dim=-1)
    return ((c[..., window:] - c[..., :-window]) / window).to(x.dtype)


def _t(v: float) -> torch.Tensor:
    return torch.tensor([float(v)], dtype=torch.float64)


def _rms(x: torch.Tensor) -> torch.Tensor:
    return x.float().square().flatten(1).mean(dim=1).sqrt()


def _db_to_amp(db: torch.Tensor) -> torch.Tensor:
    return torch.pow(10.0, db / 20.0)


def inverse_settings(params: DemasterParams, peak_slots: dict[str, tuple[float, float]]) -> dict[str, float] | None:
    """Chain settings (physical) that undo the linear stages of ``params``.

    Only values that matter are returned; cutoffs of unused sections and time
    constants of disabled dynamics are "don't care" and left out (masked).

    ``peak_slots`` maps the chain's peaking bands ("eq.peak1" ...) to their centre
    ranges; each de-mastering band takes a free slot that can hold its frequency.
    Returns None when there is no exact inverse (a dynamics stage fired, or bands do
    not fit the slots).
    """
    if not params.invertible:
        return None
    out: dict[str, float] = {"eq.highpass.mix": 0.0, "compressor.ratio": 1.0, "saturation.mix": 0.0, "width.width": 1.0 / params.width}
    out["eq.low_shelf.gain_db"] = 0.5 * params.tilt_db
    out["eq.high_shelf.gain_db"] = -0.5 * params.tilt_db
    if params.tilt_db != 0.0:
        out["eq.low_shelf.cutoff_hz"] = TILT_LOW_HZ
        out["eq.high_shelf.cutoff_hz"] = TILT_HIGH_HZ
    free = dict(peak_slots)
    for f, gain, q in sorted(params.bands):
        fits = [s for s, (lo, hi) in free.items() if lo <= f <= hi]
        if not fits:
            return None
        slot = min(fits, key=lambda s: free[s][1])  # tightest upper edge first: greedy is optimal for intervals
        del free[slot]
        out.update({f"{slot}.center_hz": f, f"{slot}.gain_db": -gain, f"{slot}.q": q})
    for slot in free:
        out[f"{slot}.gain_db"] = 0.0
    out["input.gain_db"] = params.level_drop_db - params.guard_db
    return out


def inverse_param_target(chain, params: DemasterParams, level_normalized: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalized (num_params,) target and bool mask for parameter regression.

    The mask is all False without a known inverse or when a value falls outside the
    chain's range; ``input.gain_db`` is masked when the chain normalizes loudness
    (the level is then set by the loudness target, not by the gain).
    """
    n = chain.num_params
    names = chain.param_names
    slots = {name.rsplit(".", 1)[0]: (r.low, r.high) for name, r in chain.ranges.items() if name.startswith("eq.peak") and name.endswith(".center_hz")}
    inv = inverse_settings(params, slots)
    target = torch.full((n,), float("nan"))
    mask = torch.zeros(n, dtype=torch.bool)
    if inv is None:
        return target, mask
    if level_normalized:
        inv.pop("input.gain_db")
    for i, name in enumerate(names):
        if name not in inv:
            continue
        r = chain.ranges[name]
        v = float(inv[name])
        if not (r.low <= v <= r.high):
            return torch.full((n,), float("nan")), torch.zeros(n, dtype=torch.bool)
        target[i] = float(r.to_normalized(torch.tensor(v, dtype=torch.float64)))
        mask[i] = True
    return target, mask


class ParamTarget:
    """Picklable DemasterParams -> :func:`inverse_param_target` for DataLoader workers."""

    def __init__(self, sample_rate: int, level_normalized: bool) -> None:
        self.sample_rate = int(sample_rate)
        self.level_normalized = bool(level_normalized)
        self._chain = None

    def __getstate__(self) -> dict:
        return {"sample_rate": self.sample_rate, "level_normalized": self.level_normalized, "_chain": None}

    def __call__(self, params: DemasterParams) -> tuple[torch.Tensor, torch.Tensor]:
        if self._chain is None:
            from dsp import MasteringChain

            self._chain = MasteringChain(self.sample_rate)
        return inverse_param_target(self._chain, params, self.level_normalized)
