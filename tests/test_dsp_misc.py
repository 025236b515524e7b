"""Gain, saturation, stereo width (with mono bass), parameter ranges and input validation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.signal as sps
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
    MultibandCompressor,
    saturate,
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
DRIVE_LUFS = -12.0  # documented in dsp/saturation.py: the reference loudness sits here in front of tanh


def pyln(x: np.ndarray, fs: float) -> float:
    import pyloudnorm

    return float(pyloudnorm.Meter(fs).integrated_loudness(np.asarray(x, dtype=np.float64).T))


def sine_at(fs: float, seconds: float, amp: float, f0: float = 1000.0, channels: int = 2) -> torch.Tensor:
    t = torch.arange(int(seconds * fs), dtype=torch.float64) / fs
    return (amp * torch.sin(2 * math.pi * f0 * t)).expand(channels, -1)[None].contiguous()


def thd(y: np.ndarray, f0: float, fs: float) -> float:
    """Power of harmonics 2..9 over the fundamental's (rfft of an integer number of periods)."""
    spec = np.abs(np.fft.rfft(y)) ** 2
    k = int(round(f0 * y.shape[-1] / fs))
    return float(sum(spec[h * k] for h in range(2, 10)) / spec[k])


@pytest.mark.parametrize(("amount", "ref"), [(0.3, -20.0), (1.0, -8.0), (0.7, -30.0)])
def test_saturation_matches_formula_with_given_reference(amount, ref):
    x = noise(scale=0.3).double()
    with torch.no_grad():
        y = saturate(x, torch.tensor([amount, amount], dtype=torch.float64), FS, reference_lufs=ref).numpy()
    d = 10 ** ((DRIVE_LUFS - ref) / 20)
    xn = x.numpy()
    np.testing.assert_allclose(y, xn + amount * (np.tanh(d * xn) / d - xn), rtol=1e-12, atol=1e-14)


def test_saturation_gradients_are_the_formula_derivatives(make_music):
    """With autograd recording, saturate runs its own backward: the output equals the
    inference path's bit for bit, and the gradients of the audio and the amount equal the
    derivatives of the formula written out in numpy, y = x + a (tanh(d x) / d - x):
    dy/dx = 1 - a + a (1 - tanh^2(d x)), dy/da = tanh(d x) / d - x, summed against w."""
    x = torch.from_numpy(make_music(FS, 0.5, seed=4))[None].repeat(2, 1, 1) * torch.tensor([0.8, 0.2])[:, None, None]
    x = x.float()
    ref = torch.tensor([-9.0, -21.0], dtype=torch.float64)
    amount = torch.tensor([0.35, 0.9])
    w = torch.randn(x.shape, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        y_inf = saturate(x, amount, FS, reference_lufs=ref)
    xs, a = x.clone().requires_grad_(True), amount.clone().requires_grad_(True)
    y = saturate(xs, a, FS, reference_lufs=ref)
    (y * w).sum().backward()
    assert torch.equal(y.detach(), y_inf)
    d = (10 ** ((DRIVE_LUFS - ref.numpy()) / 20))[:, None, None]
    xn, wn, an = x.double().numpy(), w.double().numpy(), amount.double().numpy()[:, None, None]
    th = np.tanh(d * xn)
    np.testing.assert_allclose(xs.grad.numpy(), wn * (1 - an + an * (1 - th ** 2)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(a.grad.numpy(), (wn * (th / d - xn)).sum(axis=(1, 2)), rtol=1e-4)
    assert float(a.grad.abs().min()) > 1e-3  # a real signal, not two zeros


def test_saturation_drive_uses_the_measured_loudness(make_music):
    """Without a reference, the drive places the input's BS.1770 loudness (pyloudnorm) at -12 LUFS."""
    x = make_music(FS, 2.0, seed=3) * 0.3
    with torch.no_grad():
        y = saturate(torch.from_numpy(x)[None], torch.tensor([1.0], dtype=torch.float64), FS)[0].numpy()

    def err(ref: float) -> float:
        d = 10 ** ((DRIVE_LUFS - ref) / 20)
        return float(np.abs(y - np.tanh(d * x) / d).max())

    ref = pyln(x, FS)
    assert err(ref) < 1e-4  # dsp's meter and pyloudnorm agree to a few thousandths of a LU
    assert err(ref + 0.1) > 3 * err(ref) and err(ref - 0.1) > 3 * err(ref)
    assert float(np.abs(y - x).max()) > 1e-2


def test_saturation_amount_zero_is_identity():
    x = noise()
    with torch.no_grad():
        torch.testing.assert_close(Saturation(FS)(x, torch.zeros(2, 1)), x, rtol=0, atol=0)
        torch.testing.assert_close(saturate(x, torch.zeros(2), FS, reference_lufs=-5.0), x, rtol=0, atol=0)


def test_saturation_and_width_identity_shortcuts_keep_gradients_and_mixed_batches():
    """Inference returns the input itself at the identity setting; a batch with one item
    off and one on still saturates (widens) the one, and with autograd recording the
    amount (width) at the identity still gets its gradient."""
    x = noise()
    with torch.no_grad():
        assert saturate(x, torch.zeros(2), FS, reference_lufs=-5.0) is x
        assert stereo_width(x, torch.ones(2), torch.zeros(2), FS) is x
        mixed = saturate(x, torch.tensor([0.0, 1.0]), FS, reference_lufs=-5.0)
        wide = stereo_width(x, torch.tensor([1.0, 1.5]), torch.zeros(2), FS)
    torch.testing.assert_close(mixed[0], x[0], rtol=0, atol=0)
    assert float((mixed[1] - x[1]).abs().max()) > 1e-3
    torch.testing.assert_close(wide[0], x[0], rtol=0, atol=2e-7)
    torch.testing.assert_close(side_of(wide[1:]), 1.5 * side_of(x[1:]), rtol=1e-5, atol=1e-6)
    a = torch.zeros(2, requires_grad=True)
    saturate(x, a, FS, reference_lufs=-5.0).pow(2).sum().backward()
    assert a.grad is not None and bool((a.grad != 0).all())
    w = torch.ones(2, requires_grad=True)
    stereo_width(x, w, torch.zeros(2), FS).pow(2).sum().backward()
    assert w.grad is not None and bool((w.grad != 0).all())


def test_harmonics_grow_with_amount():
    """THD of a 1 kHz sine at the reference level rises with the amount (0 at amount 0)."""
    fs = 48000
    x = sine_at(fs, 1.0, 0.5)
    amounts = [0.0, 0.25, 0.5, 0.75, 1.0]
    with torch.no_grad():
        y = saturate(x.expand(len(amounts), -1, -1), torch.tensor(amounts, dtype=torch.float64), fs)
    d = [thd(y[i, 0].numpy(), 1000.0, fs) for i in range(len(amounts))]
    assert d[0] < 1e-20
    assert all(b > 1.5 * a for a, b in zip(d[1:], d[2:])), d
    # a sine's peaks sit only 3 dB over its loudness, so at the reference they stay well below
    # the clipper's knee (about -46 dB THD at full amount; material with 12-18 dB crest hits it)
    assert d[-1] > 1e-5
    with torch.no_grad():  # the same sine 12 dB over the reference saturates clearly
        hot = saturate(x, torch.tensor([1.0], dtype=torch.float64), fs, reference_lufs=pyln(x[0].numpy(), fs) - 12.0)
    assert thd(hot[0, 0].numpy(), 1000.0, fs) > 1e-3  # -30 dB or more
    y1 = y[-1, 0]
    torch.testing.assert_close(saturate(-x, torch.tensor([1.0], dtype=torch.float64), fs)[0, 0], -y1)  # odd


@pytest.mark.parametrize("scale_db", [-20.0, -6.0, 6.0])
def test_saturation_is_independent_of_input_level(scale_db, make_music):
    """The drive follows the measured reference, so saturate(k x) = k saturate(x)."""
    x = torch.from_numpy(make_music(FS, 1.0, seed=5))[None]
    k = 10 ** (scale_db / 20)
    a = torch.tensor([0.8], dtype=torch.float64)
    with torch.no_grad():
        y = saturate(x, a, FS)
        yk = saturate(k * x, a, FS)
    assert float((yk - k * y).abs().max()) < 1e-9 * k
    assert float((y - x).abs().max()) > 1e-3  # it does saturate


# ------------------------------------------------------------------ width
def side_of(y: torch.Tensor) -> torch.Tensor:
    return 0.5 * (y[:, 0] - y[:, 1])


def mid_of(y: torch.Tensor) -> torch.Tensor:
    return 0.5 * (y[:, 0] + y[:, 1])


def test_width_one_at_zero_hz_is_identity():
    x = noise(n=3000)
    with torch.no_grad():
        p = StereoWidth(FS).ranges
        unit = torch.tensor([[(1.0 - p["width"].low) / (p["width"].high - p["width"].low), 0.0]] * 2)
        torch.testing.assert_close(StereoWidth(FS)(x, unit), x, rtol=0, atol=2e-7)  # float32 mid/side round trip
        y = stereo_width(x.double(), torch.ones(2, dtype=torch.float64), torch.zeros(2, dtype=torch.float64), FS)
    assert float((y - x.double()).abs().max()) < 1e-15


@pytest.mark.parametrize("width", [0.0, 0.5, 1.5, 2.0])
def test_width_scales_side_and_keeps_mid(width):
    x = noise(n=1000).double()
    y = stereo_width(x, torch.tensor([width, width], dtype=torch.float64))
    torch.testing.assert_close(mid_of(y), mid_of(x))
    torch.testing.assert_close(side_of(y), width * side_of(x))


def test_mono_bass_is_lr4_high_pass_on_the_side():
    """Side = scipy's 2nd-order Butterworth high-pass run twice (LR4), times width; mid untouched."""
    x = noise(n=6000, seed=3).double()
    width, fc = torch.tensor([1.3, 0.7], dtype=torch.float64), torch.tensor([120.0, 40.0], dtype=torch.float64)
    with torch.no_grad():
        y = stereo_width(x, width, fc, FS)
    torch.testing.assert_close(mid_of(y), mid_of(x), rtol=0, atol=1e-15)
    for i in range(2):
        sos = sps.butter(2, float(fc[i]), "highpass", fs=FS, output="sos")
        want = float(width[i]) * sps.sosfilt(np.vstack([sos, sos]), side_of(x)[i].numpy())
        np.testing.assert_allclose(side_of(y)[i].numpy(), want, atol=1e-10)


@pytest.mark.parametrize(("f0", "min_cut_db"), [(30.0, 40.0), (50.0, 20.0), (60.0, 20.0)])
def test_mono_below_120_hz_removes_low_side(f0, min_cut_db):
    """Pure side sines (L = -R): below ~60 Hz the side falls by more than 20 dB at
    mono_below_hz = 120; at 2 kHz it is within 0.1 dB; the mid is never touched."""
    fs = 44100
    t = torch.arange(fs, dtype=torch.float64) / fs
    low = 0.3 * torch.sin(2 * math.pi * f0 * t)
    high = 0.3 * torch.sin(2 * math.pi * 2000.0 * t)
    for sig, want in ((low, None), (high, 0.0)):
        x = torch.stack([sig, -sig])[None] + 0.2 * torch.stack([high, high])[None]  # plus some mid
        with torch.no_grad():
            y = stereo_width(x, torch.ones(1, dtype=torch.float64), torch.tensor([120.0], dtype=torch.float64), fs)
        steady = slice(fs // 2, None)
        s_in, s_out = side_of(x)[0, steady], side_of(y)[0, steady]
        change = 10 * math.log10(float(s_out.square().mean() / s_in.square().mean()))
        if want is None:
            assert change < -min_cut_db
        else:
            assert abs(change) < 0.1
        torch.testing.assert_close(mid_of(y), mid_of(x), rtol=0, atol=1e-15)


def test_width_leaves_mono_alone_and_rejects_three_channels():
    x = noise(channels=1)
    torch.testing.assert_close(StereoWidth(FS)(x, torch.ones(2, 2)), x)
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
    "multiband": lambda: MultibandCompressor(FS),
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
                                    {"ceiling_dbtp": torch.tensor([-1.0, float("nan")])},
                                    {"target_lufs": float("-inf")}, {"target_lufs": torch.tensor([float("inf"), -14.0])}])
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


def test_width_inference_pass_equals_the_differentiable_path():
    """Without a gradient to record, width runs as one fused pass (float64 inside); it
    equals the differentiable composition on float32 audio to float32 rounding."""
    x = noise(n=20000, seed=5)
    width, fc = torch.tensor([1.4, 0.6]), torch.tensor([150.0, 0.0])
    with torch.no_grad():
        fused = stereo_width(x, width, fc, FS)
    graph = stereo_width(x.clone().requires_grad_(True), width, fc, FS).detach()
    torch.testing.assert_close(fused, graph, rtol=0, atol=3e-7)


@pytest.mark.parametrize(("dtype", "tol", "items"), [(torch.float64, 1e-10, 2), (torch.float32, 1e-4, 2),
                                                    (torch.float64, 1e-10, 6)])
def test_width_op_gradient_equals_autograd_through_the_composition(dtype, tol, items):
    """With autograd recording, width with mono bass is one op with its own adjoint
    (dsp._ops.stereo_width_op). Its output and the gradients of the audio, the width and
    the mono-bass frequency equal autograd through mid/side, the side's two high-pass
    sections as biquad ops, the width and L/R written out here (one item at 0 Hz, where
    the high-pass is the identity; the kernel takes items in fours)."""
    from dsp.biquad import apply_biquad_cascade
    from dsp.width import _lr4_highpass

    x0 = noise(batch=items, n=6000, seed=9).to(dtype)
    w0 = torch.tensor([1.35, 0.7, 1.1, 0.5, 1.5, 0.9], dtype=dtype)[:items]
    f0 = torch.tensor([140.0, 0.0, 60.0, 220.0, 30.0, 100.0], dtype=torch.float64)[:items]
    gw = torch.randn(x0.shape, generator=torch.Generator().manual_seed(4), dtype=dtype)

    def run(op: bool):
        x, w, f = x0.clone().requires_grad_(True), w0.clone().requires_grad_(True), f0.clone().requires_grad_(True)
        if op:
            y = stereo_width(x, w, f, FS)
        else:
            mid, side = 0.5 * (x[:, 0] + x[:, 1]), 0.5 * (x[:, 0] - x[:, 1])
            side = apply_biquad_cascade(side[:, None], _lr4_highpass(f, FS))[:, 0] * w[:, None]
            y = torch.stack([mid + side, mid - side], dim=1)
        return [y.detach()] + list(torch.autograd.grad((y * gw).sum(), [x, w, f]))

    got, want = run(True), run(False)
    for name, a, b in zip(["out", "audio", "width", "mono_below_hz"], got, want):
        scale = float(b.abs().max())
        assert scale > 0.0, name
        assert float((a - b).abs().max()) <= tol * scale, (name, float((a - b).abs().max()), scale)
