"""The tonal-balance path (model/tonal.py): its least-squares fit against independently
computed shelf responses, its sign and size inside the network, its limits, and its
round trip through a checkpoint."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.signal import freqz

from model import MasteringModel, load_checkpoint, save_checkpoint
from model.tonal import GAIN_SECTIONS, check_config, mel_centres_hz, tonal_matrix

torch.set_num_threads(1)
SR = 44100
FEATURES = {"sample_rate_hz": SR, "n_mels": 64, "f_min": 30.0, "f_max": 16000.0}


def _rbj_shelf_db(kind: str, f0: float, gain_db: float, freq_hz: np.ndarray) -> np.ndarray:
    """Audio-EQ-cookbook shelf (S = 1) written out here, evaluated with scipy.signal.freqz."""
    a_ = 10 ** (gain_db / 40)
    w0 = 2 * math.pi * f0 / SR
    alpha = math.sin(w0) / 2 * math.sqrt(2)
    c, s = math.cos(w0), 2 * math.sqrt(a_) * alpha
    sign = 1 if kind == "low" else -1
    b = [a_ * ((a_ + 1) - sign * (a_ - 1) * c + s), sign * 2 * a_ * ((a_ - 1) - sign * (a_ + 1) * c),
         a_ * ((a_ + 1) - sign * (a_ - 1) * c - s)]
    a = [(a_ + 1) + sign * (a_ - 1) * c + s, -sign * 2 * ((a_ - 1) + sign * (a_ + 1) * c),
         (a_ + 1) + sign * (a_ - 1) * c - s]
    _, h = freqz(b, a, worN=freq_hz, fs=SR)
    return 20 * np.log10(np.abs(h))


def _gains_db(matrix: torch.Tensor, names: list[str], dev_db: np.ndarray) -> dict[str, float]:
    dp = matrix @ torch.from_numpy(dev_db / 20.0)
    return {n: float(dp[names.index(f"eq.{n}.gain_db")]) * 12.0 for n in GAIN_SECTIONS}


@pytest.fixture(scope="module")
def names() -> list[str]:
    from dsp import MasteringChain

    return list(MasteringChain(SR).param_names)


@pytest.mark.parametrize("kind,f0,section", [("low", math.sqrt(40 * 160), "low_shelf"),
                                             ("high", math.sqrt(5000 * 14000), "high_shelf")])
def test_fit_cancels_a_shelf_at_the_sections_own_frequency(names, kind, f0, section):
    """A mix 4 dB too heavy in one shelf's region (scipy's response of an RBJ shelf at that
    section's nominal frequency) gets that shelf at about -4 dB from a full-strength,
    lightly regularised fit, and the other sections stay near 0 dB."""
    m = tonal_matrix(FEATURES, names, SR, {"strength": 1.0, "ridge": 1e-4})
    centres = mel_centres_hz(64, 30.0, 16000.0).numpy()
    gains = _gains_db(m, names, _rbj_shelf_db(kind, f0, 4.0, centres))
    assert gains[section] == pytest.approx(-4.0, abs=0.25), gains
    others = [abs(g) for n, g in gains.items() if n != section]
    assert max(others) < 0.5, gains


def test_fit_follows_strength_and_ignores_level(names):
    centres = mel_centres_hz(64, 30.0, 16000.0).numpy()
    dev = _rbj_shelf_db("high", 6000.0, -5.0, centres)
    full = _gains_db(tonal_matrix(FEATURES, names, SR, {"strength": 1.0}), names, dev)
    half = _gains_db(tonal_matrix(FEATURES, names, SR, {"strength": 0.5}), names, dev)
    shifted = _gains_db(tonal_matrix(FEATURES, names, SR, {"strength": 1.0}), names, dev + 7.0)
    assert full["high_shelf"] > 2.5                       # a dull mix gets a treble boost
    for n in GAIN_SECTIONS:
        assert half[n] == pytest.approx(0.5 * full[n], abs=1e-9)
        assert shifted[n] == pytest.approx(full[n], abs=1e-9)   # a level offset is no tonal error
    assert not tonal_matrix(FEATURES, names, SR, {"strength": 0.0}).any()


def test_network_path_has_the_right_sign_size_and_limits():
    torch.manual_seed(0)
    cfg = {"strength": 0.8, "clip_db": 10.0, "max_db": 4.0}
    model = MasteringModel(SR, network={"hidden": [16], "cond_dim": 0, "n_levels": 2}, tonal=cfg).eval()
    plain = MasteringModel(SR, network={"hidden": [16], "cond_dim": 0, "n_levels": 2}).eval()
    plain.load_state_dict(model.state_dict())
    names = model.param_names
    i = names.index("eq.low_shelf.gain_db")
    centres = mel_centres_hz(model.features.n_mels, model.features.f_min, model.features.f_max).numpy()
    base = torch.zeros(1, model.feature_dim)
    with torch.no_grad():
        p0 = plain.network(base)[0, i]
        for gain_db, expect in ((3.0, -1), (-3.0, 1)):
            f = base.clone()
            f[0, :64] = torch.from_numpy(_rbj_shelf_db("low", 80.0, gain_db, centres) / 20.0).float()
            move_db = float(model.network(f)[0, i] - p0) * 12.0
            assert expect * move_db > 0.8 * 3.0 * 0.8 * 0.8, move_db   # most of strength x error
            if expect < 0:   # far too much bass: the cut is capped, not dropped
                huge = base.clone()
                huge[0, :64] = torch.from_numpy(_rbj_shelf_db("low", 80.0, 30.0, centres) / 20.0).float()
                capped_db = float(model.network(huge)[0, i] - p0) * 12.0
                assert -4.0 - 1e-4 <= capped_db < -3.0
        # a bass the mix leaves empty (40 dB down) is not filled up: the boost folds back
        # towards none, less than for a 3 dB dip
        empty = base.clone()
        empty[0, :64] = torch.from_numpy(_rbj_shelf_db("low", 80.0, -40.0, centres) / 20.0).float()
        dip = base.clone()
        dip[0, :64] = torch.from_numpy(_rbj_shelf_db("low", 80.0, -3.0, centres) / 20.0).float()
        empty_db = float(model.network(empty)[0, i] - p0) * 12.0
        dip_db = float(model.network(dip)[0, i] - p0) * 12.0
        assert empty_db < 0.5 * dip_db, (empty_db, dip_db)
        # no deviation: no move at all, and frequencies, Qs and dynamics never move
        assert torch.equal(model.network(base), plain.network(base))
        f = base.clone()
        f[0, :64] = torch.from_numpy(_rbj_shelf_db("high", 8000.0, 5.0, centres) / 20.0).float()
        moved = (model.network(f) - plain.network(f)).abs()[0] > 1e-6
        assert {names[j] for j in torch.nonzero(moved).flatten().tolist()} <= {f"eq.{n}.gain_db" for n in GAIN_SECTIONS}


def test_tonal_config_round_trips_through_a_checkpoint(tmp_path):
    torch.manual_seed(1)
    model = MasteringModel(SR, network={"hidden": [16], "cond_dim": 0, "n_levels": 2},
                           tonal={"strength": 0.6}).eval()
    model.network.set_feature_stats(torch.randn(model.feature_dim), torch.rand(model.feature_dim) + 0.5)
    loaded = load_checkpoint(save_checkpoint(tmp_path / "m", model, {"step": 1}))
    assert loaded.config["tonal"] == check_config({"strength": 0.6})
    x = 0.1 * torch.randn(1, 2, SR * 2, generator=torch.Generator().manual_seed(2))
    assert torch.equal(loaded.predict(x, SR), model.predict(x, SR))


def test_target_sets_the_balance_that_gets_no_move():
    """With target_db, a mix whose balance equals the target gets no EQ move, and one with
    more bass than the target gets a low-shelf cut, whatever feature_mean says."""
    torch.manual_seed(3)
    net = {"hidden": [16], "cond_dim": 0, "n_levels": 2}
    centres = mel_centres_hz(64, 30.0, 16000.0).numpy()
    target_db = _rbj_shelf_db("low", 80.0, 6.0, centres) - 3.0 * np.log2(centres / 1000.0)
    model = MasteringModel(SR, network=net, tonal={"strength": 0.8, "target_db": target_db.tolist()}).eval()
    plain = MasteringModel(SR, network=net).eval()
    plain.load_state_dict(model.state_dict())
    model.network.set_feature_stats(torch.randn(model.feature_dim), torch.rand(model.feature_dim) + 0.5)
    plain.network.set_feature_stats(model.network.feature_mean, model.network.feature_std)
    i = model.param_names.index("eq.low_shelf.gain_db")
    on_target = torch.zeros(1, model.feature_dim)
    on_target[0, :64] = torch.from_numpy(target_db / 20.0).float()
    more_bass = on_target.clone()
    more_bass[0, :64] += torch.from_numpy(_rbj_shelf_db("low", 80.0, 4.0, centres) / 20.0).float()
    with torch.no_grad():
        assert torch.allclose(model.network(on_target), plain.network(on_target), atol=1e-6)
        cut_db = float(model.network(more_bass)[0, i] - plain.network(more_bass)[0, i]) * 12.0
    assert cut_db < -0.6 * 0.8 * 4.0, cut_db   # most of strength x error
    with pytest.raises(ValueError, match="target_db has 3 values"):
        MasteringModel(SR, network=net, tonal={"strength": 0.5, "target_db": [0.0, 1.0, 2.0]})


@pytest.mark.parametrize("bad", [{"strength": 1.5}, {"strength": float("nan")}, {"max_db": 0},
                                 {"colour": 1}, "loud", {"strength": "x"}, {"target_db": "flat"},
                                 {"target_db": [0.0, float("inf")]}, {"target_db": [True]},
                                 {"target_db": []}])
def test_bad_tonal_config_is_refused(bad):
    with pytest.raises(ValueError, match="tonal"):
        check_config(bad)
