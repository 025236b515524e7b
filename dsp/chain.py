"""The mastering chain: processors in a declared order, one flat parameter vector."""

from __future__ import annotations

import math

import torch
from torch import nn

from dsp.biquad import apply_biquad_cascade
from dsp.eq import ParametricEQ, eq_coefficients
from dsp._ops import gain_and_loudness_energy, limiter_pass
from dsp._bs1770 import hop_samples
from dsp.level import as_reference
from dsp.loudness_search import LOUDNESS_TOLERANCE_LU, GainSearch, run_search
from dsp.limiter import Limiter, _ceiling_linear, limiter_envelope, lookahead_samples
from dsp.loudness import k_weighting_coefficients, loudness_from_power, loudness_from_subblocks, weighted_power
from dsp.multiband import MultibandCompressor, multiband_compress
from dsp.ranges import ParamRange, check_audio, check_params, ms_to_coef
from dsp.saturation import Saturation, saturate
from dsp.width import StereoWidth, stereo_width

MAX_LOUDNESS_PASSES = 6  # steps on estimates
MAX_EXACT_PASSES = 3  # exact renders and measurements after them
LIMITER_HEADROOM_DB = 9.0  # how far the loudness search may push past the first estimate


class MasteringChain(nn.Module):
    """EQ -> multiband compressor -> saturation -> width -> [loudness] -> true-peak limiter.

    ``x`` is (batch, channels, samples) with 1 or 2 channels; ``p`` is (batch,
    num_params) in [0, 1], laid out as ``param_names``. The limiter ceiling and the
    loudness target are render arguments, not predicted parameters; so is the reference
    loudness that the compressor thresholds and the saturation drive are relative to
    (measured from ``x`` unless given). No parameter sets level: there is no input gain
    or makeup to trade against a threshold, because loudness normalization sets it.
    """

    def __init__(self, sample_rate: float = 44100, lookahead_ms: float = 2.0) -> None:
        super().__init__()
        self.sample_rate = float(sample_rate)
        self.stages = nn.ModuleDict(
            {
                "eq": ParametricEQ(sample_rate),
                "multiband": MultibandCompressor(sample_rate),
                "saturation": Saturation(sample_rate),
                "width": StereoWidth(sample_rate),
                "limiter": Limiter(sample_rate, lookahead_ms=lookahead_ms),
            }
        )
        self._slices: dict[str, slice] = {}
        start = 0
        for key, stage in self.stages.items():
            self._slices[key] = slice(start, start + stage.num_params)
            start += stage.num_params
        self.ranges: dict[str, ParamRange] = {
            f"{key}.{name}": r for key, stage in self.stages.items() for name, r in stage.ranges.items()
        }

    @property
    def param_names(self) -> list[str]:
        return list(self.ranges)

    @property
    def num_params(self) -> int:
        return len(self.ranges)

    def range_table(self) -> list[dict]:
        """JSON-ready list of {name, low, high, scale, unit}, in parameter order."""
        return [{"name": n, **r.to_dict()} for n, r in self.ranges.items()]

    # ------------------------------------------------------------------ params
    def identity_params(self, batch: int = 1, device: torch.device | str | None = None) -> torch.Tensor:
        """(batch, num_params) setting that leaves audio unchanged (limiter aside)."""
        values = {f"{k}.{n}": v for k, s in self.stages.items() for n, v in s.identity_values().items()}
        return self.normalize([values] * batch).to(device or "cpu")

    def denormalize(self, p: torch.Tensor) -> list[dict[str, float]]:
        """(batch, num_params) normalized -> one {name: physical value} dict per item."""
        check_params(p, self.num_params)
        phys = torch.stack([r.to_physical(p[:, i].detach().double()) for i, r in enumerate(self.ranges.values())], dim=1)
        return [{n: float(v) for n, v in zip(self.param_names, row.tolist())} for row in phys.cpu()]

    def normalize(self, settings: list[dict[str, float]]) -> torch.Tensor:
        """One {name: physical value} dict per item -> (batch, num_params) float32.

        Every name must be present, none unknown, and each value inside its range.
        """
        if isinstance(settings, dict):
            raise ValueError("normalize takes a list of settings dicts, one per batch item")
        rows = []
        for item in settings:
            unknown = sorted(set(item) - set(self.ranges))
            missing = [n for n in self.ranges if n not in item]
            if unknown or missing:
                raise ValueError(f"settings mismatch: unknown {unknown}, missing {missing}")
            row = []
            for name, r in self.ranges.items():
                v = float(item[name])
                if not math.isfinite(v) or v < r.low - 1e-6 * abs(r.low) - 1e-9 or v > r.high + 1e-6 * abs(r.high) + 1e-9:
                    raise ValueError(f"{name} = {v} is outside its range [{r.low}, {r.high}] {r.unit}")
                row.append(float(r.to_normalized(torch.tensor(v, dtype=torch.float64)).clamp(0.0, 1.0)))
            rows.append(row)
        return torch.tensor(rows, dtype=torch.float32).reshape(len(rows), self.num_params)

    def _values(self, key: str, p: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.stages[key].denormalize(p[:, self._slices[key]])

    # ------------------------------------------------------------------ render
    def forward(self, x: torch.Tensor, p: torch.Tensor, ceiling_dbtp: float | torch.Tensor | None = -1.0,
                target_lufs: float | torch.Tensor | None = None, reference_lufs: float | torch.Tensor | None = None
                ) -> torch.Tensor:
        """Render x (batch, channels, samples) with p (batch, num_params) -> same shape as x."""
        return self.render(x, p, ceiling_dbtp=ceiling_dbtp, target_lufs=target_lufs, reference_lufs=reference_lufs,
                           measure_output=False)[0]  # the traces are dropped: no output loudness to measure

    def render(self, x: torch.Tensor, p: torch.Tensor, ceiling_dbtp: float | torch.Tensor | None = -1.0,
               target_lufs: float | torch.Tensor | None = None, measure_output: bool = True,
               reference_lufs: float | torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Render and also return traces: "band_gain_db" (batch, 3, samples) of the
        multiband compressor, "limiter_gain_db" (batch, samples), and "output_lufs"
        (batch,). ``measure_output=False`` skips the output loudness measurement (and
        the key) when no target was given.

        ``ceiling_dbtp`` and ``target_lufs`` are None, a number, or one value per item
        (batch,); a non-finite per-item target leaves that item's level alone.
        ``reference_lufs`` (number or (batch,)) is the loudness that thresholds and
        drive are relative to; by default the integrated loudness of ``x`` (pass the
        whole track's when rendering it in blocks).
        """
        check_audio(x)
        if x.shape[1] > 2:
            raise ValueError(f"the chain takes mono or stereo audio, got {x.shape[1]} channels")
        check_params(p, self.num_params, x.shape[0])
        ceiling = _per_item(ceiling_dbtp, x, "ceiling_dbtp", allow_nan=False)
        target = _per_item(target_lufs, x, "target_lufs", allow_nan=True)
        p = p.to(device=x.device, dtype=x.dtype)
        ref = as_reference(reference_lufs, x, self.sample_rate)

        y = apply_biquad_cascade(x, eq_coefficients(self._values("eq", p), self.sample_rate))
        y, band_gain = multiband_compress(y, self._values("multiband", p), self.sample_rate, ref)
        sat = self._values("saturation", p)
        y = saturate(y, sat["amount"], self.sample_rate, ref)
        w = self._values("width", p)
        y = stereo_width(y, w["width"], w["mono_below_hz"], self.sample_rate)

        y, lim_gain, out_lufs = self._finish(y, self._values("limiter", p), ceiling, target)
        trace = {
            "band_gain_db": band_gain,
            "limiter_gain_db": 20.0 * torch.log10(lim_gain.clamp_min(1e-12)),
        }
        if out_lufs is not None:
            trace["output_lufs"] = out_lufs
        elif measure_output:
            trace["output_lufs"] = loudness_from_power(weighted_power(y, self.sample_rate), self.sample_rate)
        return y, trace

    def _finish(self, y: torch.Tensor, lim_values: dict[str, torch.Tensor], ceiling_dbtp: torch.Tensor | None,
                target_lufs: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Loudness normalization then limiting; returns (output, limiter gain (batch, samples),
        output loudness (batch,) or None when no target was given).

        The gain that meets the target is searched without autograd (:meth:`_search`).
        When gradients are needed, the limiter is then rendered once, differentiably, at
        that gain, and a last differentiable normalization ``10^((target - L(out)) / 20)``
        (within the search tolerance of 1) carries the gradient of the loudness
        normalization, instead of unrolling the search steps into the graph.
        """
        limiter = self.stages["limiter"]
        sr = self.sample_rate
        ones = torch.ones(y.shape[0], y.shape[2], dtype=y.dtype, device=y.device)
        release = lim_values["release_ms"]
        if target_lufs is None:
            if ceiling_dbtp is None:
                return y, ones, None
            g = limiter.gain(y, lim_values, ceiling_dbtp)
            return y * g[:, None, :], g, None
        needs_grad = torch.is_grad_enabled() and (y.requires_grad or release.requires_grad)
        if not needs_grad:
            gain_db, total, out, out_level = self._search(y, release, ceiling_dbtp, target_lufs)
            return out, total / torch.pow(10.0, gain_db / 20.0).to(y.dtype)[:, None], out_level
        hold = None
        if ceiling_dbtp is not None:  # the envelope is computed once, with autograd, and shared
            hold = limiter.hold(limiter_envelope(y, _ceiling_linear(ceiling_dbtp, y) / self._max_gain(y, target_lufs)))
        with torch.no_grad():
            gain_db = self._search(y.detach(), release.detach(), ceiling_dbtp, target_lufs,
                                   hold=None if hold is None else hold.detach())[0]
        k = torch.pow(10.0, gain_db / 20.0).to(y.dtype)
        if hold is None:
            lim = ones
        else:
            lim = limiter.gain_from_hold(hold * k[:, None], _ceiling_linear(ceiling_dbtp, y), release)
        out = y * (k[:, None] * lim)[:, None, :]
        level = loudness_from_power(weighted_power(out, sr), sr)
        active = torch.isfinite(level) & torch.isfinite(target_lufs)
        fix = torch.where(active, target_lufs.to(level.dtype) - torch.where(active, level, torch.zeros_like(level)),
                          torch.zeros_like(level))
        f = torch.pow(10.0, fix / 20.0)
        return out * f[:, None, None], lim * f[:, None], level + fix

    def _max_gain(self, y: torch.Tensor, target_lufs: torch.Tensor) -> torch.Tensor:
        """Largest linear pre-gain (batch,) the search may use: first estimate + headroom."""
        with torch.no_grad():
            level = loudness_from_power(weighted_power(y.detach(), self.sample_rate), self.sample_rate)
            ok = torch.isfinite(level) & torch.isfinite(target_lufs)
            g = torch.where(ok, target_lufs.to(level.dtype) - torch.where(ok, level, torch.zeros_like(level)),
                            torch.zeros_like(level))
            return torch.pow(10.0, (g + LIMITER_HEADROOM_DB) / 20.0).to(y.dtype)

    @torch.no_grad()
    def estimate_gain(self, y: torch.Tensor, release_ms: torch.Tensor, ceiling_dbtp: torch.Tensor,
                      target_lufs: torch.Tensor, hold: torch.Tensor | None = None) -> GainSearch:
        """The estimating half of the loudness search (:meth:`_search`), no exact render:
        y (batch, channels, samples) pre-limiter audio, release_ms / ceiling_dbtp /
        target_lufs (batch,); ``hold`` (batch, samples): the limiter's peak hold of y
        (:meth:`dsp.limiter.Limiter.hold`), computed here when not given. Returns the
        search, its ``rendered_gain`` (batch,) the pre-gain in dB whose limited output is
        estimated within half the tolerance of the target (``out_of_reach`` where no gain
        reaches it). The inference pipeline starts its exact passes there
        (automaster/pipeline/loudness.py)."""
        return self._search(y, release_ms, ceiling_dbtp, target_lufs, hold=hold, estimate_only=True)

    @torch.no_grad()
    def _search(self, y: torch.Tensor, release: torch.Tensor, ceiling_dbtp: torch.Tensor | None,
                target_lufs: torch.Tensor, hold: torch.Tensor | None = None, estimate_only: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The loudness search (no autograd, :mod:`dsp.loudness_search`): returns (gain_db
        (batch,), total gain k * G (batch, samples), output (batch, channels, samples),
        output loudness (batch,)), the output rendered at exactly that gain and measured.

        With a ceiling, the search first steps on estimates: the limiter envelope and the
        K-weighted power of the pre-limiter signal are computed once (both scale with the
        pre-gain), and the slow limiter gain commutes with K-weighting closely enough to
        estimate each step's loudness. It then goes on with exact renders and measurements
        until the rendered output is within the tolerance (or the passes run out); the
        output returned is the last one rendered, at the gain returned.
        """
        limiter = self.stages["limiter"]
        sr = self.sample_rate
        power = weighted_power(y, sr)
        level = loudness_from_power(power, sr)
        silent = ~(torch.isfinite(level) & torch.isfinite(target_lufs))
        target = torch.where(silent, torch.full_like(level, math.nan), target_lufs.to(level.dtype))
        gain_db = torch.where(silent, torch.zeros_like(level), target - torch.where(silent, torch.zeros_like(level), level))
        if ceiling_dbtp is None:  # a pure gain: K-weighting is linear, so the power scales by k^2
            k = torch.pow(10.0, gain_db / 20.0)
            total = k[:, None].expand(y.shape[0], y.shape[2]).contiguous()
            return gain_db, total, y * k[:, None, None], loudness_from_power(power * (k * k)[:, None], sr)

        ceiling = _ceiling_linear(ceiling_dbtp, y)
        if hold is None:
            hold = limiter.hold(limiter_envelope(y, ceiling / torch.pow(10.0, (gain_db + LIMITER_HEADROOM_DB) / 20.0)))
        fused = not y.is_cuda
        step = hop_samples(sr)
        look = lookahead_samples(limiter.lookahead_ms, sr)
        rendered: dict[str, torch.Tensor] = {}

        def limit(g_db: torch.Tensor) -> torch.Tensor:
            """Total gain k * G (batch, samples) at pre-gain g_db; the estimated output
            loudness (batch,) goes to rendered["estimate"]."""
            if "gain" in rendered and torch.equal(rendered["gain"], g_db):
                return rendered["total"]
            k = torch.pow(10.0, g_db / 20.0).to(y.dtype)
            if fused:
                a_rel = ms_to_coef(release.to(torch.float64), sr)
                g, energy = limiter_pass(hold, k, ceiling, a_rel, look + 1, power, step)
                total, est = k[:, None] * g, loudness_from_subblocks(energy, power)
            else:
                total = k[:, None] * limiter.gain_from_hold(hold * k[:, None], ceiling, release)
                est = loudness_from_power(power * total * total, sr)
            rendered.update(gain=g_db.clone(), total=total, estimate=est)
            return total

        def estimate(g_db: torch.Tensor) -> tuple[torch.Tensor, None]:
            limit(g_db)
            return rendered["estimate"], None

        def render(g_db: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            total = limit(g_db)
            if fused and y.shape[-1] >= 4 * step:
                out, energy = gain_and_loudness_energy(y, total, k_weighting_coefficients(sr), step)
                out_level = loudness_from_subblocks(energy, power)
            else:
                out = y * total[:, None, :]
                out_level = loudness_from_power(weighted_power(out, sr), sr)
            rendered.update(out=out, level=out_level)
            return out_level, first.slope

        # estimates aim at half the tolerance, so the exact render usually lands inside it
        first = run_search(GainSearch(target, gain_db, LIMITER_HEADROOM_DB, 0.5 * LOUDNESS_TOLERANCE_LU),
                           estimate, MAX_LOUDNESS_PASSES)
        if estimate_only:
            return first
        exact = GainSearch(target, first.rendered_gain, first.max_gain - first.rendered_gain)
        exact.out_of_reach = first.out_of_reach.clone()
        run_search(exact, render, MAX_EXACT_PASSES)
        return exact.rendered_gain.to(level.dtype), rendered["total"], rendered["out"], rendered["level"]


def _per_item(value: float | torch.Tensor | None, x: torch.Tensor, name: str, allow_nan: bool) -> torch.Tensor | None:
    """None, a number or a (batch,) tensor -> None or a (batch,) tensor on x's device and dtype."""
    if value is None:
        return None
    t = torch.as_tensor(value, dtype=x.dtype, device=x.device).detach()
    if t.dim() == 0:
        t = t.expand(x.shape[0])
    if t.shape != (x.shape[0],):
        raise ValueError(f"{name} must be None, a number or one value per item ({x.shape[0]},), got shape {tuple(t.shape)}")
    bad = torch.isinf(t) if allow_nan else ~torch.isfinite(t)
    if bool(bad.any()):
        raise ValueError(f"{name} must be finite{' (NaN = none for that item)' if allow_nan else ''}, got {t.tolist()}")
    return t.contiguous()
