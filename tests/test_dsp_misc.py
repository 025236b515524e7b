"""Gain, saturation, stereo width, parameter ranges and input validation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dsp import (
    Compressor,
    Gain,
    Limiter,
    MasteringChain,
    ParametricEQ,
    ParamRange,
    Saturation,
    StereoWidth,
    apply_gain,
    integrated_loudness,
    loudness_range,
    normalize_loudness,
    soft_clip,
    stereo_width,
    true_peak,
)

FS = 44100


def noise(batch: int = 2, channels: int = 2, n: int = 2000, seed: int = 0, scale: float = 0.5) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(batch, channels, n, generator=g)


# ------------------------------------------------------------------ gain
@pytest.mark.parametrize("p", [0.0, 0.25, 0.5, 0.8, 1.0])
def test_gain_is_linear_db_over_plus_minus_12(p):
    x = noise()
    with torch.no_grad():
        y = Gain(FS)(x, torch.full((2, 1), p))
    gain_db = -12 + 24 * p
    torch.testing.assert_close(y, x * 10 ** (gain_db / 20), rtol=1e-6, atol=1e-7)


def test_apply_gain_per_item():
    x = noise(batch=3)
    y = apply_gain(x, torch.tensor([-6.0, 0.0, 3.0]))
    for i, g in enumerate((-6.0, 0.0, 3.0)):
        torch.testing.assert_close(y[i], x[i] * 10 ** (g / 20), rtol=1e-6, atol=1e-7)


# ------------------------------------------------------------------ saturation
@pytest.mark.parametrize(("drive_db", "mix"), [(0.0, 1.0), (6.0, 0.5), (18.0, 1.0), (24.0, 0.3)])
def test_soft_clip_matches_formula(drive_db, mix):
    x = noise(scale=0.8).double()
    with torch.no_grad():
        y = Saturation(FS)(x, torch.tensor([[drive_db / 24, mix]] * 2, dtype=torch.float64)).numpy()
    d = 10 ** (drive_db / 20)
    xn = x.numpy()
    np.testing.assert_allclose(y, (1 - mix) * xn + mix * np.tanh(d * xn) / d, rtol=1e-10, atol=1e-12)


def test_saturation_mix_zero_is_identity_and_small_signals_pass():
    x = noise()
    with torch.no_grad():
        torch.testing.assert_close(Saturation(FS)(x, torch.tensor([[1.0, 0.0]] * 2)), x, rtol=0, atol=0)
        tiny = 1e-4 * x
        y = soft_clip(tiny, torch.tensor([24.0, 24.0]), torch.tensor([1.0, 1.0]))
    torch.testing.assert_close(y, tiny, rtol=1e-3, atol=1e-9)  # unity small-signal gain


def test_saturation_is_odd_bounded_and_adds_harmonics():
    fs = 48000
    t = torch.arange(4800, dtype=torch.float64) / fs
    x = (0.9 * torch.sin(2 * math.pi * 1000 * t))[None, None]
    d, m = torch.tensor([18.0]), torch.tensor([1.0])
    y = soft_clip(x, d, m)
    torch.testing.assert_close(soft_clip(-x, d, m), -y)
    assert y.abs().max() <= 10 ** (-18 / 20) + 1e-12  # saturates towards -drive dBFS
    spec = np.abs(np.fft.rfft(y[0, 0].numpy()))
    assert spec[30] > 0.05 * spec[10]  # 3rd harmonic of 1 kHz (bins of 10 Hz)


# ------------------------------------------------------------------ width
def test_width_one_is_identity_and_zero_is_mono():
    x = noise(n=1000)
    with torch.no_grad():
        torch.testing.assert_close(StereoWidth(FS)(x, torch.full((2, 1), 0.5)), x, rtol=0, atol=1e-7)
        y = StereoWidth(FS)(x, torch.zeros(2, 1))
    mid = 0.5 * (x[:, 0] + x[:, 1])
    torch.testing.assert_close(y[:, 0], mid)
    torch.testing.assert_close(y[:, 1], mid)


@pytest.mark.parametrize("width", [0.0, 0.5, 1.5, 2.0])
def test_width_scales_side_and_keeps_mid(width):
    x = noise(n=1000).double()
    y = stereo_width(x, torch.tensor([width, width], dtype=torch.float64))
    mid_in, side_in = (x[:, 0] + x[:, 1]) / 2, (x[:, 0] - x[:, 1]) / 2
    mid_out, side_out = (y[:, 0] + y[:, 1]) / 2, (y[:, 0] - y[:, 1]) / 2
    torch.testing.assert_close(mid_out, mid_in)
    torch.testing.assert_close(side_out, width * side_in)


def test_width_leaves_mono_alone_and_rejects_three_channels():
    x = noise(channels=1)
    torch.testing.assert_close(StereoWidth(FS)(x, torch.ones(2, 1)), x)
    with pytest.raises(ValueError, match="channels"):
        stereo_width(noise(channels=3), torch.ones(2))


# ------------------------------------------------------------------ ranges
@pytest.mark.parametrize(("low", "high", "scale"), [(10.0, 400.0, "log"), (-12.0, 12.0, "lin"), (0.3, 6.0, "log")])
def test_param_range_mapping(low, high, scale):
    r = ParamRange(low, high, scale, "x")
    p = torch.linspace(0, 1, 11, dtype=torch.float64)
    v = r.to_physical(p)
    want = low * (high / low) ** p if scale == "log" else low + p * (high - low)
    torch.testing.assert_close(v, want)
    torch.testing.assert_close(r.to_normalized(v), p)
    assert float(v[0]) == pytest.approx(low) and float(v[-1]) == pytest.approx(high)
    assert r.to_dict() == {"low": low, "high": high, "scale": scale, "unit": "x"}


@pytest.mark.parametrize(
    ("args", "match"),
    [((1.0, 2.0, "exp"), "scale"), ((2.0, 2.0, "lin"), "exceed"), ((5.0, 1.0, "lin"), "exceed"), ((0.0, 1.0, "log"), "low > 0"),
     ((-1.0, 1.0, "log"), "low > 0")],
)
def test_param_range_rejects_bad_declarations(args, match):
    with pytest.raises(ValueError, match=match):
        ParamRange(*args)


PROCESSORS = {
    "gain": lambda: Gain(FS),
    "eq": lambda: ParametricEQ(FS),
    "compressor_rms": lambda: Compressor(FS, detector="rms"),
    "compressor_peak": lambda: Compressor(FS, detector="peak"),
    "saturation": lambda: Saturation(FS),
    "width": lambda: StereoWidth(FS),
    "limiter": lambda: Limiter(FS),
    "chain": lambda: MasteringChain(FS),
}


@pytest.mark.parametrize("name", list(PROCESSORS))
def test_every_range_is_well_formed(name):
    proc = PROCESSORS[name]()
    assert proc.num_params == len(proc.param_names) == len(proc.ranges) > 0
    for pname, r in proc.ranges.items():
        assert isinstance(r, ParamRange), pname
        assert r.high > r.low and r.scale in ("lin", "log") and isinstance(r.unit, str)
        if r.scale == "log":
            assert r.low > 0


# ------------------------------------------------------------------ validation
def _p(proc, batch: int = 2, value: float = 0.5) -> torch.Tensor:
    return torch.full((batch, proc.num_params), value)


BAD_INPUTS = {
    "audio_2d": (lambda proc: (torch.zeros(2, 100), _p(proc)), "shape"),
    "audio_4d": (lambda proc: (torch.zeros(2, 1, 2, 100), _p(proc)), "shape"),
    "audio_int": (lambda proc: (torch.zeros(2, 2, 100, dtype=torch.int32), _p(proc)), "floating"),
    "audio_empty": (lambda proc: (torch.zeros(2, 2, 0), _p(proc)), "empty"),
    "audio_nan": (lambda proc: (noise().index_put_((torch.tensor([1]), torch.tensor([0]), torch.tensor([5])),
                                                   torch.tensor(float("nan"))), _p(proc)), "NaN|inf"),
    "audio_inf": (lambda proc: (noise().index_put_((torch.tensor([0]), torch.tensor([1]), torch.tensor([9])),
                                                   torch.tensor(float("inf"))), _p(proc)), "NaN|inf"),
    "audio_not_tensor": (lambda proc: (np.zeros((2, 2, 100), dtype=np.float32), _p(proc)), "Tensor"),
    "p_above_one": (lambda proc: (noise(), _p(proc, value=1.01)), r"\[0, 1\]"),
    "p_below_zero": (lambda proc: (noise(), _p(proc, value=-0.2)), r"\[0, 1\]"),
    "p_nan": (lambda proc: (noise(), _p(proc).index_put_((torch.tensor([1]), torch.tensor([0])),
                                                          torch.tensor(float("nan")))), "NaN"),
    "p_wrong_count": (lambda proc: (noise(), torch.full((2, proc.num_params + 1), 0.5)), "shape"),
    "p_1d": (lambda proc: (noise(), torch.full((proc.num_params,), 0.5)), "shape"),
    "p_batch_mismatch": (lambda proc: (noise(), _p(proc, batch=3)), "batch"),
    "p_not_tensor": (lambda proc: (noise(), np.full((2, proc.num_params), 0.5)), "Tensor"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
@pytest.mark.parametrize("name", list(PROCESSORS))
def test_bad_inputs_raise_value_error(name, case):
    proc = PROCESSORS[name]()
    make, match = BAD_INPUTS[case]
    x, p = make(proc)
    with pytest.raises(ValueError, match=match):
        proc(x, p)


def test_chain_rejects_more_than_two_channels():
    chain = MasteringChain(FS)
    with pytest.raises(ValueError, match="channels"):
        chain(noise(channels=3), chain.identity_params(2))


@pytest.mark.parametrize("kwargs", [{"ceiling_dbtp": float("nan")}, {"ceiling_dbtp": float("inf")},
                                    {"target_lufs": float("nan")}, {"target_lufs": float("-inf")}])
def test_chain_rejects_non_finite_render_arguments(kwargs):
    chain = MasteringChain(FS)
    with pytest.raises(ValueError, match="finite"):
        chain(noise(), chain.identity_params(2), **kwargs)


@pytest.mark.parametrize("fn", [integrated_loudness, loudness_range, true_peak,
                                lambda x, fs: normalize_loudness(x, fs, -14.0)])
@pytest.mark.parametrize("bad", ["2d", "nan"])
def test_meters_validate_audio(fn, bad):
    x = torch.zeros(2, 4800) if bad == "2d" else noise(n=4800).index_put_(
        (torch.tensor([0]), torch.tensor([0]), torch.tensor([3])), torch.tensor(float("nan")))
    with pytest.raises(ValueError):
        fn(x, 48000)


@pytest.mark.parametrize(
    "make",
    [lambda: Gain(0), lambda: Gain(-44100), lambda: Compressor(FS, detector="average"), lambda: Limiter(FS, lookahead_ms=0.0),
     lambda: MasteringChain(sample_rate=0)],
)
def test_constructors_validate(make):
    with pytest.raises(ValueError):
        make()


def test_normalize_wants_a_list_of_settings():
    chain = MasteringChain(FS)
    with pytest.raises(ValueError, match="settings"):
        chain.normalize({"input.gain_db": 0.0})
