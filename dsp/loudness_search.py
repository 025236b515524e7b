"""The loudness-target search: the one way the chain (training) and the pipeline
(inference) find the gain that brings a limited output to its target loudness.

The problem, per item: find the pre-limiter gain g (dB) with L(g) = target, where L is
the integrated loudness of the limited output. L grows with g and is concave (the
limiter flattens it: only the samples it leaves alone get louder), and it may saturate
below the target under a ceiling. :class:`GainSearch` is an ask/tell root finder over a
batch of items: the caller renders at ``search.gain``, measures the rendered output, and
reports the levels with :meth:`GainSearch.tell`. Until the root is bracketed, a step
divides the error by a slope estimate (the caller's hint, e.g. the fraction of output
energy the limiter leaves alone, or the secant when smaller); once bracketed, the Illinois
variant of regula falsi. Items within :data:`LOUDNESS_TOLERANCE_LU` stop moving, so items
of a batch never affect each other.

The search never reports a level it has not measured: ``rendered_gain`` and
``rendered_level`` are those of the last render, ``best_gain``/``best_level``/``best_pass``
those of the render closest to the target, and a step computed after the last render is
only ever used by rendering it (:func:`run_search`).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

LOUDNESS_TOLERANCE_LU = 0.1  # |output - target| accepted, training and inference alike
MAX_STEP_DB = 6.0  # largest step before the root is bracketed
MIN_SLOPE = 0.05  # dL/dg below this counts as 0.05 for a step (and as saturation with the secant)
SATURATED_SLOPE = 0.02  # secant over >= 1 dB below this: more gain no longer makes it louder


def _per_item(value: float | Tensor, like: Tensor) -> Tensor:
    t = torch.as_tensor(value, dtype=torch.float64, device=like.device)
    return t.expand(like.shape).clone() if t.dim() == 0 else t.to(torch.float64).clone()


class GainSearch:
    """Batched root finder for the normalization gain (dB) of a limited output.

    ``target`` and ``first_gain``: numbers or (batch,) tensors (a NaN target: the item has
    no target and never moves); ``max_extra_db``: how far above ``first_gain`` the gain
    may go. State is float64 (batch,) tensors on ``first_gain``'s device.
    """

    def __init__(self, target: float | Tensor, first_gain: float | Tensor, max_extra_db: float | Tensor,
                 tolerance: float = LOUDNESS_TOLERANCE_LU) -> None:
        g0 = torch.as_tensor(first_gain, dtype=torch.float64)
        g0 = g0.reshape(1) if g0.dim() == 0 else g0
        self.gain = _per_item(g0, g0)
        self.target = _per_item(target, g0)
        self.max_gain = self.gain + _per_item(max_extra_db, self.gain)
        self.tolerance = float(tolerance)
        nan = torch.full_like(self.gain, float("nan"))
        self.lo_gain, self.lo_err = nan.clone(), nan.clone()  # a point below the target
        self.hi_gain, self.hi_err = nan.clone(), nan.clone()  # a point at or above it
        self.kept = torch.zeros_like(self.gain, dtype=torch.int8)  # end kept last: 1 lo, 2 hi
        self.last_gain, self.last_level = nan.clone(), nan.clone()
        self.slope = torch.ones_like(self.gain)  # the slope the last step used
        self.done = ~torch.isfinite(self.target)  # within tolerance (or nothing to reach)
        self.out_of_reach = torch.zeros_like(self.done)
        self.rendered_gain, self.rendered_level = self.gain.clone(), nan.clone()
        self.best_gain, self.best_level = self.gain.clone(), nan.clone()
        self.best_pass = torch.zeros_like(self.gain, dtype=torch.long)
        self.passes = 0

    @property
    def active(self) -> Tensor:
        """Items still moving: (batch,) bool."""
        return ~(self.done | self.out_of_reach)

    def error(self, level: Tensor) -> Tensor:
        """level - target, 0 for items without a target."""
        return torch.where(torch.isfinite(self.target), level - torch.nan_to_num(self.target), torch.zeros_like(level))

    def tell(self, level: float | Tensor, slope: float | Tensor | None = None) -> None:
        """Report the loudness (batch,) of the output rendered at ``self.gain``; ``slope``
        (batch,), optional: an estimate of dL/dg there (default 1, a plain gain). Moves
        ``self.gain`` of the items still outside the tolerance."""
        level = _per_item(level, self.gain)
        hint = torch.ones_like(level) if slope is None else _per_item(slope, self.gain)
        gain, moving = self.gain, self.active
        self.passes += 1
        self.rendered_gain, self.rendered_level = gain.clone(), level.clone()
        f = self.error(level)
        closer = moving & ~(f.abs() >= (self.best_level - torch.nan_to_num(self.target)).abs())
        self.best_gain = torch.where(closer, gain, self.best_gain)
        self.best_level = torch.where(closer, level, self.best_level)
        self.best_pass = torch.where(closer, torch.full_like(self.best_pass, self.passes - 1), self.best_pass)
        within = moving & (f.abs() <= self.tolerance)
        self.done = self.done | within
        moving = moving & ~within

        # secant with the previous render: a slope bound, and saturation
        dg = gain - self.last_gain
        has_last = torch.isfinite(dg) & (dg.abs() > 1e-6)
        secant = torch.where(has_last, (level - self.last_level) / torch.where(has_last, dg, torch.ones_like(dg)),
                             torch.full_like(dg, float("nan")))
        saturated = (moving & has_last & torch.isnan(self.hi_gain) & (f < 0)
                     & (self.last_level - torch.nan_to_num(self.target) < 0) & (dg > 1.0) & (secant < SATURATED_SLOPE))
        use_secant = has_last & torch.isfinite(secant) & (secant > 0)
        hint = torch.where(use_secant, torch.minimum(hint, secant), hint)
        self.last_gain = torch.where(moving, gain, self.last_gain)
        self.last_level = torch.where(moving, level, self.last_level)

        # bracket: the highest gain below the target, the lowest at or above it
        below = moving & (f < 0)
        above = moving & (f >= 0)
        new_lo = below & (torch.isnan(self.lo_gain) | (gain >= self.lo_gain))
        new_hi = above & (torch.isnan(self.hi_gain) | (gain <= self.hi_gain))
        self.lo_gain, self.lo_err = torch.where(new_lo, gain, self.lo_gain), torch.where(new_lo, f, self.lo_err)
        self.hi_gain, self.hi_err = torch.where(new_hi, gain, self.hi_gain), torch.where(new_hi, f, self.hi_err)
        kept = torch.where(below, torch.full_like(self.kept, 2), torch.full_like(self.kept, 1))
        bracketed = moving & torch.isfinite(self.lo_gain) & torch.isfinite(self.hi_gain)
        # Illinois: the same end kept twice in a row, halve its error
        again = bracketed & (kept == self.kept)
        self.hi_err = torch.where(again & (kept == 2), 0.5 * self.hi_err, self.hi_err)
        self.lo_err = torch.where(again & (kept == 1), 0.5 * self.lo_err, self.lo_err)
        self.kept = torch.where(bracketed, kept, self.kept)
        span = self.hi_err - self.lo_err
        falsi = torch.where(span > 0, self.lo_gain - self.lo_err * (self.hi_gain - self.lo_gain)
                            / torch.where(span > 0, span, torch.ones_like(span)),
                            0.5 * (self.lo_gain + self.hi_gain))
        step = (-f / hint.clamp(MIN_SLOPE, 1.0)).clamp(-MAX_STEP_DB, MAX_STEP_DB)
        nxt = torch.where(bracketed, falsi, gain + step)
        self.slope = torch.where(moving & ~bracketed, hint.clamp(MIN_SLOPE, 1.0), self.slope)

        # never above max_gain; already there and still short: out of reach
        capped = nxt > self.max_gain
        stuck = capped & (gain >= self.max_gain - 1e-6)
        nxt = torch.where(capped, self.max_gain, nxt)
        self.out_of_reach = self.out_of_reach | (moving & (saturated | stuck))
        moving = moving & ~(saturated | stuck)
        self.gain = torch.where(moving, nxt, gain)

    def lowered(self, delta_db: float | Tensor) -> None:
        """The limiter's ceiling was lowered by ``delta_db``: L dropped by at most that much,
        so points below the target stay below and those above by more stay above. The
        items search again from their best gain."""
        d = _per_item(delta_db, self.gain)
        self.hi_err = self.hi_err - d
        drop = ~(self.hi_err > 0)
        self.hi_gain = torch.where(drop, torch.full_like(self.hi_gain, float("nan")), self.hi_gain)
        self.hi_err = torch.where(drop, torch.full_like(self.hi_err, float("nan")), self.hi_err)
        self.last_gain = torch.full_like(self.last_gain, float("nan"))
        self.last_level = torch.full_like(self.last_level, float("nan"))
        self.kept = torch.zeros_like(self.kept)
        has_target = torch.isfinite(self.target)
        self.done = ~has_target
        self.out_of_reach = torch.zeros_like(self.out_of_reach)
        self.best_level = torch.full_like(self.best_level, float("nan"))
        self.gain = self.best_gain.clone()


def run_search(search: GainSearch, render: Callable[[Tensor], tuple[Tensor, Tensor | None]],
               max_passes: int) -> GainSearch:
    """Render at ``search.gain`` and tell the search what was measured, until every item is
    within the tolerance, out of reach, or ``max_passes`` renders were made.

    ``render(gain_db (batch,))`` must render the limited output at exactly that gain and
    return (its measured loudness (batch,), a slope hint (batch,) or None). The last call
    is the render at ``search.rendered_gain``; a step computed after it is never used.
    """
    for _ in range(max_passes):
        level, slope = render(search.gain)
        search.tell(level, slope)
        if not bool(search.active.any()):
            break
    return search
