"""MasteringChain: API, identity, every parameter matters and none is redundant, level
relativity, loudness target, per-item targets and ceilings, batch independence."""

from __future__ import annotations

import json

import numpy as np
import pyloudnorm
import pytest
import torch

from dsp import MasteringChain

FS = 44100
STAGE_ORDER = ("eq", "multiband", "saturation", "width", "limiter")


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
    """A generic non-identity setting: everything mid-range, EQ gains up so their
    frequencies and Qs matter, thresholds low so every band compresses."""
    p = torch.full((1, chain.num_params), 0.5)
    for i, name in enumerate(chain.param_names):
        if name.startswith("eq.") and name.endswith("gain_db"):
            p[0, i] = 0.75  # +3 dB
        if name.endswith("threshold_db"):
            p[0, i] = 0.3
    return p


# ------------------------------------------------------------------ API
def test_param_names_layout(chain):
    names = chain.param_names
    assert len(names) == len(set(names)) == chain.num_params == 28
    assert names == [f"{k}.{n}" for k, stage in chain.stages.items() for n in stage.param_names]
    stages = [n.split(".")[0] for n in names]
    assert [s for i, s in enumerate(stages) if i == 0 or stages[i - 1] != s] == list(STAGE_ORDER)  # contiguous, in order
    # no parameter sets level: that is the loudness normalization's job
    assert not [n for n in names if "makeup" in n or n.startswith("input.") or "drive" in n]


def test_ranges_declare_units_and_log_scales(chain):
    assert list(chain.ranges) == chain.param_names
    for name, r in chain.ranges.items():
        assert r.high > r.low and isinstance(r.unit, str)
        leaf = name.rsplit(".", 1)[1]
        if (leaf.endswith("_hz") and r.low > 0) or leaf.endswith("_ms") or leaf in ("ratio", "q"):
            assert r.scale == "log", name
            assert r.low > 0
        if leaf.endswith("_hz"):
            assert r.unit == "Hz" and r.high <= 20000
            assert r.low > 0 or r.scale == "lin", name  # 0 Hz means off
        if leaf.endswith("_db"):
            assert r.scale == "lin" and r.unit.startswith("dB"), name
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
    unknown = dict(good, **{"eq.nonsense.gain_db": 1.0})
    dropped = chain.param_names[5]
    missing = {k: v for k, v in good.items() if k != dropped}
    with pytest.raises(ValueError, match="eq.nonsense.gain_db"):
        chain.normalize([unknown])
    with pytest.raises(ValueError, match=dropped.replace(".", r"\.")):
        chain.normalize([missing])
    for i in (0, 7, 15, 24, 27):
        name, r = chain.param_names[i], chain.ranges[chain.param_names[i]]
        for bad in (r.high + 0.1 * (r.high - r.low), r.low - 0.1 * (r.high - r.low), float("nan")):
            with pytest.raises(ValueError, match=name.replace(".", r"\.")):
                chain.normalize([dict(good, **{name: bad})])
    with pytest.raises(ValueError):
        chain.normalize(good)  # a bare dict, not a list of them


def test_identity_params_shape_and_values(chain):
    ip = chain.identity_params(3)
    assert ip.shape == (3, chain.num_params)
    assert ((ip >= 0) & (ip <= 1)).all()
    phys = chain.denormalize(ip)[0]
    for key, stage in chain.stages.items():
        for name, v in stage.identity_values().items():
            assert phys[f"{key}.{name}"] == pytest.approx(v, rel=1e-5, abs=1e-5)


# ------------------------------------------------------------------ identity
@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("n", [1, 37, 6000])
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
    assert (y_off - xt).abs().max() < 1e-6  # exact up to float32 rounding
    assert (y_lim - xt).abs().max() < 1e-6


# ------------------------------------------------------------------ every parameter matters
@pytest.fixture(scope="module")
def rich_stereo(make_rich_mix) -> torch.Tensor:
    return torch.from_numpy(make_rich_mix(FS, 1.0, seed=5)).float()[None]


def test_every_parameter_changes_the_output(chain, rich_stereo):
    """At a random interior setting, moving any one parameter to 0.1 and to 0.9 changes the
    output audibly, with the level fixed by a loudness target (so no change is only level)."""
    base = 0.25 + 0.5 * torch.rand(1, chain.num_params, generator=torch.Generator().manual_seed(3))
    n = chain.num_params
    p = base.repeat(2 * n + 1, 1)
    for i in range(n):
        p[1 + 2 * i, i], p[2 + 2 * i, i] = 0.1, 0.9
    x = rich_stereo.expand(2 * n + 1, -1, -1).contiguous()
    with torch.no_grad():
        y, trace = chain.render(x, p, ceiling_dbtp=-1.0, target_lufs=-10.0)
    assert float(trace["limiter_gain_db"][0].min()) < -0.3
    for k in range(3):
        assert float(trace["band_gain_db"][0, k].min()) < -0.5, f"band {k} does not compress at the base setting"
    ref = y[0].norm()
    changes = {name: float((y[2 + 2 * i] - y[1 + 2 * i]).norm() / ref) for i, name in enumerate(chain.param_names)}
    dead = [f"{k}: {v:.2e}" for k, v in changes.items() if not v > 3e-3]
    assert not dead, "parameters with no audible effect: " + ", ".join(dead)


@pytest.mark.parametrize("corner", ["zeros", "ones", "random0"])
@pytest.mark.parametrize("target", [None, -14.0])
def test_gradients_finite_at_range_edges(chain, rich_stereo, corner, target):
    if corner == "zeros":
        p = torch.zeros(1, chain.num_params)
    elif corner == "ones":
        p = torch.ones(1, chain.num_params)
    else:
        g = torch.Generator().manual_seed(int(corner[-1]))
        p = torch.randint(0, 2, (1, chain.num_params), generator=g).float()
    x = rich_stereo[..., : int(0.45 * FS)].clone().requires_grad_(True)
    p.requires_grad_(True)
    y = chain(x, p, ceiling_dbtp=-1.0, target_lufs=target)
    assert torch.isfinite(y).all()
    (y.square().mean() + y[..., ::97].sum()).backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(p.grad).all()
    assert x.grad.abs().max() > 0


# ------------------------------------------------------------------ level relativity and redundancy
@pytest.mark.parametrize("seed", [0, 1])
def test_same_mix_at_any_level_renders_the_same(chain, seed, make_rich_mix):
    """Thresholds and drive are relative to the measured loudness, and the loudness target
    sets the output level: the same mix 10 dB down gives the same master."""
    x = torch.from_numpy(make_rich_mix(FS, 1.0, seed=seed))[None]
    p = 0.1 + 0.8 * torch.rand(1, chain.num_params, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    with torch.no_grad():
        y = chain(torch.cat([x, x * 10 ** (-10 / 20)]), p.repeat(2, 1), ceiling_dbtp=-1.0, target_lufs=-11.0)
        plain = chain(torch.cat([x, x * 10 ** (-10 / 20)]), p.repeat(2, 1), ceiling_dbtp=None)
    assert float((y[0] - y[1]).abs().max()) < 1e-5 * float(y[0].abs().max())
    # without a target the render is the same up to the 10 dB (nothing else depends on level)
    assert float((plain[0] * 10 ** (-10 / 20) - plain[1]).abs().max()) < 1e-5 * float(plain[1].abs().max())


THIRD_OCTAVES = 1000.0 * 2.0 ** (np.arange(-17, 12) / 3)  # 20 Hz .. 12.7 kHz
OCTAVES = 31.25 * 2.0 ** np.arange(9)  # 31 Hz .. 8 kHz (lower edges)
JAC_FS = 32000  # the smallest rate that keeps every EQ region below the designs' 0.45 fs clamp


def _band_matrix(n_fft: int, lo: np.ndarray, hi: np.ndarray) -> torch.Tensor:
    f = np.fft.rfftfreq(n_fft, 1 / JAC_FS)
    return torch.from_numpy(np.stack([((f >= a) & (f < b)).astype(np.float64) for a, b in zip(lo, hi)]))


def output_features(y: torch.Tensor) -> torch.Tensor:
    """Level-free description of rendered audio (batch, 2, samples) -> (batch, 56):
    1/3-octave spectrum shape (dB, mean removed), side/mid ratio per octave, and per
    octave the std and 4th-moment crest of the 32 ms energy envelope, plus the waveform's
    kurtosis. Computed here with torch.stft, nothing from dsp."""
    y = y.double()
    third = _band_matrix(8192, THIRD_OCTAVES * 2 ** (-1 / 6), THIRD_OCTAVES * 2 ** (1 / 6))
    octave_long = _band_matrix(8192, OCTAVES, 2 * OCTAVES)
    octave_short = _band_matrix(1024, OCTAVES, 2 * OCTAVES)

    def power(s: torch.Tensor, n_fft: int) -> torch.Tensor:
        w = torch.hann_window(n_fft, dtype=torch.float64)
        return torch.stft(s, n_fft, n_fft // 4, window=w, return_complex=True, center=False).abs().square()

    mid, side = 0.5 * (y[:, 0] + y[:, 1]), 0.5 * (y[:, 0] - y[:, 1])
    total = power(y[:, 0], 8192) + power(y[:, 1], 8192)
    spectrum = 10 * torch.log10(torch.einsum("kf,bft->bk", third, total) + 1e-12)
    spectrum = spectrum - spectrum.mean(dim=1, keepdim=True)
    side_mid = 10 * torch.log10((torch.einsum("kf,bft->bk", octave_long, power(side, 8192)) + 1e-12)
                                / (torch.einsum("kf,bft->bk", octave_long, power(mid, 8192)) + 1e-12))
    env = torch.einsum("kf,bft->bkt", octave_short, power(y[:, 0], 1024) + power(y[:, 1], 1024)) + 1e-12
    env_std = (10 * torch.log10(env)).std(dim=-1)
    env_crest = 10 * torch.log10((env**2).mean(-1) / env.mean(-1) ** 2)
    flat = y.reshape(y.shape[0], -1)
    kurtosis = 10 * torch.log10((flat**4).mean(-1) / (flat**2).mean(-1) ** 2)
    return torch.cat([spectrum, side_mid, env_std, env_crest, kurtosis[:, None]], dim=1)


def test_no_do_nothing_directions(make_rich_mix):
    """The Jacobian of a rich, level-free description of the output w.r.t. the 28
    normalized parameters has full column rank at 16 random settings: after scaling each
    column to unit norm, its smallest singular value is > SIGMA_MIN.

    The smallest singular value of the column-normalized Jacobian is the distance to the
    nearest redundancy: it is 0 when one parameter has no effect or when a combination of
    parameters cancels (the old chain's input gain against the threshold and drive, or its
    makeup gain under a loudness target, were such exact nulls: with finite differences they
    sit at the noise floor, which this test measures with a control column - a change of
    input level, a direction that the chain must ignore). Genuine parameters that act alike
    (a band's threshold and ratio, neighbouring broad bells) give small but clearly non-zero
    values (measured 0.005-0.04 here). SIGMA_MIN = 1e-3 sits between the two, and the control
    must stay 10x under it.

    Two things make parameters locally inert in any chain, and are kept out of the draws: a
    compressor band whose threshold is above everything its band reaches has no threshold or
    ratio, so thresholds are drawn where this mix's bands reach them (normalized 0.1-0.45,
    -26 to -14 dB re loudness); a bell or shelf at 0 dB has no frequency or Q, so EQ gains are
    drawn at least 1.8 dB away from 0 (normalized 0.1-0.35 or 0.65-0.9). Every other
    parameter is drawn in 0.1-0.9. Loudness target fixed (-10 LUFS, -1 dBTP ceiling)."""
    sigma_min, h, settings = 1e-3, 0.05, 16
    chain = MasteringChain(JAC_FS)
    n = chain.num_params
    x = torch.from_numpy(make_rich_mix(JAC_FS, 0.8, seed=1)).float()[None]
    hi = torch.tensor([0.45 if name.endswith("threshold_db") else 0.9 for name in chain.param_names])
    eq_gain = torch.tensor([name.startswith("eq.") and name.endswith("gain_db") for name in chain.param_names])
    g = torch.Generator().manual_seed(1234)
    worst = []
    for k in range(settings):
        p0 = 0.1 + (hi - 0.1) * torch.rand(1, n, generator=g)
        p0 = torch.where(eq_gain & (p0 > 0.35) & (p0 < 0.5), p0 - 0.25, p0)
        p0 = torch.where(eq_gain & (p0 >= 0.5) & (p0 < 0.65), p0 + 0.25, p0)
        step = torch.where(p0[0] < 0.5, h, -h)
        p = p0.repeat(n + 2, 1)
        p[1 : n + 1] += torch.diag(step)
        xs = x.repeat(n + 2, 1, 1)
        xs[-1] *= 10 ** (12 * h / 20)  # control: the input 0.6 dB louder, same parameters
        with torch.no_grad():
            f = output_features(chain(xs, p, ceiling_dbtp=-1.0, target_lufs=-10.0))
        jac = ((f[1 : n + 1] - f[0]) / step[:, None].double()).T  # (features, params)
        norms = jac.norm(dim=0)
        control = float((f[-1] - f[0]).norm() / h)
        dead = [chain.param_names[i] for i in range(n) if not norms[i] > 100 * control]
        assert not dead, f"setting {k}: parameters at the noise floor: {dead}"
        sv = torch.linalg.svdvals(jac / norms)
        v = torch.linalg.svd(jac / norms).Vh[-1]
        null = sorted(zip(v.abs().tolist(), chain.param_names), reverse=True)[:3]
        worst.append((float(sv[-1]), k, null))
        assert control / float(norms.median()) < 0.1 * sigma_min, f"setting {k}: control {control:.2e}"
    bad = [w for w in worst if not w[0] > sigma_min]
    assert not bad, f"near-redundant parameter combinations (sigma, setting, direction): {bad}"


# ------------------------------------------------------------------ loudness target and ceiling
def _target_signal(kind: str, make_music) -> np.ndarray:
    if kind == "music_stereo":
        return make_music(FS, 2.0, channels=2, seed=11)
    if kind == "music_mono":
        return make_music(FS, 2.0, channels=1, seed=12)
    rng = np.random.default_rng(13)  # pink-ish noise with a slow swell
    spec = np.fft.rfft(rng.standard_normal((2, 2 * FS)), axis=-1)
    f = np.fft.rfftfreq(2 * FS, 1 / FS)
    x = np.fft.irfft(spec / np.sqrt(np.maximum(f, 20)), 2 * FS, axis=-1)
    x *= np.linspace(0.3, 1.0, x.shape[1])
    return 0.3 * x / np.abs(x).max()


@pytest.mark.parametrize(
    ("kind", "target"),
    # mono reads 3 dB below the same signal on two channels, so loud mono targets under -1 dBTP are out of reach
    [("music_stereo", -8.0), ("music_stereo", -14.0), ("noise", -9.0), ("noise", -23.0), ("music_mono", -14.0)],
)
def test_target_loudness_reached_under_ceiling(chain, kind, target, make_music, ref_true_peak_db):
    x = _target_signal(kind, make_music)
    p = engaged_params(chain)
    p[0, chain.param_names.index("limiter.release_ms")] = 0.3
    with torch.no_grad():
        y, trace = chain.render(torch.from_numpy(x).float()[None], p, ceiling_dbtp=-1.0, target_lufs=target)
    y = y[0].double().numpy()
    assert pyln(y, FS) == pytest.approx(target, abs=0.1)
    assert ref_true_peak_db(y) <= -1.0 + 0.1
    assert float(trace["output_lufs"][0]) == pytest.approx(target, abs=0.1)


def test_target_without_ceiling_is_a_pure_gain(chain, make_music):
    x = torch.from_numpy(make_music(FS, 2.0, seed=3)).float()[None]
    p = chain.identity_params(1)
    with torch.no_grad():
        y = chain(x, p, ceiling_dbtp=None, target_lufs=-20.0)[0].double().numpy()
    assert pyln(y, FS) == pytest.approx(-20.0, abs=0.1)
    ratio = y[np.abs(x[0].numpy()) > 1e-3] / x[0].numpy()[np.abs(x[0].numpy()) > 1e-3]
    assert np.ptp(ratio) < 1e-4 * np.abs(ratio).max()


def test_per_item_targets_and_ceilings(chain, make_music, ref_true_peak_db):
    """A batch with its own target and ceiling per item renders each item as if alone;
    a NaN target leaves that item's level alone (limiter only)."""
    xs = torch.stack([torch.from_numpy(make_music(FS, 1.5, seed=s) * a).float() for s, a in ((1, 1.0), (2, 0.3), (3, 0.8))])
    p = 0.2 + 0.6 * torch.rand(3, chain.num_params, generator=torch.Generator().manual_seed(9))
    targets = torch.tensor([-14.0, -12.0, float("nan")])
    ceilings = torch.tensor([-1.0, -3.0, -0.5])
    with torch.no_grad():
        both, trace = chain.render(xs, p, ceiling_dbtp=ceilings, target_lufs=targets)
        alone = [chain(xs[i : i + 1], p[i : i + 1], ceiling_dbtp=float(ceilings[i]),
                       target_lufs=None if i == 2 else float(targets[i]))[0] for i in range(3)]
    for i in range(3):
        err = float((both[i] - alone[i]).abs().max())
        assert err <= 1e-5 * float(alone[i].abs().max()), f"item {i} differs by {err:.3g} from its own render"
        assert ref_true_peak_db(both[i].double().numpy()) <= float(ceilings[i]) + 0.1
    for i in range(2):
        assert pyln(both[i].numpy(), FS) == pytest.approx(float(targets[i]), abs=0.1)
    # the NaN item keeps the level the chain gives it without a target
    with torch.no_grad():
        no_target = chain(xs[2:], p[2:], ceiling_dbtp=-0.5)[0]
    assert float((both[2] - no_target).abs().max()) <= 1e-5 * float(no_target.abs().max())
    with pytest.raises(ValueError, match="target_lufs"):
        chain(xs, p, target_lufs=torch.tensor([-14.0, -9.0]))


def test_render_traces(chain, rich_stereo):
    p = engaged_params(chain)
    with torch.no_grad():
        y, trace = chain.render(rich_stereo, p, ceiling_dbtp=-1.0)
    n = rich_stereo.shape[-1]
    assert trace["band_gain_db"].shape == (1, 3, n)
    assert trace["limiter_gain_db"].shape == (1, n)
    assert trace["output_lufs"].shape == (1,)
    assert float(trace["band_gain_db"].max()) <= 0.0
    assert float(trace["limiter_gain_db"].max()) <= 1e-6
    assert float(trace["output_lufs"][0]) == pytest.approx(pyln(y[0].numpy(), FS), abs=0.1)


# ------------------------------------------------------------------ shapes, dtypes, batch independence
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("channels", [1, 2])
def test_shape_and_dtype_preserved(chain, dtype, channels):
    x = 0.3 * torch.randn(2, channels, 20000, generator=torch.Generator().manual_seed(1), dtype=dtype)
    p = torch.rand(2, chain.num_params, generator=torch.Generator().manual_seed(2), dtype=dtype)
    with torch.no_grad():
        for kwargs in ({}, {"ceiling_dbtp": None}, {"target_lufs": -14.0}):
            y = chain(x, p, **kwargs)
            assert y.shape == x.shape and y.dtype == dtype and torch.isfinite(y).all()


@pytest.mark.parametrize(
    "kwargs",
    [{"ceiling_dbtp": None}, {"ceiling_dbtp": -1.0, "target_lufs": -10.0}, {"ceiling_dbtp": -1.0, "target_lufs": -8.0}],
    ids=["plain", "ceiling+target", "ceiling+loud_target"],
)
def test_batch_items_are_independent(chain, kwargs, make_music):
    """Item 0 renders the same alone as next to a very different item 1."""
    a = torch.from_numpy(make_music(FS, 1.5, seed=0)).float()
    b = torch.from_numpy(0.2 * make_music(FS, 1.5, seed=1)).float()
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
        x = torch.from_numpy(make_music(fs, 0.5, seed=1)).float()[None]
        with torch.no_grad():
            y = c(x, engaged_params(c), ceiling_dbtp=-1.0)
            assert (c(x, c.identity_params(1), ceiling_dbtp=None) - x).abs().max() < 1e-6
        assert y.shape == x.shape and torch.isfinite(y).all()
        assert ref_true_peak_db(y[0].double().numpy()) <= -1.0 + 0.1
