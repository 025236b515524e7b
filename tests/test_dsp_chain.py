"""MasteringChain: API, identity, every parameter matters, loudness target, batch independence."""

from __future__ import annotations

import json
import math

import numpy as np
import pyloudnorm
import pytest
import torch

from dsp import MasteringChain

FS = 44100
STAGE_ORDER = ("input", "eq", "compressor", "saturation", "width", "limiter")


@pytest.fixture(scope="module")
def chain() -> MasteringChain:
    return MasteringChain(sample_rate=FS)


def pyln(y: np.ndarray, fs: float) -> float:
    return float(pyloudnorm.Meter(fs).integrated_loudness(np.asarray(y, dtype=np.float64).T))


def independent_physical(chain: MasteringChain, p: torch.Tensor) -> list[dict[str, float]]:
    """Normalized -> physical from the declared table, mapped here (not by dsp)."""
    out = []
    for row in p.double().tolist():
        item = {}
        for (name, r), u in zip(chain.ranges.items(), row):
            item[name] = r.low * (r.high / r.low) ** u if r.scale == "log" else r.low + u * (r.high - r.low)
        out.append(item)
    return out


def engaged_params(chain: MasteringChain) -> torch.Tensor:
    """A generic non-identity setting: everything mid-range, EQ bands boosted so their
    frequencies and Qs matter, compressor, saturation and limiter all working."""
    p = torch.full((1, chain.num_params), 0.5)
    for i, name in enumerate(chain.param_names):
        if name.startswith("eq.") and name.endswith("gain_db"):
            p[0, i] = 0.75  # +6 dB
    return p


# ------------------------------------------------------------------ API
def test_param_names_layout(chain):
    names = chain.param_names
    assert len(names) == len(set(names)) == chain.num_params
    for required in ("input.gain_db", "eq.low_shelf.gain_db", "eq.highpass.cutoff_hz", "eq.highpass.mix",
                     "eq.peak1.center_hz", "eq.peak4.q", "eq.high_shelf.gain_db", "compressor.threshold_db",
                     "compressor.ratio", "compressor.knee_db", "compressor.attack_ms", "compressor.release_ms",
                     "compressor.makeup_db", "saturation.drive_db", "saturation.mix", "width.width", "limiter.release_ms"):
        assert required in names
    stages = [n.split(".")[0] for n in names]
    assert [s for i, s in enumerate(stages) if i == 0 or stages[i - 1] != s] == list(STAGE_ORDER)  # contiguous, in order
    eq_sections = [n.split(".")[1] for n in names if n.startswith("eq.")]
    order = [s for i, s in enumerate(eq_sections) if i == 0 or eq_sections[i - 1] != s]
    assert order == ["highpass", "low_shelf", "peak1", "peak2", "peak3", "peak4", "high_shelf"]


def test_ranges_declare_units_and_log_scales(chain):
    assert list(chain.ranges) == chain.param_names
    for name, r in chain.ranges.items():
        assert r.high > r.low and isinstance(r.unit, str)
        leaf = name.rsplit(".", 1)[1]
        if leaf.endswith("_hz") or leaf.endswith("_ms") or leaf in ("ratio", "q"):
            assert r.scale == "log", name
            assert r.low > 0
        if leaf.endswith("_db"):
            assert r.scale == "lin" and r.unit == "dB", name
        if leaf.endswith("_hz"):
            assert r.unit == "Hz" and r.high <= 20000
        if leaf.endswith("_ms"):
            assert r.unit == "ms"


def test_range_table_is_json_ready(chain):
    table = chain.range_table()
    again = json.loads(json.dumps(table))
    assert again == table
    assert [row["name"] for row in table] == chain.param_names
    for row in table:
        r = chain.ranges[row["name"]]
        assert (row["low"], row["high"], row["scale"], row["unit"]) == (r.low, r.high, r.scale, r.unit)


def test_denormalize_matches_declared_mapping_and_round_trips(chain):
    g = torch.Generator().manual_seed(0)
    p = torch.rand(4, chain.num_params, generator=g)
    p[0] = 0.0
    p[1] = 1.0
    phys = chain.denormalize(p)
    want = independent_physical(chain, p)
    assert len(phys) == 4
    for got_item, want_item in zip(phys, want):
        assert list(got_item) == chain.param_names
        for name in chain.param_names:
            assert got_item[name] == pytest.approx(want_item[name], rel=1e-6, abs=1e-6)
    back = chain.normalize(phys)
    assert back.shape == p.shape and back.dtype == torch.float32
    torch.testing.assert_close(back, p, rtol=0, atol=1e-5)


def test_normalize_refuses_bad_settings(chain):
    good = chain.denormalize(torch.full((1, chain.num_params), 0.3))[0]
    unknown = dict(good, **{"eq.peak9.gain_db": 1.0})
    missing = {k: v for k, v in good.items() if k != "compressor.ratio"}
    with pytest.raises(ValueError, match="eq.peak9.gain_db"):
        chain.normalize([unknown])
    with pytest.raises(ValueError, match="compressor.ratio"):
        chain.normalize([missing])
    for name, bad in (("eq.low_shelf.gain_db", 13.0), ("compressor.attack_ms", 0.01), ("eq.highpass.cutoff_hz", 5.0),
                      ("width.width", 2.5), ("saturation.mix", float("nan"))):
        with pytest.raises(ValueError, match=name.replace(".", r"\.")):
            chain.normalize([dict(good, **{name: bad})])
    with pytest.raises(ValueError):
        chain.normalize(good)  # a bare dict, not a list of them


def test_identity_params_shape_and_values(chain):
    ip = chain.identity_params(3)
    assert ip.shape == (3, chain.num_params)
    assert ((ip >= 0) & (ip <= 1)).all()
    phys = chain.denormalize(ip)[0]
    assert phys["input.gain_db"] == pytest.approx(0.0, abs=1e-5)
    assert phys["compressor.ratio"] == pytest.approx(1.0, abs=1e-5)
    assert phys["saturation.mix"] == pytest.approx(0.0, abs=1e-6)
    assert phys["width.width"] == pytest.approx(1.0, abs=1e-6)
    assert phys["eq.highpass.mix"] == pytest.approx(0.0, abs=1e-6)


# ------------------------------------------------------------------ identity
@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("n", [1, 37, 1000, 44100])
def test_identity_params_leave_audio_unchanged(chain, channels, n, make_music, ref_true_peak_db):
    if n >= 1000:
        x = make_music(FS, n / FS, channels=channels, seed=n % 7)
    else:
        x = 0.4 * np.random.default_rng(n).standard_normal((channels, n))
    x *= 10 ** ((-3.0 - ref_true_peak_db(x)) / 20)  # true peak -3 dBTP
    xt = torch.from_numpy(x).float()[None].repeat(2, 1, 1)
    with torch.no_grad():
        y_off = chain(xt, chain.identity_params(2), ceiling_dbtp=None)
        y_lim = chain(xt, chain.identity_params(2), ceiling_dbtp=-1.0)
    assert y_off.shape == xt.shape
    assert (y_off - xt).abs().max() < 1e-4
    assert (y_lim - xt).abs().max() < 1e-4


# ------------------------------------------------------------------ every parameter matters
@pytest.fixture(scope="module")
def rich_stereo(make_music) -> torch.Tensor:
    """Stereo music-like signal with sub-bass to air and a dynamic break, plus a side component."""
    x = make_music(FS, 1.0, channels=2, seed=5)
    rng = np.random.default_rng(5)
    side = 0.03 * rng.standard_normal(x.shape[1])
    x = x + np.stack([side, -side])
    return torch.from_numpy(x).float()[None]


def test_every_parameter_changes_the_output(chain, rich_stereo):
    base = engaged_params(chain)
    with torch.no_grad():
        ref = chain(rich_stereo, base, ceiling_dbtp=-1.0)
        _, trace = chain.render(rich_stereo, base, ceiling_dbtp=-1.0)
    assert float(trace["compressor_gain_db"].min() - chain.denormalize(base)[0]["compressor.makeup_db"]) < -3.0
    assert float(trace["limiter_gain_db"].min()) < -0.3
    dead, changes = [], {}
    for i, name in enumerate(chain.param_names):
        lo, hi = base.clone(), base.clone()
        lo[0, i], hi[0, i] = 0.0, 1.0
        with torch.no_grad():
            y_lo = chain(rich_stereo, lo, ceiling_dbtp=-1.0)
            y_hi = chain(rich_stereo, hi, ceiling_dbtp=-1.0)
        change = float((y_hi - y_lo).norm() / ref.norm())
        changes[name] = change
        if not change > 1e-3:
            dead.append(f"{name}: {change:.2e}")
    assert not dead, "parameters with no audible effect: " + ", ".join(dead)


@pytest.mark.parametrize("corner", ["zeros", "ones", "random0", "random1", "random2"])
@pytest.mark.parametrize("target", [None, -14.0])
def test_gradients_finite_at_range_edges(chain, rich_stereo, corner, target):
    if corner == "zeros":
        p = torch.zeros(1, chain.num_params)
    elif corner == "ones":
        p = torch.ones(1, chain.num_params)
    else:
        g = torch.Generator().manual_seed(int(corner[-1]))
        p = torch.randint(0, 2, (1, chain.num_params), generator=g).float()
    x = rich_stereo[..., : FS // 4].clone().requires_grad_(True)
    p.requires_grad_(True)
    y = chain(x, p, ceiling_dbtp=-1.0, target_lufs=target)
    assert torch.isfinite(y).all()
    (y.square().mean() + y[..., ::97].sum()).backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(p.grad).all()
    assert x.grad.abs().max() > 0


# ------------------------------------------------------------------ loudness target and ceiling
def _target_signal(kind: str, make_music) -> np.ndarray:
    if kind == "music_stereo":
        return make_music(FS, 3.0, channels=2, seed=11)
    if kind == "music_mono":
        return make_music(FS, 3.0, channels=1, seed=12)
    rng = np.random.default_rng(13)  # pink-ish noise with a slow swell
    spec = np.fft.rfft(rng.standard_normal((2, 3 * FS)), axis=-1)
    f = np.fft.rfftfreq(3 * FS, 1 / FS)
    x = np.fft.irfft(spec / np.sqrt(np.maximum(f, 20)), 3 * FS, axis=-1)
    x *= np.linspace(0.3, 1.0, x.shape[1])
    return 0.3 * x / np.abs(x).max()


@pytest.mark.parametrize(
    ("kind", "target"),
    # mono reads 3 dB below the same signal on two channels, so -8 LUFS mono under -1 dBTP is out of reach
    [(k, t) for k in ("music_stereo", "noise") for t in (-8.0, -14.0, -23.0)] + [("music_mono", -11.0), ("music_mono", -14.0),
                                                                               ("music_mono", -23.0)],
)
def test_target_loudness_reached_under_ceiling(chain, kind, target, make_music, ref_true_peak_db):
    x = _target_signal(kind, make_music)
    p = engaged_params(chain)
    for name, value in (("input.gain_db", 1.0), ("compressor.attack_ms", 0.2), ("compressor.makeup_db", 0.0),
                        ("limiter.release_ms", 0.3)):
        p[0, chain.param_names.index(name)] = value
    with torch.no_grad():
        y, trace = chain.render(torch.from_numpy(x).float()[None], p, ceiling_dbtp=-1.0, target_lufs=target)
    y = y[0].double().numpy()
    assert pyln(y, FS) == pytest.approx(target, abs=0.1)
    assert ref_true_peak_db(y) <= -1.0 + 0.1
    assert float(trace["output_lufs"][0]) == pytest.approx(target, abs=0.1)


@pytest.mark.parametrize("target", [-8.0, -20.0])
def test_target_without_ceiling_is_a_pure_gain(chain, target, make_music):
    x = torch.from_numpy(make_music(FS, 2.0, seed=3)).float()[None]
    p = chain.identity_params(1)
    with torch.no_grad():
        y = chain(x, p, ceiling_dbtp=None, target_lufs=target)[0].double().numpy()
    assert pyln(y, FS) == pytest.approx(target, abs=0.1)
    ratio = y[np.abs(x[0].numpy()) > 1e-3] / x[0].numpy()[np.abs(x[0].numpy()) > 1e-3]
    assert np.ptp(ratio) < 1e-4 * np.abs(ratio).max()


def test_render_traces(chain, rich_stereo):
    p = engaged_params(chain)
    with torch.no_grad():
        y, trace = chain.render(rich_stereo, p, ceiling_dbtp=-1.0)
    n = rich_stereo.shape[-1]
    assert trace["compressor_gain_db"].shape == (1, n)
    assert trace["limiter_gain_db"].shape == (1, n)
    assert trace["output_lufs"].shape == (1,)
    assert float(trace["limiter_gain_db"].max()) <= 1e-6
    assert float(trace["output_lufs"][0]) == pytest.approx(pyln(y[0].numpy(), FS), abs=0.1)


# ------------------------------------------------------------------ shapes, dtypes, batch independence
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("channels", [1, 2])
def test_shape_and_dtype_preserved(chain, dtype, channels):
    x = 0.3 * torch.randn(3, channels, 5000, generator=torch.Generator().manual_seed(1), dtype=dtype)
    p = torch.rand(3, chain.num_params, generator=torch.Generator().manual_seed(2), dtype=dtype)
    with torch.no_grad():
        for kwargs in ({}, {"ceiling_dbtp": None}, {"target_lufs": -14.0}):
            y = chain(x, p, **kwargs)
            assert y.shape == x.shape and y.dtype == dtype and torch.isfinite(y).all()


@pytest.mark.parametrize(
    ("kwargs", "mid_params"),
    [({"ceiling_dbtp": None}, False), ({"ceiling_dbtp": -1.0}, False), ({"ceiling_dbtp": -1.0, "target_lufs": -10.0}, False),
     ({"ceiling_dbtp": None, "target_lufs": -16.0}, False), ({"ceiling_dbtp": -1.0, "target_lufs": -8.0}, True)],
    ids=["plain", "ceiling", "ceiling+target", "target", "ceiling+loud_target"],
)
def test_batch_items_are_independent(chain, kwargs, mid_params, make_music):
    """Item 0 renders the same alone as next to a very different item 1."""
    a = torch.from_numpy(make_music(FS, 3.0, seed=0)).float()
    b = torch.from_numpy(0.2 * make_music(FS, 3.0, seed=1)).float()
    if mid_params:
        p = torch.full((2, chain.num_params), 0.5)
    else:
        p = torch.rand(2, chain.num_params, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        both = chain(torch.stack([a, b]), p, **kwargs)
        alone0 = chain(a[None], p[:1], **kwargs)
        alone1 = chain(b[None], p[1:], **kwargs)
    err0 = float((both[0] - alone0[0]).abs().max())
    err1 = float((both[1] - alone1[0]).abs().max())
    assert err0 <= 1e-5 * float(alone0.abs().max()), f"item 0 changes by {err0:.3g} when batched with item 1"
    assert err1 <= 1e-5 * float(alone1.abs().max()), f"item 1 changes by {err1:.3g} when batched with item 0"


def test_chain_works_at_other_sample_rates(make_music, ref_true_peak_db):
    for fs in (22050, 48000, 96000):
        c = MasteringChain(sample_rate=fs)
        x = torch.from_numpy(make_music(fs, 1.0, seed=1)).float()[None]
        with torch.no_grad():
            y = c(x, engaged_params(c), ceiling_dbtp=-1.0)
            assert (c(x, c.identity_params(1), ceiling_dbtp=None) - x).abs().max() < 1e-4
        assert y.shape == x.shape and torch.isfinite(y).all()
        assert ref_true_peak_db(y[0].double().numpy()) <= -1.0 + 0.1
