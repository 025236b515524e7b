"""Reference matching: fit the chain's setting so the master sounds like a reference master.

Inference-time optimization, no training needed: starting from the network's prediction
(or the identity setting when there is no model), Adam adjusts the chain's normalized
parameters (projected back into [0, 1] after every step) for a fixed number of steps,
rendering a few short excerpts of the input through the differentiable chain, including
the loudness normalization and true-peak limiter, so the loss sees what will be written.

Two cheap initialisations come first, so the few audio steps start close: the EQ is pre-fitted
on its frequency response alone (``dsp.eq.eq_response_db``, no audio rendered) so that it
adds the band difference between the reference and the current output, and the width is
set from the side/mid energy ratios (the width parameter scales the side signal).

The descriptors of the reference and of the input are measured track-wide (24 excerpts
spread over each) and their difference is what the processing should add: the target for
the few optimisation excerpts is their own unprocessed descriptors plus that difference
(:func:`retarget`), so the excerpts' musical content cancels out. The loss compares
level-independent descriptors of the output with that target:

- spectral balance: long-term power in 1/3-octave bands (40 Hz - 16 kHz), in dB relative
  to the mean over bands;
- dynamics: crest factor (mean 20 ms frame peak over RMS, dB) and short-term loudness
  spread (standard deviation of 400 ms frame levels within 20 dB of the loudest, dB);
- stereo width: side/mid energy ratio (dB), for stereo output.

Each term is a squared difference divided by a tolerance (2 dB for bands, 1.5 dB for
crest and spread, 2 dB for width). Descriptors are pooled over all excerpts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

BAND_CENTRES_HZ = tuple(1000.0 * 2.0 ** (k / 3.0) for k in range(-14, 13))  # 39.4 .. 16 kHz
TOL_BAND_DB, TOL_CREST_DB, TOL_SPREAD_DB, TOL_WIDTH_DB = 2.0, 1.5, 1.5, 2.0
WIDTH_FLOOR_DB = -30.0
STEPS = 8
LEARNING_RATE = 0.03  # Adam, in normalized parameter units, cosine-decayed to a tenth
EQ_FIT_STEPS = 60
EQ_FIT_RATE = 0.1
EQ_FIT_GAIN_PENALTY = 0.01  # per dB^2 of band gain: prefer the smallest EQ that explains it
EXCERPTS = 3
EXCERPT_SECONDS = 1.5
PROFILE_EXCERPTS = 24  # for the track-wide profiles of the input and the reference
MAX_OPT_RATE = 48000


@dataclass
class Profile:
    """Descriptors of a signal. spectrum_db: (bands,) with NaN where a band is unusable."""

    spectrum_db: torch.Tensor
    crest_db: torch.Tensor
    spread_db: torch.Tensor
    width_db: torch.Tensor | None

    def as_dict(self) -> dict:
        """JSON-ready summary (for reports)."""
        spec = self.spectrum_db.detach().cpu().double().numpy()
        return {
            "band_centres_hz": [round(f, 1) for f in BAND_CENTRES_HZ],
            "spectrum_db": [None if not math.isfinite(v) else round(float(v), 2) for v in spec],
            "crest_db": round(float(self.crest_db), 2),
            "spread_db": round(float(self.spread_db), 2),
            "width_db": None if self.width_db is None else round(float(self.width_db), 2),
        }


def _n_fft(sample_rate: int) -> int:
    return 1 << max(8, int(round(math.log2(0.186 * sample_rate))))


def band_matrix(sample_rate: int, n_fft: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(bands, bins) averaging matrix over 1/3-octave bands and a (bands,) validity mask.

    A band is valid when its upper edge lies below 0.95 Nyquist and holds at least one bin.
    """
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    m = np.zeros((len(BAND_CENTRES_HZ), freqs.size))
    valid = np.zeros(len(BAND_CENTRES_HZ), dtype=bool)
    for i, fc in enumerate(BAND_CENTRES_HZ):
        lo, hi = fc * 2 ** (-1 / 6), fc * 2 ** (1 / 6)
        sel = (freqs >= lo) & (freqs < hi)
        if sel.any() and hi < 0.95 * sample_rate / 2:
            m[i, sel] = 1.0 / sel.sum()
            valid[i] = True
    return (torch.as_tensor(m, dtype=torch.float32, device=device),
            torch.as_tensor(valid, device=device))


def profile(x: torch.Tensor, sample_rate: int) -> Profile:
    """Descriptors of audio x (batch, channels, samples), pooled over the batch.

    Differentiable in x (the frame gate for the spread is chosen without gradient).
    """
    b, c, n = x.shape
    eps = 1e-10
    n_fft = min(_n_fft(sample_rate), 1 << int(math.log2(max(n, 256))))
    bands, valid = band_matrix(sample_rate, n_fft, x.device)
    win = torch.hann_window(n_fft, device=x.device, dtype=x.dtype)
    spec = torch.stft(x.reshape(b * c, n), n_fft, hop_length=n_fft // 2, window=win,
                      center=False, return_complex=True)
    power = (spec.real.square() + spec.imag.square()).mean(dim=(0, 2))  # (bins,)
    band_db = 10.0 * torch.log10(bands @ power + eps)
    band_db = band_db - band_db[valid].mean()
    spectrum = torch.where(valid, band_db, torch.full_like(band_db, float("nan")))

    sq = x.square().amax(dim=1)  # (b, n) channel-max power
    mean_power = x.square().mean() + eps
    frame = max(1, int(0.02 * sample_rate))
    nf = n // frame
    peaks = sq[:, :nf * frame].reshape(b, nf, frame).amax(dim=-1)
    crest = 10.0 * torch.log10(peaks.mean() / mean_power + eps)

    win_len, hop = int(0.4 * sample_rate), int(0.1 * sample_rate)
    pw = x.square().mean(dim=1)  # (b, n)
    if n >= win_len:
        frames = pw.unfold(1, win_len, hop).mean(dim=-1).reshape(-1)
    else:
        frames = pw.mean(dim=1)
    level = 10.0 * torch.log10(frames + eps)
    with torch.no_grad():
        keep = (level > level.max() - 20.0) & (level > -70.0)
    sel = level[keep] if bool(keep.sum() >= 2) else level
    spread = sel.std(unbiased=False) if sel.numel() > 1 else sel.sum() * 0.0

    width = None
    if c == 2:
        mid = 0.5 * (x[:, 0] + x[:, 1])
        side = 0.5 * (x[:, 0] - x[:, 1])
        ratio = (side.square().mean() + eps) / (mid.square().mean() + eps)
        width = (10.0 * torch.log10(ratio)).clamp_min(WIDTH_FLOOR_DB)
    return Profile(spectrum, crest, spread, width)


def retarget(base: Profile, ref: Profile, inp: Profile) -> Profile:
    """base + (ref - inp), field by field: what ``base`` (the optimisation excerpts) should
    become if the processing adds to them what separates the reference from the input.
    Comparing track-wide profiles (many excerpts) and applying the difference to the few
    excerpts cancels their content, which otherwise dominates a direct comparison."""
    width = None
    if base.width_db is not None and ref.width_db is not None and inp.width_db is not None:
        width = (base.width_db + ref.width_db - inp.width_db).clamp_min(WIDTH_FLOOR_DB)
    return Profile(base.spectrum_db + ref.spectrum_db - inp.spectrum_db,
                   base.crest_db + ref.crest_db - inp.crest_db,
                   (base.spread_db + ref.spread_db - inp.spread_db).clamp_min(0.0), width)


def profile_loss(out: Profile, ref: Profile) -> tuple[torch.Tensor, dict[str, float]]:
    """Scalar loss and its terms (floats) between an output and a reference profile."""
    both = torch.isfinite(out.spectrum_db) & torch.isfinite(ref.spectrum_db)
    d = out.spectrum_db[both] - ref.spectrum_db[both]
    d = d - d.mean()  # compare shapes, not level
    spec = (d / TOL_BAND_DB).square().mean()
    crest = ((out.crest_db - ref.crest_db) / TOL_CREST_DB).square()
    spread = ((out.spread_db - ref.spread_db) / TOL_SPREAD_DB).square()
    loss = spec + crest + spread
    terms = {"spectral": spec.item(), "crest": crest.item(), "spread": spread.item()}
    if out.width_db is not None and ref.width_db is not None:
        width = ((out.width_db - ref.width_db) / TOL_WIDTH_DB).square()
        loss = loss + width
        terms["width"] = width.item()
    terms["total"] = loss.item()
    return loss, terms


def spectral_distance_db(a: Profile, b: Profile) -> float:
    """RMS difference (dB) of two profiles' band spectra, level removed."""
    both = torch.isfinite(a.spectrum_db) & torch.isfinite(b.spectrum_db)
    d = (a.spectrum_db[both] - b.spectrum_db[both]).double()
    d = d - d.mean()
    return float(d.square().mean().sqrt())


def _band_probe(sample_rate: int, device) -> torch.Tensor:
    """(bands, 5) probe frequencies spread across each 1/3-octave band."""
    offs = torch.tensor([-1 / 8, -1 / 16, 0.0, 1 / 16, 1 / 8], dtype=torch.float64)
    centres = torch.tensor(BAND_CENTRES_HZ, dtype=torch.float64)
    f = centres[:, None] * 2.0 ** offs[None, :]
    return f.clamp(max=0.49 * sample_rate).to(device)


def prefit_eq(chain, p: torch.Tensor, out: Profile, ref: Profile, sample_rate: int,
              steps: int = EQ_FIT_STEPS) -> torch.Tensor:
    """EQ parameters of ``p`` (1, n) re-fitted on the EQ's magnitude response so that it
    adds the (level-free) band difference ref - out; other parameters unchanged."""
    from dsp.eq import eq_response_db

    names = chain.param_names
    idx = [i for i, n in enumerate(names) if n.startswith("eq.") and not n.startswith("eq.highpass")]
    if not idx:
        return p
    ranges = [chain.ranges[names[i]] for i in idx]
    keys = [names[i][3:] for i in idx]
    both = torch.isfinite(out.spectrum_db) & torch.isfinite(ref.spectrum_db)
    if int(both.sum()) < 4:
        return p
    delta = (ref.spectrum_db - out.spectrum_db).double()[both]
    freqs = _band_probe(sample_rate, p.device)[both.to(p.device)]
    f_flat = freqs.reshape(-1)

    def response(q: torch.Tensor) -> torch.Tensor:
        values = {k: r.to_physical(q[:, j].double()) for j, (k, r) in enumerate(zip(keys, ranges))}
        values["highpass.cutoff_hz"] = torch.full((1,), 20.0, dtype=torch.float64, device=q.device)
        db = eq_response_db(values, f_flat, sample_rate).reshape(1, *freqs.shape)
        return 10.0 * torch.log10((10.0 ** (db / 10.0)).mean(dim=-1))  # band power average

    q0 = p.detach()[:, idx].double()
    with torch.no_grad():
        base = response(q0)[0]
    want = base + delta.to(base.device)
    want = want - want.mean()
    gains = [j for j, k in enumerate(keys) if k.endswith("gain_db")]
    q = q0.clone().requires_grad_(True)
    opt = torch.optim.Adam([q], lr=EQ_FIT_RATE)
    for _ in range(steps):
        r = response(q)[0]
        loss = ((r - r.mean()) - want).square().mean()
        if gains:
            g_db = torch.stack([ranges[j].to_physical(q[0, j]) for j in gains])
            loss = loss + EQ_FIT_GAIN_PENALTY * g_db.square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            q.clamp_(0.0, 1.0)
    new = p.detach().clone()
    new[:, idx] = q.detach().to(new.dtype)
    return new


def init_width(chain, p: torch.Tensor, out: Profile, ref: Profile) -> torch.Tensor:
    """Width parameter scaled so the side/mid energy ratio moves to the reference's."""
    if out.width_db is None or ref.width_db is None or "width.width" not in chain.ranges:
        return p
    i = chain.param_names.index("width.width")
    r = chain.ranges["width.width"]
    w0 = r.to_physical(p[:, i].detach().double())
    w = w0 * 10.0 ** ((float(ref.width_db) - float(out.width_db)) / 20.0)
    w = w.clamp(float(r.low), float(r.high))
    new = p.detach().clone()
    new[:, i] = r.to_normalized(w).clamp(0.0, 1.0).to(new.dtype)
    return new


def match(chain, excerpts: torch.Tensor, sample_rate: int, ref: Profile, p0: torch.Tensor, *,
          target_lufs: float, ceiling_dbtp: float | None, steps: int | None = None,
          lr: float | None = None, reference_lufs: float | None = None) -> tuple[torch.Tensor, dict]:
    """Optimize the setting: excerpts (batch, channels, samples) on the chain's device,
    p0 (1, num_params) start -> (best p (1, num_params), info dict with the loss history)."""
    steps = STEPS if steps is None else int(steps)
    lr = LEARNING_RATE if lr is None else float(lr)
    b = excerpts.shape[0]
    with torch.no_grad():
        y0 = chain(excerpts, p0.expand(b, -1), ceiling_dbtp=ceiling_dbtp, target_lufs=target_lufs,
                   reference_lufs=reference_lufs)
        out0 = profile(y0, sample_rate)
    start = p0.detach().clone()
    try:
        start = prefit_eq(chain, start, out0, ref, sample_rate)
    except (ImportError, AttributeError, KeyError, TypeError, ValueError):
        pass  # the chain's EQ changed shape: the audio steps alone still work
    start = init_width(chain, start, out0, ref)
    p = start.clamp(0.0, 1.0).requires_grad_(True)
    opt = torch.optim.Adam([p], lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * min(i, steps) / max(steps, 1))))
    best_loss, best_p, history = math.inf, p0.detach().clone(), []
    first = profile_loss(out0, ref)[1]
    for step in range(steps + 1):
        y = chain(excerpts, p.expand(b, -1), ceiling_dbtp=ceiling_dbtp, target_lufs=target_lufs,
                  reference_lufs=reference_lufs)
        loss, terms = profile_loss(profile(y, sample_rate), ref)
        history.append(round(terms["total"], 4))
        if math.isfinite(terms["total"]) and terms["total"] < best_loss:
            best_loss, best_p = terms["total"], p.detach().clone()
        if step == steps or not torch.isfinite(loss):
            break
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if p.grad is not None:
            p.grad.nan_to_num_(0.0, 0.0, 0.0)
        opt.step()
        sched.step()
        with torch.no_grad():
            p.clamp_(0.0, 1.0)
    return best_p, {"steps": steps, "loss_start": first, "loss_best": round(best_loss, 4),
                    "loss_history": history}
