"""Look-ahead brick-wall limiter on the true peak.

Gain computer: the 4x-oversampled envelope gives the largest gain r[n] that keeps
the true peak around sample n under the ceiling; a running minimum over the
look-ahead window, an instant-attack/exponential-release smoother and a moving
average over the same window turn it into a smooth gain G with G[n] <= r[n] at
every sample (each average covers only values that already respect r[n]). The
render is offline, so the look-ahead costs no latency: output and input are aligned.
"""

from __future__ import annotations

import torch

from dsp._ops import moving_average_rows, sliding_max_rows, smooth_rows, true_peak_envelope_linked
from dsp.processor import Processor
from dsp.ranges import ParamRange, ms_to_coef
from dsp.truepeak import interpolation_taps


def limiter_gain(
    x: torch.Tensor, ceiling_dbtp: float | torch.Tensor, release_ms: torch.Tensor, sample_rate: float, lookahead_ms: float = 2.0
) -> torch.Tensor:
    """Linear gain (batch, samples) that holds x (batch, channels, samples) under the ceiling."""
    ceiling = _ceiling_linear(ceiling_dbtp, x)
    env = limiter_envelope(x, ceiling)
    return limiter_gain_from_envelope(env, ceiling, release_ms, sample_rate, lookahead_ms)


def _ceiling_linear(ceiling_dbtp: float | torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    c = torch.pow(10.0, torch.as_tensor(ceiling_dbtp, dtype=x.dtype, device=x.device) / 20.0)
    return c.expand(x.shape[0]).reshape(-1)


def limiter_envelope(x: torch.Tensor, ceiling: torch.Tensor) -> torch.Tensor:
    """Channel-linked true-peak envelope over [n-1, n+1): x (batch, channels, samples) -> (batch, samples).

    Exact wherever it could reach ``ceiling`` (batch,) linear; below it only sample
    peaks are kept, which cannot change the gain (r = 1 there either way).
    """
    return true_peak_envelope_linked(x, interpolation_taps(x.device, x.dtype), ceiling.detach().double())


def lookahead_samples(lookahead_ms: float, sample_rate: float) -> int:
    """Look-ahead length in samples (at least one)."""
    return max(1, int(round(lookahead_ms * 1e-3 * sample_rate)))


def peak_hold(env: torch.Tensor, lookahead_ms: float, sample_rate: float) -> torch.Tensor:
    """Largest envelope value in the look-ahead window [n, n + L]: (batch, samples)."""
    return sliding_max_rows(env, lookahead_samples(lookahead_ms, sample_rate) + 1)


def limiter_gain_from_hold(hold: torch.Tensor, ceiling: torch.Tensor, release_ms: torch.Tensor, sample_rate: float,
                           lookahead_ms: float = 2.0) -> torch.Tensor:
    """Gain from the peak hold (batch, samples) and linear ceiling (batch,) -> (batch, samples).

    min(1, ceiling / hold) equals the running minimum of the per-sample gains, so
    the hold can be computed once and rescaled for any pre-gain.
    """
    b = hold.shape[0]
    g = torch.clamp(ceiling.to(hold.dtype)[:, None] / hold.clamp_min(1e-9), max=1.0)
    a_rel = ms_to_coef(release_ms.to(torch.float64).expand(b), sample_rate)
    g = smooth_rows(g, a_rel, torch.zeros_like(a_rel))
    return moving_average_rows(g, lookahead_samples(lookahead_ms, sample_rate) + 1)


def limiter_gain_from_envelope(env: torch.Tensor, ceiling: torch.Tensor, release_ms: torch.Tensor, sample_rate: float,
                               lookahead_ms: float = 2.0) -> torch.Tensor:
    """Gain computer from an envelope (batch, samples) and linear ceiling (batch,) -> gain (batch, samples)."""
    hold = peak_hold(env, lookahead_ms, sample_rate)
    return limiter_gain_from_hold(hold, ceiling, release_ms, sample_rate, lookahead_ms)


def limit(x: torch.Tensor, ceiling_dbtp: float | torch.Tensor, release_ms: torch.Tensor, sample_rate: float,
          lookahead_ms: float = 2.0) -> torch.Tensor:
    """Limit x (batch, channels, samples) to ``ceiling_dbtp`` (true peak); release_ms (batch,)."""
    return x * limiter_gain(x, ceiling_dbtp, release_ms, sample_rate, lookahead_ms)[:, None, :]


class Limiter(Processor):
    """Normalized-parameter limiter; the ceiling is a render argument, not a parameter."""

    ranges = {"release_ms": ParamRange(10.0, 1000.0, "log", "ms")}

    def __init__(self, sample_rate: float, lookahead_ms: float = 2.0) -> None:
        super().__init__(sample_rate)
        if not lookahead_ms > 0:
            raise ValueError(f"lookahead_ms must be positive, got {lookahead_ms}")
        self.lookahead_ms = float(lookahead_ms)

    def gain(self, x: torch.Tensor, values: dict[str, torch.Tensor], ceiling_dbtp: float | torch.Tensor) -> torch.Tensor:
        """Linear gain trace (batch, samples)."""
        return limiter_gain(x, ceiling_dbtp, values["release_ms"], self.sample_rate, self.lookahead_ms)

    def hold(self, env: torch.Tensor) -> torch.Tensor:
        """Look-ahead peak hold (batch, samples) of an envelope."""
        return peak_hold(env, self.lookahead_ms, self.sample_rate)

    def gain_from_hold(self, hold: torch.Tensor, ceiling: torch.Tensor, release_ms: torch.Tensor) -> torch.Tensor:
        """Linear gain (batch, samples) from a peak hold and linear ceiling (batch,)."""
        return limiter_gain_from_hold(hold, ceiling, release_ms, self.sample_rate, self.lookahead_ms)

    def forward(self, x: torch.Tensor, p: torch.Tensor, ceiling_dbtp: float = -1.0) -> torch.Tensor:  # type: ignore[override]
        """x: (batch, channels, samples); p: (batch, 1) in [0, 1]."""
        from dsp.ranges import check_audio, check_params

        check_audio(x)
        check_params(p, self.num_params, x.shape[0])
        values = self.denormalize(p.to(x.dtype))
        return x * self.gain(x, values, ceiling_dbtp)[:, None, :]

    def process(self, x: torch.Tensor, values: dict[str, torch.Tensor]) -> torch.Tensor:
        return x * self.gain(x, values, -1.0)[:, None, :]

    def identity_values(self) -> dict[str, float]:
        return {"release_ms": 100.0}
