"""Tests for model/: feature extractor, parameter network, MasteringModel."""

from __future__ import annotations

import math

import pytest
import torch

from model import DESCRIPTORS, FeatureExtractor, MasteringModel, ParameterNetwork, mel_filterbank
from model.network import MAX_PARAMETERS, level_vector

torch.set_num_threads(1)


def _sine(freq: float, seconds: float, sr: int, amp: float = 1.0, channels: int = 1) -> torch.Tensor:
    t = torch.arange(int(seconds * sr), dtype=torch.float64) / sr
    s = (amp * torch.sin(2 * math.pi * freq * t)).float()
    return s.expand(1, channels, -1).contiguous()


def _noise(seconds: float, sr: int, channels: int = 2, batch: int = 1, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 0.1 * torch.randn(batch, channels, int(seconds * sr), generator=g)


@pytest.fixture(scope="module")
def fe() -> FeatureExtractor:
    return FeatureExtractor()


# ------------------------------------------------------------------------------- features
@pytest.mark.parametrize("sr", [8000, 44100, 192000])
@pytest.mark.parametrize("seconds", [0.4, 4.5])
@pytest.mark.parametrize("channels", [1, 2])
def test_feature_shapes(fe, sr, seconds, channels):
    x = _noise(seconds, sr, channels=channels, batch=2)
    f = fe(x, sr)
    assert f.shape == (2, fe.feature_dim)
    assert f.dtype == torch.float32
    assert torch.isfinite(f).all()
    assert len(fe.feature_names) == fe.feature_dim == 4 * fe.n_mels + len(DESCRIPTORS)


def test_feature_dtype_follows_input(fe):
    x = _noise(1.0, 22050, batch=1).double()
    f = fe(x, 22050)
    assert f.dtype == torch.float64 and f.shape == (1, fe.feature_dim)


def test_long_input_cost_is_bounded(fe):
    sr = 8000
    x = torch.zeros(1, 1, 10 * 60 * sr)     # 10 minutes
    x[..., ::7] = 0.05
    segs = fe._segments(x, sr)
    assert segs.shape == (1, fe.n_windows, 1, int(fe.window_seconds * sr))
    assert torch.isfinite(fe(x, sr)).all()


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("sr", [8000, 48000])
def test_silence_is_finite(fe, channels, sr):
    x = torch.zeros(2, channels, int(1.5 * sr))
    a = fe.analyze(x, sr)
    assert torch.isfinite(fe.vectorize(a)).all()
    assert torch.allclose(a["stereo_correlation"], torch.ones(2))
    assert torch.allclose(a["stereo_width"], torch.zeros(2))


def test_sine_descriptors(fe):
    sr = 44100
    a = fe.analyze(_sine(997.0, 5.0, sr, amp=0.5), sr)
    assert abs(a["crest_db"].item() - 3.01) < 0.1
    assert abs(a["sample_peak_dbfs"].item() + 6.02) < 0.1
    assert abs(a["true_peak_dbtp"].item() + 6.02) < 0.3
    assert abs(a["rms_dbfs"].item() + 9.03) < 0.1
    # BS.1770: a mono 997 Hz sine of amplitude A reads 20 log10(A) - 3.01 LUFS
    assert abs(a["loudness_lufs"].item() - (-6.02 - 3.01)) < 0.2
    assert a["loudness_range_lu"].item() < 1.0
    assert abs(a["spectral_centroid_hz"].item() - 997.0) < 50.0


def test_stereo_correlation_and_width(fe):
    sr = 44100
    g = torch.Generator().manual_seed(1)
    mono = 0.1 * torch.randn(1, 1, 3 * sr, generator=g)
    same = fe.analyze(mono.expand(1, 2, -1).contiguous(), sr)
    assert abs(same["stereo_correlation"].item() - 1.0) < 1e-5
    assert same["stereo_width"].item() < 1e-6
    inverted = fe.analyze(torch.cat([mono, -mono], dim=1), sr)
    assert abs(inverted["stereo_correlation"].item() + 1.0) < 1e-5
    assert abs(inverted["stereo_width"].item() - 1.0) < 1e-5
    indep = fe.analyze(_noise(3.0, sr, seed=2), sr)
    assert abs(indep["stereo_correlation"].item()) < 0.05
    assert abs(indep["stereo_width"].item() - 0.5) < 0.03
    for band in ("low", "mid", "high"):
        assert abs(indep[f"stereo_width_{band}"].item() - 0.5) < 0.1
    m = fe.analyze(mono, sr)
    assert m["stereo_correlation"].item() == 1.0 and m["stereo_width"].item() == 0.0


def test_spectral_tilt(fe):
    sr = 44100
    white = fe.analyze(_noise(4.0, sr, channels=1), sr)
    assert abs(white["spectral_tilt_db_per_oct"].item()) < 0.5
    brown = torch.cumsum(_noise(4.0, sr, channels=1), dim=-1)
    brown = brown - brown.mean()
    brown = 0.5 * brown / brown.abs().max()
    b = fe.analyze(brown, sr)
    assert b["spectral_tilt_db_per_oct"].item() < -4.0
    assert b["spectral_centroid_hz"].item() < white["spectral_centroid_hz"].item() / 4


def test_mel_stats_are_level_normalised(fe):
    sr = 44100
    x = _noise(3.0, sr)
    a, b = fe.analyze(x, sr), fe.analyze(0.1 * x, sr)
    assert torch.allclose(a["mel_stats"], b["mel_stats"], atol=1e-3)
    assert abs((a["loudness_lufs"] - b["loudness_lufs"]).item() - 20.0) < 0.1
    assert abs(a["crest_db"].item() - b["crest_db"].item()) < 1e-3


def test_mel_spectrum_is_rate_independent(fe):
    """White noise gives the same (flat) mel profile at any rate: the bank is defined in Hz."""
    profiles = {}
    for sr in (22050, 44100, 96000):
        profiles[sr] = fe.analyze(_noise(3.0, sr, channels=1), sr)["mel_stats"][0, 0]
    low = profiles[22050][:40]   # bands well below 11 kHz
    for sr in (44100, 96000):
        assert (profiles[sr][:40] - low).abs().max() < 1.5


def test_mel_filterbank_rows():
    fb = mel_filterbank(64, 1024, 8000, 30.0, 16000.0)
    assert fb.shape == (64, 513)
    sums = fb.sum(dim=1)
    assert torch.all((sums == 0) | ((sums - 1).abs() < 1e-5))
    assert (sums == 0).any() and (sums[:20] > 0).all()   # above-Nyquist bands are empty


@pytest.mark.parametrize("bad", [
    torch.zeros(2, 100),
    torch.zeros(1, 3, 1000),
    torch.zeros(1, 1, 0),
    torch.zeros(1, 1, 1000, dtype=torch.int32),
    torch.full((1, 1, 1000), float("nan")),
])
def test_feature_input_validation(fe, bad):
    with pytest.raises(ValueError):
        fe(bad, 44100)


def test_feature_rate_validation(fe):
    with pytest.raises(ValueError):
        fe(torch.zeros(1, 1, 1000), 4000)
    with pytest.raises(ValueError):
        fe(torch.zeros(1, 1, 1000), 44100.5)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_features_on_cuda(fe):
    x = _noise(2.0, 48000)
    f_gpu = fe(x.cuda(), 48000)
    assert f_gpu.device.type == "cuda"
    assert torch.allclose(f_gpu.cpu(), fe(x, 48000), atol=1e-3)


# ------------------------------------------------------------------------------- network
def test_default_model_is_small():
    model = MasteringModel()
    assert model.num_parameters() <= MAX_PARAMETERS
    assert model.num_parameters() == sum(p.numel() for p in model.parameters())


def test_network_size_limit_enforced():
    with pytest.raises(ValueError, match="parameters"):
        ParameterNetwork(300, 30, hidden=(2048, 2048))


def test_output_in_unit_interval():
    net = ParameterNetwork(50, 12, cond_dim=8)
    f = 100.0 * torch.randn(16, 50)
    p = net(f, torch.randn(16, 8) * 10)
    assert p.shape == (16, 12)
    assert (p >= 0).all() and (p <= 1).all()


def test_conditioning_changes_output():
    torch.manual_seed(0)
    net = ParameterNetwork(50, 12, cond_dim=8).eval()
    f = torch.randn(4, 50)
    base = net(f)
    assert torch.equal(base, net(f, torch.zeros(4, 8)))
    assert (net(f, torch.randn(4, 8)) - base).abs().max() > 1e-4
    assert torch.equal(net(f, torch.ones(8)), net(f, torch.ones(4, 8)))   # broadcast
    with pytest.raises(ValueError):
        net(f, torch.zeros(4, 7))
    with pytest.raises(ValueError):
        net(torch.randn(4, 49))


def test_init_output_to():
    torch.manual_seed(0)
    net = ParameterNetwork(50, 6, cond_dim=4).eval()
    p0 = torch.tensor([0.5, 0.0, 1.0, 0.25, 0.9, 0.1])
    net.init_output_to(p0)
    p = net(torch.randn(32, 50), torch.randn(32, 4))
    assert (p - p0.clamp(1e-4, 1 - 1e-4)).abs().max() < 0.02
    with pytest.raises(ValueError):
        net.init_output_to(torch.full((6,), 1.5))


def test_feature_stats_buffers():
    net = ParameterNetwork(10, 3, cond_dim=0)
    net.set_feature_stats(torch.arange(10.0), torch.full((10,), 2.0))
    assert "feature_mean" in net.state_dict() and "feature_std" in net.state_dict()
    with pytest.raises(ValueError):
        net.set_feature_stats(torch.zeros(9), torch.ones(9))
    with pytest.raises(ValueError):
        net(torch.randn(2, 10), torch.ones(2, 4))


# ------------------------------------------------------------------------------- model
def test_mastering_model_predict_and_config():
    torch.manual_seed(0)
    model = MasteringModel(network={"hidden": [64, 32], "cond_dim": 16})
    model.train()
    x = _noise(1.0, 44100, batch=2)
    p = model.predict(x, 44100)
    assert p.shape == (2, model.num_params) and (p >= 0).all() and (p <= 1).all()
    assert model.training   # predict restores the mode
    assert not p.requires_grad
    rebuilt = MasteringModel.from_config(model.config)
    assert rebuilt.config == model.config
    rebuilt.load_state_dict(model.state_dict())
    assert torch.equal(rebuilt.predict(x, 44100), p)
    cond = torch.randn(2, 16)
    assert not torch.equal(model.predict(x, 44100, cond), p)
    with pytest.raises(ValueError):
        model.predict(x, cond)   # conditioning passed where the rate goes


def test_mastering_model_trains():
    model = MasteringModel(network={"hidden": [32], "cond_dim": 4})
    x = _noise(0.5, 22050, batch=2)
    loss = model(x, 22050, torch.randn(2, 4)).square().mean()
    loss.backward()
    grads = [p.grad for p in model.network.parameters()]
    assert all(g is not None for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


def test_mastering_model_matches_chain():
    from dsp import MasteringChain

    chain = MasteringChain(sample_rate=44100)
    model = MasteringModel(chain_sample_rate=44100)
    assert model.num_params == chain.num_params
    assert model.param_names == list(chain.param_names)
    model.network.init_output_to(chain.identity_params(1))
    p = model.predict(_noise(1.0, 44100))
    assert (p - chain.identity_params(1)).abs().max() < 0.05


def test_small_network_overfits_a_handful_of_pairs():
    """Learning happens: a tiny model fed de-mastered pairs through the chain (audio +
    parameter loss) more than halves its loss on those same pairs."""
    from dsp import MasteringChain
    from train.demaster import Demasterer, inverse_param_target
    from train.losses import MasteringLoss
    from train.synth import GeneratedSource

    torch.manual_seed(0)
    sr = 22050
    src = GeneratedSource(sr, seconds=1.0, seed=11)
    chain = MasteringChain(sr)
    dm = Demasterer(sr, probs={"unlimit": 0, "expand": 0, "transient": 0, "squash": 0, "resonance": 0, "eq": 0.9})
    masters = torch.stack([src.excerpt(i) for i in range(4)])
    pairs = [dm(masters[i], 100 + i) for i in range(4)]
    degraded = torch.stack([p[0] for p in pairs])
    targets = [inverse_param_target(chain, p[1]) for p in pairs]
    p_tgt = torch.stack([t for t, _ in targets])
    mask = torch.stack([m for _, m in targets])
    model = MasteringModel(chain_sample_rate=sr,
                           features={"n_mels": 16, "n_windows": 1, "window_seconds": 1.0, "f_max": 8000.0},
                           network={"hidden": [64, 64], "dropout": 0.0, "n_levels": 2})
    feats = model.extract(degraded, sr)
    model.network.set_feature_stats(feats.mean(0), feats.std(0))
    model.network.init_output_to(chain.identity_params(1).squeeze(0).clamp(0.02, 0.98))
    loss_fn = MasteringLoss(sr, param_weight=4.0, loudness_weight=0.0)
    opt = torch.optim.Adam(model.network.parameters(), lr=5e-3)
    target_lufs = torch.full((4,), -16.0)

    def loss_now() -> torch.Tensor:
        p = model.network(feats, None, level_vector(target_lufs, -1.0, 4))
        y = chain(degraded, p, ceiling_dbtp=-1.0, target_lufs=target_lufs)
        return loss_fn(y, masters, p, p_tgt, mask)[0]

    first = float(loss_now())
    for _ in range(100):
        loss = loss_now()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss_now()) < 0.5 * first


def test_level_inputs_change_the_prediction():
    """The loudness target and the ceiling are network inputs: different targets give
    different settings once the level weights are non-zero."""
    net = ParameterNetwork(feature_dim=8, num_params=5, cond_dim=0, hidden=[16], n_levels=2)
    with torch.no_grad():
        net.linears[0].weight[:, -2:].normal_()
    f = torch.randn(1, 8)
    club = net.eval()(f, None, level_vector(-8.0, -1.0, 1))
    quiet = net(f, None, level_vector(-16.0, -1.0, 1))
    assert not torch.allclose(club, quiet)
    with pytest.raises(ValueError):
        ParameterNetwork(feature_dim=8, num_params=5, n_levels=3)
