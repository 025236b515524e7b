"""The one loudness-target search (dsp.loudness_search), as training (MasteringChain) and
inference (automaster.pipeline) use it.

Levels are checked with pyloudnorm, independently of dsp's and the pipeline's meters; the
music is the bundled example. The two BS.1770 implementations differ by a few hundredths
of a LU on music (pyloudnorm's RLB high-pass has the standard's unnormalized numerator,
dsp._bs1770's the normalized one), which METER_LU allows for on top of the tolerance.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import automaster  # noqa: E402
from dsp import MasteringChain  # noqa: E402
from dsp.limiter import limit  # noqa: E402
from dsp.loudness import integrated_loudness  # noqa: E402
from dsp.loudness_search import LOUDNESS_TOLERANCE_LU, GainSearch, run_search  # noqa: E402

EXAMPLE = Path(automaster.__file__).resolve().parent / "examples" / "example.ogg"
METER_LU = 0.03  # pyloudnorm against dsp._bs1770 on music (see the module docstring)
TARGETS = (-8.0, -14.0, -23.0)
CEILING = -1.0


def pyln(y: np.ndarray, sr: int) -> float:
    import pyloudnorm

    return pyloudnorm.Meter(sr).integrated_loudness(np.asarray(y, np.float64).T)


@pytest.fixture(scope="module")
def music() -> tuple[np.ndarray, int]:
    """6 s of the bundled example (real music), stereo float32."""
    from automaster.io import read_audio

    x, sr = read_audio(EXAMPLE)
    start = 8 * sr
    return np.ascontiguousarray(x[:, start:start + 6 * sr]), sr


@pytest.fixture(scope="module")
def chain(music) -> MasteringChain:
    return MasteringChain(sample_rate=music[1])


@pytest.fixture(scope="module")
def pre(chain, setting, music) -> tuple[torch.Tensor, torch.Tensor]:
    """The chain's pre-limiter render of the music and the setting's limiter release."""
    with torch.no_grad():
        y, _ = chain.render(torch.from_numpy(music[0])[None], setting, ceiling_dbtp=None, measure_output=False)
    return y, chain._values("limiter", setting)["release_ms"]


@pytest.fixture(scope="module")
def setting(chain) -> torch.Tensor:
    """A mild non-identity setting: mid-range everything, limiter release 40 ms (fast
    enough for -8 LUFS under -1 dBTP on this music, well inside the chain's 9 dB of
    search headroom)."""
    p = torch.full((1, chain.num_params), 0.5)
    p[0, chain.param_names.index("limiter.release_ms")] = 0.3
    return p


# ------------------------------------------------------------------ the search itself
def _limited_curve(g: torch.Tensor, knee: torch.Tensor) -> torch.Tensor:
    """A limited output's loudness as a function of gain: a plain gain below the knee,
    flattening above it (the slope falls from 1 towards 0.3)."""
    return -20.0 + g - 0.7 * torch.nn.functional.softplus(g - knee)


def test_search_converges_on_a_curve_the_limiter_bends():
    targets = torch.tensor([-14.0, -9.0, -6.0, float("nan")], dtype=torch.float64)
    knee = torch.tensor([6.0, 9.0, 10.0, 0.0], dtype=torch.float64)
    seen = []

    def render(g):
        seen.append(g.clone())
        return _limited_curve(g, knee), None

    s = run_search(GainSearch(targets, targets.nan_to_num() + 20.0, 24.0), render, 12)
    level = _limited_curve(s.rendered_gain, knee)
    assert torch.equal(s.rendered_level, level)  # the level of what was rendered, not a prediction
    assert torch.equal(s.rendered_gain, seen[-1])
    for i in range(3):
        assert abs(float(level[i] - targets[i])) <= LOUDNESS_TOLERANCE_LU
    assert float(s.rendered_gain[3]) == 20.0 and bool(s.done[3])  # no target: never moves
    # the bent items needed more than the first (linear) guess
    assert float(_limited_curve(seen[0], knee)[2]) < -6.0 - 1.0
    assert s.passes <= 8
    # each item as if alone: items of a batch do not affect each other
    for i in range(3):
        alone = run_search(GainSearch(targets[i:i + 1], targets[i:i + 1] + 20.0, 24.0),
                           lambda g: (_limited_curve(g, knee[i:i + 1]), None), 12)
        assert float(alone.best_gain[0]) == pytest.approx(float(s.best_gain[i]), abs=1e-9)


def test_search_reports_an_unreachable_target():
    """A limiter that saturates: more gain stops making it louder. The search says so and
    leaves the best level it measured."""
    def render(g):
        return -12.0 + 0.0 * g + torch.minimum(g, torch.zeros_like(g)), None

    s = run_search(GainSearch(-8.0, -6.0, 24.0), render, 12)
    assert bool(s.out_of_reach[0]) and not bool(s.done[0])
    assert float(s.best_level[0]) == pytest.approx(-12.0)
    assert s.passes < 12


# ------------------------------------------------------------------ training: the chain
def test_chain_reaches_each_items_target_on_real_music(chain, setting, music):
    x, sr = music
    xt = torch.from_numpy(x)[None].expand(3, -1, -1).contiguous()
    targets = torch.tensor(TARGETS)
    with torch.no_grad():
        y, trace = chain.render(xt, setting.repeat(3, 1), ceiling_dbtp=CEILING, target_lufs=targets)
    for i, target in enumerate(TARGETS):
        measured = pyln(y[i].numpy(), sr)
        assert abs(measured - target) <= LOUDNESS_TOLERANCE_LU + METER_LU, (target, measured)
        # the reported level is the rendered output's, measured
        assert float(trace["output_lufs"][i]) == pytest.approx(
            float(integrated_loudness(y[i:i + 1].double(), sr)[0]), abs=1e-3)
    assert float(trace["limiter_gain_db"][0].min()) < -3.0  # -8 LUFS: the limiter works hard


def test_chain_output_is_rendered_at_the_gain_it_returns(chain, pre, music):
    """The search's output is the limiter rendered afresh at the returned gain (not the
    last estimate's gain, nor extrapolated)."""
    sr = music[1]
    pre, release = pre
    with torch.no_grad():
        gain_db, _, out, level = chain._search(pre, release, torch.tensor([CEILING]), torch.tensor([-8.0]))
        fresh = limit(pre * 10.0 ** (float(gain_db[0]) / 20.0), CEILING, release, sr)
    assert float((out - fresh).abs().max()) <= 1e-5
    assert float(level[0]) == pytest.approx(pyln(out[0].numpy(), sr), abs=METER_LU)
    assert abs(float(level[0]) + 8.0) <= LOUDNESS_TOLERANCE_LU


# ------------------------------------------------------------------ inference: the pipeline
@pytest.fixture(scope="module")
def pipeline_results(chain, setting, music):
    x, sr = music
    settings = chain.denormalize(setting)[0]
    return {t: automaster.master(x, sr, target_lufs=t, ceiling_dbtp=CEILING, settings=settings,
                                 device="cpu") for t in TARGETS}


@pytest.mark.parametrize("target", TARGETS)
def test_pipeline_reaches_the_target_on_real_music(pipeline_results, music, target):
    r = pipeline_results[target]
    measured = pyln(r.audio, music[1])
    assert abs(measured - target) <= LOUDNESS_TOLERANCE_LU + METER_LU, measured
    assert abs(r.report["after"]["integrated_lufs"] - target) <= LOUDNESS_TOLERANCE_LU


@pytest.mark.parametrize("target", TARGETS)
def test_training_and_inference_choose_the_same_gain(chain, pre, music, pipeline_results, target):
    """The chain (training) and the pipeline (inference) run the same search on the same
    pre-limiter signal under the same limiter ceiling. Both stop once inside the
    tolerance, so "the same gain" means: each gain, rendered by the same limiter and
    measured by pyloudnorm, is within the tolerance of the target (the gains lie in the
    same tolerance interval of the same loudness curve). Where the limiter barely works
    (-23 LUFS) the curve has slope 1 and the gains themselves agree to the tolerance; at
    -8 LUFS it is flat enough that gains a dB or more apart can both be inside."""
    from automaster.pipeline import LIMITER_MARGIN_DB

    sr = music[1]
    pre, release = pre
    r = pipeline_results[target]
    ceiling = r.report["limiter_ceiling_dbtp"]
    assert ceiling == pytest.approx(CEILING - LIMITER_MARGIN_DB, abs=1e-9)  # no lowering needed here
    with torch.no_grad():
        gain_chain = float(chain._search(pre, release, torch.tensor([ceiling]), torch.tensor([target]))[0][0])
        gain_pipeline = r.report["gain_db"]
        for gain in (gain_chain, gain_pipeline):
            y = limit(pre * 10.0 ** (gain / 20.0), ceiling, release, sr)[0].numpy()
            assert abs(pyln(y, sr) - target) <= LOUDNESS_TOLERANCE_LU + METER_LU, (target, gain)
    if target == -23.0:
        assert abs(gain_chain - gain_pipeline) <= LOUDNESS_TOLERANCE_LU


def test_pipeline_measures_a_trimmed_output_instead_of_shifting_its_levels(
        chain, setting, music, pipeline_results, monkeypatch):
    """The last-resort true-peak trim (forced here) is written and measured: the report's
    levels are the written output's, not the accepted pass's shifted by the trim."""
    import automaster.pipeline.loudness as PL

    x, sr = music
    plain = pipeline_results[-14.0]
    monkeypatch.setattr(PL, "true_peak_trim", lambda p, ceiling: -0.5)
    r = automaster.master(x, sr, target_lufs=-14.0, ceiling_dbtp=CEILING,
                          settings=chain.denormalize(setting)[0], device="cpu")
    assert r.report["true_peak_trim_db"] == -0.5
    assert float(np.abs(r.audio - plain.audio * np.float32(10 ** (-0.5 / 20))).max()) <= 1e-6
    after = r.report["after"]
    assert after["integrated_lufs"] == pytest.approx(pyln(r.audio, sr), abs=METER_LU)
    assert after["integrated_lufs"] == pytest.approx(plain.report["after"]["integrated_lufs"] - 0.5, abs=0.01)
    assert after["true_peak_dbtp"] == pytest.approx(plain.report["after"]["true_peak_dbtp"] - 0.5, abs=0.01)
