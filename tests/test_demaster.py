"""De-mastering augmenter: reproducible, inside its documented ranges, every stage audible,
and the linear stages undone exactly (in magnitude) by the chain's inverse settings."""

from __future__ import annotations


import pytest
import torch

from train.demaster import MAX_BANDS, PEAK_GUARD_DBFS, RANGES, Demasterer, DemasterParams, inverse_param_target
from train.metrics import crest_factor_db, loudness_lufs, mrstft, peak_db, spectral_centroid
from train.synth import GeneratedSource

SR = 22050


@pytest.fixture(scope="module")
def master() -> torch.Tensor:
    return GeneratedSource(SR, seconds=2.0, seed=3).excerpt(0)


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


def test_ranges_and_probabilities_respected() -> None:
    d = Demasterer(SR)
    g = torch.Generator().manual_seed(0)
    draws = [d.sample(g) for _ in range(400)]

    def within(v: float, name: str) -> bool:
        lo, hi = RANGES[name]
        return lo - 1e-9 <= v <= hi + 1e-9

    for p in draws:
        assert within(p.level_drop_db, "level_drop_db")
        assert p.tilt_db == 0.0 or within(p.tilt_db, "tilt_db")
        assert p.width == 1.0 or within(p.width, "width")
        assert not p.unlimit or (within(p.unlimit_depth_db, "unlimit_depth_db") and within(p.unlimit_slope, "unlimit_slope"))
        assert not p.expand or within(p.expand_ratio, "expand_ratio")
        assert not p.transient or within(p.transient_amount, "transient_amount")
        assert len(p.bands) <= MAX_BANDS
        for f, gain, q in p.bands:
            assert within(f, "band_freq_hz") and f < 0.45 * SR and within(gain, "band_gain_db") and within(q, "band_q")
    rate = sum(p.expand for p in draws) / len(draws)
    assert 0.5 < rate < 0.7  # probability 0.6
    off = Demasterer(SR, probs={"unlimit": 0, "expand": 0, "transient": 0})
    assert all(off.sample(g).invertible for _ in range(50))
    with pytest.raises(ValueError):
        Demasterer(SR, probs={"nonsense": 0.5})


def _only(**kw) -> DemasterParams:
    return DemasterParams(level_drop_db=0.0, **kw)


def test_each_stage_changes_the_audio(master: torch.Tensor) -> None:
    d = Demasterer(SR)
    x = master[None]
    ref_crest = float(crest_factor_db(x))
    ref_centroid = float(spectral_centroid(x, SR))
    ref_lufs = float(loudness_lufs(x, SR))

    # level drop: loudness falls by the drop (no peak guard needed at -8 dB)
    y = d.apply(x, DemasterParams(level_drop_db=8.0))
    assert float(loudness_lufs(y, SR)) == pytest.approx(ref_lufs - 8.0, abs=0.1)
    # tilt / bands: spectral balance moves
    assert float(spectral_centroid(d.apply(x, _only(tilt_db=6.0)), SR)) > ref_centroid * 1.1
    assert float(spectral_centroid(d.apply(x, _only(tilt_db=-6.0)), SR)) < ref_centroid * 0.9
    assert float(mrstft(d.apply(x, _only(bands=[(1000.0, 6.0, 1.0)])), x)) > 0.05
    # dynamics: crest factor grows when compression / limiting is undone
    for params in (_only(expand=True, expand_ratio=1.5), _only(transient=True, transient_amount=0.6),
                   _only(unlimit=True, unlimit_depth_db=4.0, unlimit_slope=1.0)):
        assert float(crest_factor_db(d.apply(x, params))) > ref_crest + 0.3, params
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


def test_known_inverse_restores_the_master(master: torch.Tensor) -> None:
    from dsp import MasteringChain

    chain = MasteringChain(SR)
    d = Demasterer(SR)
    params = DemasterParams(tilt_db=5.0, bands=[(300.0, -5.0, 1.5), (2500.0, 4.0, 0.8)], width=0.7, level_drop_db=9.0)
    x = master[None]
    y = d.apply(x, params)
    target, mask = inverse_param_target(chain, params, level_normalized=True)
    assert mask.any() and torch.isfinite(target[mask]).all()
    p = chain.identity_params(1)
    p[0, mask] = target[mask]
    restored = chain(y, p, ceiling_dbtp=None, target_lufs=float(loudness_lufs(x, SR)))
    before, after = float(mrstft(y, x)), float(mrstft(restored, x))
    assert after < 0.1 * before and after < 0.1
    # a dynamics stage has no exact inverse: fully masked
    dyn = DemasterParams(expand=True, expand_ratio=1.2)
    assert not inverse_param_target(chain, dyn, True)[1].any()
