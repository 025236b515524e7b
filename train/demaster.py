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
un-limiting            restore peaks: upward expansion of the      depth 1 .. 6 dB    0.5
                       2.9 ms peak envelope above (excerpt peak    slope 0.3 .. 1.0
                       - depth), gain = slope * excess (<= +6 dB)
expansion              undo compression: gain = (ratio - 1) *      ratio 1.05 .. 1.5  0.45
                       (20 ms RMS envelope - its median), clamped
                       to -12 .. +6 dB, 5 ms gain smoothing
transient restoration  boost attacks: gain = amount * (2 ms RMS    amount 0.1 .. 0.6  0.35
                       - 40 ms RMS, in dB, clamped 0 .. 12 dB)
over-compression       squash it further (a mix that is already    ratio 2 .. 5,      0.15
                       too compressed): 10 ms RMS above median +   offset 0 .. 6 dB
                       offset reduced by (1 - 1/ratio); excludes
                       the three stages above
width                  scale the side signal (stereo only)         0.7 .. 1.4 x       0.5
EQ errors, per region  one error in each of the chain's EQ         gain -8 .. +8 dB   0.45
                       regions (low shelf 40-160 Hz, bells         each
                       160-500 / 500-2k / 2k-5k Hz, high shelf
                       5-14 kHz): the region's own filter type,
                       frequency log-uniform in the region, bell
                       Q 0.4 .. 2 (log)
resonance              one narrow peak                             80 .. 6000 Hz,     0.25
                                                                   +2 .. +8 dB,
                                                                   Q 4 .. 10
level drop             integrated loudness set to master - drop    drop 3 .. 12 dB    1.0
peak guard             extra attenuation so the sample peak stays  <= -0.5 dBFS       1.0
                       below -0.5 dBFS (an unmastered mix does
                       not clip)
=====================  ==========================================  ================  =====

All dynamics gains are linked across channels and computed from envelopes on 32-sample
blocks (0.7 ms at 44.1 kHz), then interpolated back to samples. EQ errors are the chain's
own RBJ biquads run as IIR filters; an RBJ shelf or bell with the negated gain is exactly
the reciprocal transfer function, so the chain's section of the same region undoes it
exactly (magnitude and phase).

Known inverse, recorded as a parameter target (:func:`inverse_param_target`): each EQ
region's error is undone by that region's section with the negated gain (clamped to the
chain's +-6 dB) at the same frequency and Q, and a region without an error by 0 dB;
width by its reciprocal; over-compression by ratios of 1 (the chain cannot expand, so the
best it can do is not to compress further). A region holding the narrow resonance has
no exact inverse among broad bells and is left to the audio loss, as are the other
dynamics stages, the saturation and the limiter.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch

from dsp.biquad import apply_biquad_cascade, biquad_response_db, high_shelf_coefficients, low_shelf_coefficients, peaking_coefficients
from dsp.eq import BELL_Q, BELLS, HIGH_SHELF_HZ, LOW_SHELF_HZ, SHELF_Q
from dsp.width import stereo_width

RANGES: dict[str, tuple[float, float]] = {
    "unlimit_depth_db": (1.0, 6.0),
    "unlimit_slope": (0.3, 1.0),
    "expand_ratio": (1.05, 1.5),
    "transient_amount": (0.1, 0.6),
    "squash_ratio": (2.0, 5.0),
    "squash_offset_db": (0.0, 6.0),
    "width": (0.7, 1.4),
    "eq_gain_db": (-8.0, 8.0),
    "eq_q": BELL_Q,
    "resonance_freq_hz": (80.0, 6000.0),
    "resonance_gain_db": (2.0, 8.0),
    "resonance_q": (4.0, 10.0),
    "level_drop_db": (3.0, 12.0),
}
PROBS: dict[str, float] = {
    "unlimit": 0.5,
    "expand": 0.45,
    "transient": 0.35,
    "squash": 0.15,
    "width": 0.5,
    "eq": 0.45,
    "resonance": 0.25,
}
# EQ regions: (name, kind, low Hz, high Hz), as the chain's EQ sections (dsp/eq.py)
EQ_REGIONS: tuple[tuple[str, str, float, float], ...] = (
    ("low_shelf", "low_shelf", *LOW_SHELF_HZ),
    *((name, "bell", lo, hi) for name, lo, hi in BELLS),
    ("high_shelf", "high_shelf", *HIGH_SHELF_HZ),
)
PEAK_GUARD_DBFS = -0.5
HOP = 32  # samples per envelope block
_LOG_SCALED = {"eq_q", "resonance_freq_hz", "resonance_q"}


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
    squash: bool = False
    squash_ratio: float = 1.0
    squash_offset_db: float = 0.0
    width: float = 1.0
    eq: list[tuple[str, float, float, float]] = field(default_factory=list)  # (region, freq_hz, gain_db, q)
    resonance: tuple[float, float, float] | None = None  # (freq_hz, gain_db, q)
    level_drop_db: float = 0.0
    guard_db: float = 0.0  # extra attenuation applied by the peak guard (set by apply)

    @property
    def invertible(self) -> bool:
        """True when only linear stages with an exact inverse in the chain fired."""
        return not (self.unlimit or self.expand or self.transient or self.squash or self.resonance)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["invertible"] = self.invertible
        return d


def _uniform(g: torch.Generator, name: str) -> float:
    low, high = RANGES[name]
    return _draw(g, low, high, name in _LOG_SCALED)


def _draw(g: torch.Generator, low: float, high: float, log: bool) -> float:
    u = float(torch.rand((), generator=g, dtype=torch.float64))
    if log:
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
        sq_ratio, sq_offset = _uniform(g, "squash_ratio"), _uniform(g, "squash_offset_db")
        width = _uniform(g, "width")
        nyq_safe = 0.45 * self.sample_rate
        eq = []
        for name, kind, lo, hi in EQ_REGIONS:
            fires = float(torch.rand((), generator=g, dtype=torch.float64)) < self.probs["eq"]
            f = _draw(g, lo, min(hi, nyq_safe), True)
            gain = _uniform(g, "eq_gain_db")
            q = _uniform(g, "eq_q") if kind == "bell" else SHELF_Q
            if fires and lo < nyq_safe:
                eq.append((name, f, gain, q))
        res = (_uniform(g, "resonance_freq_hz"), _uniform(g, "resonance_gain_db"), _uniform(g, "resonance_q"))
        drop = _uniform(g, "level_drop_db")
        squash = coin["squash"]
        return DemasterParams(
            unlimit=coin["unlimit"] and not squash,
            unlimit_depth_db=depth,
            unlimit_slope=slope if coin["unlimit"] and not squash else 0.0,
            expand=coin["expand"] and not squash,
            expand_ratio=ratio if coin["expand"] and not squash else 1.0,
            transient=coin["transient"] and not squash,
            transient_amount=amount if coin["transient"] and not squash else 0.0,
            squash=squash,
            squash_ratio=sq_ratio if squash else 1.0,
            squash_offset_db=sq_offset if squash else 0.0,
            width=width if coin["width"] else 1.0,
            eq=eq,
            resonance=res if coin["resonance"] and res[0] < nyq_safe else None,
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
        if params.squash:
            y = self._squash(y, params.squash_ratio, params.squash_offset_db)
        if params.width != 1.0 and y.shape[1] == 2:
            y = stereo_width(y, torch.full((y.shape[0],), params.width))
        if params.eq or params.resonance:
            y = self._eq(y, params.eq, params.resonance)
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

    def _squash(self, x: torch.Tensor, ratio: float, offset_db: float) -> torch.Tensor:
        env = self._env_db(_block_power(x), 10.0)
        active = env > -60.0
        pivot = torch.stack([
            e[a].median() if bool(a.any()) else e.median() for e, a in zip(env.flatten(1), active.flatten(1))
        ]).view(-1, 1, 1)
        gain_db = -(1.0 - 1.0 / ratio) * (env - pivot - offset_db).clamp_min(0.0)
        return self._apply(x, gain_db, 3.0)

    def _sections(self, eq: list[tuple[str, float, float, float]],
                  resonance: tuple[float, float, float] | None) -> torch.Tensor:
        """The EQ errors as (S, 5) float64 RBJ biquads (the chain's own designs)."""
        sr = self.sample_rate
        kinds = {name: kind for name, kind, _, _ in EQ_REGIONS}
        sections = []
        for name, f, gain, q in eq:
            design = {"low_shelf": low_shelf_coefficients, "high_shelf": high_shelf_coefficients,
                      "bell": peaking_coefficients}[kinds[name]]
            sections.append(design(_t(f), _t(gain), _t(q), sr))
        if resonance is not None:
            sections.append(peaking_coefficients(_t(resonance[0]), _t(resonance[1]), _t(resonance[2]), sr))
        return torch.cat(sections) if sections else torch.zeros(0, 5, dtype=torch.float64)

    def eq_response_db(self, freqs_hz: torch.Tensor, eq: list[tuple[str, float, float, float]],
                       resonance: tuple[float, float, float] | None = None) -> torch.Tensor:
        """Magnitude response in dB (float64, shape of ``freqs_hz``) of the EQ errors."""
        sections = self._sections(eq, resonance)
        if sections.shape[0] == 0:
            return torch.zeros_like(freqs_hz, dtype=torch.float64)
        return biquad_response_db(sections, freqs_hz, self.sample_rate).sum(dim=0)

    def _eq(self, x: torch.Tensor, eq: list[tuple[str, float, float, float]],
            resonance: tuple[float, float, float] | None) -> torch.Tensor:
        """The EQ errors as IIR sections. An RBJ shelf or bell with gain -g is exactly the
        reciprocal of the same design with +g, so the chain's section undoes it exactly."""
        sections = self._sections(eq, resonance)
        return apply_biquad_cascade(x, sections[None].expand(x.shape[0], -1, -1))

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


def inverse_settings(params: DemasterParams, ranges: dict) -> dict[str, float]:
    """Chain settings (physical, by parameter name) that undo what has a known inverse.

    Only values that matter are returned; everything else is "don't care" (masked): the
    frequency and Q of a region without an error, a region holding the narrow resonance,
    the compressor unless the mix was over-compressed, saturation, limiter, high-pass.
    Gains are clamped to the chain's range (an 8 dB error gets the chain's 6 dB).
    """
    out: dict[str, float] = {"width.width": 1.0 / params.width}
    errors = {name: (f, gain, q) for name, f, gain, q in params.eq}
    for name, kind, lo, hi in EQ_REGIONS:
        if params.resonance is not None and lo <= params.resonance[0] < hi:
            continue
        key = f"eq.{name}"
        gname = f"{key}.gain_db"
        if name not in errors:
            out[gname] = 0.0
            continue
        f, gain, q = errors[name]
        r = ranges[gname]
        out[gname] = min(max(-gain, r.low), r.high)
        out[f"{key}.{'center_hz' if kind == 'bell' else 'cutoff_hz'}"] = f
        if kind == "bell":
            out[f"{key}.q"] = q
    if params.squash:
        for name in ranges:
            if name.startswith("multiband.") and name.endswith(".ratio"):
                out[name] = 1.0
    return out


def inverse_param_target(chain, params: DemasterParams, level_normalized: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalized (num_params,) target and bool mask for parameter regression
    (see :func:`inverse_settings`); values are clamped into the chain's ranges."""
    n = chain.num_params
    inv = inverse_settings(params, chain.ranges)
    target = torch.full((n,), float("nan"))
    mask = torch.zeros(n, dtype=torch.bool)
    for i, name in enumerate(chain.param_names):
        if name not in inv:
            continue
        r = chain.ranges[name]
        v = min(max(float(inv[name]), r.low), r.high)
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
