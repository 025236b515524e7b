"""De-mastering augmenter: reproducible, inside its documented ranges, every stage audible,
and the linear stages undone exactly by the chain at the recorded inverse settings."""

from __future__ import annotations

import math

import pytest
import torch

from dsp import MasteringChain
from train.demaster import (
    EQ_REGIONS,
    PEAK_GUARD_DBFS,
    PROBS,
    RANGES,
    Demasterer,
    DemasterParams,
    inverse_param_target,
    inverse_settings,
)
from train.metrics import crest_factor_db, loudness_lufs, mrstft, peak_db
from train.synth import GeneratedSource

SR = 22050
ONLY_LINEAR = {"unlimit": 0, "expand": 0, "transient": 0, "squash": 0, "resonance": 0}


@pytest.fixture(scope="module")
def master() -> torch.Tensor:
    return GeneratedSource(SR, seconds=1.0, seed=3).excerpt(0)


@pytest.fixture(scope="module")
def chain() -> MasteringChain:
    return MasteringChain(SR)


def region_range(chain: MasteringChain, name: str) -> tuple[float, float]:
    """The chain's declared frequency range of an EQ section."""
    (r,) = [r for k, r in chain.ranges.items() if k.startswith(f"eq.{name}.") and r.unit == "Hz"]
    return r.low, r.high


def test_same_seed_same_pair_and_different_seed_differs(master: torch.Tensor) -> None:
    d = Demasterer(SR)
    y1, p1 = d(master, 42)
    y2, p2 = d(master, 42)
    assert torch.equal(y1, y2)
    assert p1 == p2
    y3, p3 = d(master, 43)
    assert p3 != p1 and not torch.equal(y1, y3)
    g = torch.Generator().manual_seed(42)
    assert torch.equal(d(master, g)[0], y1)  # a seeded generator is the same as the seed
    # toggling one stage's probability does not shift the other stages' draws
    q1 = Demasterer(SR, probs={"width": 0.0}).sample(torch.Generator().manual_seed(7))
    q2 = Demasterer(SR, probs={"width": 1.0}).sample(torch.Generator().manual_seed(7))
    assert q1.eq == q2.eq and q1.level_drop_db == q2.level_drop_db and q1.unlimit_slope == q2.unlimit_slope


def test_ranges_and_probabilities_respected(chain: MasteringChain) -> None:
    d = Demasterer(SR)
    g = torch.Generator().manual_seed(0)
    draws = [d.sample(g) for _ in range(600)]

    def within(v: float, name: str) -> bool:
        lo, hi = RANGES[name]
        return lo - 1e-9 <= v <= hi + 1e-9

    region_hits = {name: 0 for name, _, _, _ in EQ_REGIONS}
    kinds = {name: kind for name, kind, _, _ in EQ_REGIONS}
    for p in draws:
        assert within(p.level_drop_db, "level_drop_db")
        assert p.width == 1.0 or within(p.width, "width")
        assert not p.unlimit or (within(p.unlimit_depth_db, "unlimit_depth_db") and within(p.unlimit_slope, "unlimit_slope"))
        assert not p.expand or within(p.expand_ratio, "expand_ratio")
        assert not p.transient or within(p.transient_amount, "transient_amount")
        if p.squash:  # over-compression excludes the stages that undo compression
            assert not (p.unlimit or p.expand or p.transient)
            assert within(p.squash_ratio, "squash_ratio") and within(p.squash_offset_db, "squash_offset_db")
        names = [e[0] for e in p.eq]
        assert len(names) == len(set(names))  # at most one error per region
        for name, f, gain, q in p.eq:
            region_hits[name] += 1
            lo, hi = region_range(chain, name)  # the chain's own region for that section
            assert lo <= f <= min(hi, 0.45 * SR) and within(gain, "eq_gain_db")
            if kinds[name] == "bell":
                assert within(q, "eq_q")
            else:
                assert q == pytest.approx(1 / math.sqrt(2))
        if p.resonance is not None:
            f, gain, q = p.resonance
            assert within(f, "resonance_freq_hz") and within(gain, "resonance_gain_db") and within(q, "resonance_q")
    n = len(draws)
    rate = sum(p.expand for p in draws) / n
    want = PROBS["expand"] * (1 - PROBS["squash"])
    assert abs(rate - want) < 4 * math.sqrt(want * (1 - want) / n)
    for name, lo, hi in ((k, lo, hi) for k, _, lo, hi in EQ_REGIONS):
        if lo < 0.45 * SR:
            want = PROBS["eq"]
            assert abs(region_hits[name] / n - want) < 4 * math.sqrt(want * (1 - want) / n), name
        else:
            assert region_hits[name] == 0, name  # a region above the Nyquist guard never fires
    off = Demasterer(SR, probs=ONLY_LINEAR)
    assert all(off.sample(g).invertible for _ in range(50))
    with pytest.raises(ValueError):
        Demasterer(SR, probs={"nonsense": 0.5})
    with pytest.raises(ValueError):
        Demasterer(SR, probs={"eq": 1.5})


def _only(**kw) -> DemasterParams:
    return DemasterParams(level_drop_db=0.0, **kw)


def band_energy_db(x: torch.Tensor, lo: float, hi: float) -> float:
    spec = torch.fft.rfft(x.double(), dim=-1).abs().square().sum(dim=tuple(range(x.dim() - 1)))
    f = torch.fft.rfftfreq(x.shape[-1], 1 / SR)
    return float(10 * torch.log10(spec[(f >= lo) & (f < hi)].sum()))


def test_each_stage_changes_the_audio(master: torch.Tensor, chain: MasteringChain) -> None:
    d = Demasterer(SR)
    x = master[None]
    ref_crest = float(crest_factor_db(x))
    ref_lufs = float(loudness_lufs(x, SR))

    # level drop: loudness falls by the drop (no peak guard needed at -8 dB)
    y = d.apply(x, DemasterParams(level_drop_db=8.0))
    assert float(loudness_lufs(y, SR)) == pytest.approx(ref_lufs - 8.0, abs=0.1)
    # EQ errors: each region's error lifts that region's energy against a band 3 octaves away
    # (the loudness is renormalized afterwards, so both move)
    for name, kind, lo, hi in EQ_REGIONS:
        hi = min(hi, 0.45 * SR)
        f = math.sqrt(lo * hi)
        q = 1.0 if kind == "bell" else 1 / math.sqrt(2)
        y = d.apply(x, _only(eq=[(name, f, 6.0, q)]))
        far = f * 8 if f * 10 < 0.45 * SR else f / 8

        def lift(a: torch.Tensor, c: float) -> float:
            return band_energy_db(a, c / 1.25, c * 1.25)

        # (at a shelf's cutoff the lift is half its gain)
        assert (lift(y, f) - lift(x, f)) - (lift(y, far) - lift(x, far)) > 2.0, name
    # resonance: a narrow peak
    y = d.apply(x, _only(resonance=(1000.0, 8.0, 8.0)))
    def rise(lo: float, hi: float) -> float:
        return band_energy_db(y, lo, hi) - band_energy_db(x, lo, hi)

    assert rise(980.0, 1020.0) - rise(3000.0, 6000.0) > 5.0
    assert abs(rise(3000.0, 6000.0) - rise(100.0, 400.0)) < 0.3  # away from it, only the loudness renormalization
    # dynamics: crest factor grows when compression / limiting is undone, falls when squashed
    for params in (_only(expand=True, expand_ratio=1.5), _only(transient=True, transient_amount=0.6),
                   _only(unlimit=True, unlimit_depth_db=4.0, unlimit_slope=1.0)):
        assert float(crest_factor_db(d.apply(x, params))) > ref_crest + 0.3, params
    squashed = d.apply(x, _only(squash=True, squash_ratio=5.0, squash_offset_db=0.0))
    assert float(mrstft(squashed, x)) > 0.02
    env = lambda a: a.square().mean(dim=1).unfold(-1, 441, 441).mean(-1).log10()  # noqa: E731  (20 ms energy, log)
    assert float(env(squashed).std()) < float(env(x).std()) - 0.02
    # width: the side/mid energy ratio scales with width^2
    y = d.apply(x, _only(width=0.6))

    def side_ratio(a: torch.Tensor) -> float:
        mid, side = a[:, 0] + a[:, 1], a[:, 0] - a[:, 1]
        return float(side.square().sum() / mid.square().sum())

    assert side_ratio(y) == pytest.approx(0.36 * side_ratio(x), rel=0.02)


def test_peak_guard(master: torch.Tensor) -> None:
    d = Demasterer(SR)
    params = _only(unlimit=True, unlimit_depth_db=6.0, unlimit_slope=1.0)
    y = d.apply(master * 2.0, params)  # hot input: the guard must step in
    assert float(peak_db(y[None])) <= PEAK_GUARD_DBFS + 1e-3
    assert params.guard_db < 0


def restore(chain: MasteringChain, y: torch.Tensor, params: DemasterParams, lufs: float) -> torch.Tensor:
    target, mask = inverse_param_target(chain, params, level_normalized=True)
    assert mask.any() and torch.isfinite(target[mask]).all() and not torch.isfinite(target[~mask]).any()
    p = chain.identity_params(1)
    p[0, mask] = target[mask]
    with torch.no_grad():
        return chain(y.double(), p.double(), ceiling_dbtp=None, target_lufs=lufs)


def test_known_inverse_restores_the_master_exactly(master: torch.Tensor, chain: MasteringChain) -> None:
    """EQ errors within +-6 dB in every region, width and a level drop: the chain at the
    recorded inverse (RBJ sections with -g, 1 / width, the master's loudness as target)
    gives back the master sample for sample (magnitude and phase)."""
    d = Demasterer(SR)
    eq = [(name, math.sqrt(lo * min(hi, 0.45 * SR)) * 1.1, gain, 1.3 if kind == "bell" else 1 / math.sqrt(2))
          for (name, kind, lo, hi), gain in zip(EQ_REGIONS, (5.0, -6.0, 4.5, -3.0, 6.0))]
    params = DemasterParams(eq=eq, width=0.7, level_drop_db=9.0)
    x = master[None].double()
    y = d.apply(x, params)
    restored = restore(chain, y, params, float(loudness_lufs(x, SR)))
    err = float((restored - x).abs().max() / x.abs().max())
    assert err < 1e-4, f"relative error {err:.2e}"
    assert float(mrstft(y.float(), x.float())) > 0.1  # and the degradation was large


@pytest.mark.parametrize("seed", range(3))
def test_random_invertible_draws_are_undone(master: torch.Tensor, chain: MasteringChain, seed: int) -> None:
    """Random draws with only linear stages: exact where every EQ error is within the
    chain's +-6 dB, otherwise (clamped inverse) at least much closer than the degraded mix."""
    d = Demasterer(SR, probs=dict(ONLY_LINEAR, eq=0.8))
    x = master[None].double()
    y, params = d(x, seed)
    assert params.invertible
    restored = restore(chain, y, params, float(loudness_lufs(x, SR)))
    if all(abs(gain) <= 6.0 for _, _, gain, _ in params.eq):
        assert float((restored - x).abs().max() / x.abs().max()) < 1e-4
    else:
        assert float(mrstft(restored.float(), x.float())) < 0.5 * float(mrstft(y.float(), x.float()))


def test_inverse_masks(chain: MasteringChain) -> None:
    """Dynamics stages have no exact inverse: only EQ gains (0 dB) and width (1) are targets;
    over-compression asks for ratios of 1; a region holding the resonance is left out."""
    ranges = chain.ranges
    expand = inverse_settings(DemasterParams(expand=True, expand_ratio=1.2), ranges)
    assert all(v == 0.0 for k, v in expand.items() if k.startswith("eq."))
    assert expand.pop("width.width") == 1.0
    assert all(k.endswith("gain_db") for k in expand) and len(expand) == len(EQ_REGIONS)
    squash = inverse_settings(DemasterParams(squash=True, squash_ratio=3.0), ranges)
    ratios = [k for k in ranges if k.startswith("multiband.") and k.endswith(".ratio")]
    assert ratios and all(squash[k] == 1.0 for k in ratios)
    res = inverse_settings(DemasterParams(resonance=(1000.0, 6.0, 8.0)), ranges)
    held = [name for name, _, lo, hi in EQ_REGIONS if lo <= 1000.0 < hi]
    assert len(held) == 1 and not [k for k in res if k.startswith(f"eq.{held[0]}.")]
    big = inverse_settings(DemasterParams(eq=[(EQ_REGIONS[0][0], 80.0, -8.0, 1 / math.sqrt(2))]), ranges)
    g = ranges[f"eq.{EQ_REGIONS[0][0]}.gain_db"]
    assert big[f"eq.{EQ_REGIONS[0][0]}.gain_db"] == g.high  # an 8 dB error gets the chain's largest boost
    target, mask = inverse_param_target(chain, DemasterParams(width=0.7))
    i = chain.param_names.index("width.width")
    assert mask[i] and float(chain.ranges["width.width"].to_physical(target[i].double())) == pytest.approx(1 / 0.7, rel=1e-6)
