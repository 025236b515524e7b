"""Tonal balance path: a fixed, physically derived map from the mix's long-term spectrum to
the EQ gains, added to what the network predicts.

Why it exists (issue #7, measured): on the corpus the natural spread of a band's level
between mastered tracks (5 to 14 dB per mel band) is larger than the de-mastering's EQ
errors, so a network trained on de-mastered pairs learns to shrink its EQ response towards
a preset (the shipped model removed about 10% of a 6 dB shelf error). A mastering engineer
does something simpler and more decisive first: compare the mix's tonal balance with what
finished masters of the genre sound like and move part of the way there. This path does
exactly that, and the network adds a learned residual on top.

The map:

- ``dev_db`` (batch, n_mels): the mix's mean log-mel level per band minus the training
  corpus's mean (the network's ``feature_mean``, i.e. the average tonal balance of the
  corpus), both relative to each track's mean band level, clipped to +-``clip_db`` so a band
  the mix simply does not use (no sub-bass in a chiptune) cannot demand an absurd boost.
- The EQ's five gain sections (low shelf, low-mid / mid / presence bells, high shelf) at
  their nominal frequencies and Qs give a (n_mels, 5) basis: each section's response in dB
  per dB of gain at the mel band centres (``dsp.eq.eq_response_db``). The deviation is
  taken relative to its mean over 300 Hz - 3 kHz (level is loudness normalisation's job),
  and a ridge least-squares fit finds the gains whose response best matches
  ``-strength * dev_db``. The fit is linear, so it is one
  (5, n_mels) matrix computed once from the configuration.
- Each section's move is capped at +-``max_db`` and added to the network's normalized gain.

``strength`` 0 disables the path (old checkpoints have no ``tonal`` config and behave as
before). ``--intensity`` scales these moves like every other gain, since it acts on the
final setting.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from model.features import mel_band_edges_hz

GAIN_SECTIONS = ("low_shelf", "low_mid", "mid", "presence", "high_shelf")
DEFAULTS = {"strength": 0.0, "clip_db": 12.0, "max_db": 5.0, "ridge": 0.3}
TARGET_KEY = "target_db"   # optional (n_mels,) target tonal balance; default: feature_mean
MID_HZ = (300.0, 3000.0)   # the tonal balance is measured relative to this band


def check_config(config: dict[str, Any] | None) -> dict[str, Any]:
    """Validated tonal config with defaults filled in; raises ValueError on bad values.
    ``target_db`` (optional): the target balance, one finite dB value per mel band (the
    features' mean log-mel level, relative to the track's mean band level)."""
    if config is None:
        return dict(DEFAULTS)
    if not isinstance(config, dict):
        raise ValueError(f"tonal config must be a dict, got {type(config).__name__}")
    unknown = set(config) - set(DEFAULTS) - {TARGET_KEY}
    if unknown:
        raise ValueError(f"unknown tonal config keys: {sorted(unknown)}")
    try:
        out: dict[str, Any] = {k: float(config.get(k, v)) for k, v in DEFAULTS.items()}
    except (TypeError, ValueError) as e:
        raise ValueError(f"tonal config values must be numbers: {e}") from None
    target = config.get(TARGET_KEY)
    if target is not None:
        if (not isinstance(target, (list, tuple)) or not 0 < len(target) <= 1024
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                           and abs(v) <= 200.0 for v in target)):
            raise ValueError("tonal target_db must be a list of at most 1024 finite dB values")
        out[TARGET_KEY] = [float(v) for v in target]
    if not all(math.isfinite(out[k]) for k in DEFAULTS):
        raise ValueError(f"tonal config values must be finite, got { {k: out[k] for k in DEFAULTS} }")
    if not 0.0 <= out["strength"] <= 1.0:
        raise ValueError(f"tonal strength must be in [0, 1], got {out['strength']}")
    if out["clip_db"] <= 0 or out["max_db"] <= 0 or out["ridge"] < 0:
        raise ValueError(f"tonal clip_db and max_db must be > 0 and ridge >= 0, got { {k: out[k] for k in DEFAULTS} }")
    return out


def tonal_target(features_config: dict[str, Any], config: dict[str, Any] | None) -> Tensor | None:
    """(n_mels,) target in feature units (dB / 20), or None for the network's feature_mean."""
    cfg = check_config(config)
    target = cfg.get(TARGET_KEY)
    if target is None:
        return None
    if len(target) != int(features_config["n_mels"]):
        raise ValueError(f"tonal target_db has {len(target)} values, the features have "
                         f"{int(features_config['n_mels'])} mel bands")
    return torch.tensor(target, dtype=torch.float64) / 20.0


def mel_centres_hz(n_mels: int, f_min: float, f_max: float) -> Tensor:
    """(n_mels,) centre frequencies of the feature extractor's triangular mel bands."""
    return mel_band_edges_hz(n_mels, f_min, f_max)[1:-1]


def section_basis_db(freq_hz: Tensor, sample_rate: int) -> Tensor:
    """(F, 5): each gain section's response in dB per dB of gain at ``freq_hz``, at the
    EQ's nominal (identity) frequencies and Qs."""
    from dsp.eq import ParametricEQ, eq_response_db  # model -> dsp

    eq = ParametricEQ(sample_rate)
    base = {k: torch.tensor([float(v)], dtype=torch.float64) for k, v in eq.identity_values().items()}
    probe_db = 1.0
    cols = []
    for name in GAIN_SECTIONS:
        values = dict(base)
        values[f"{name}.gain_db"] = torch.tensor([probe_db], dtype=torch.float64)
        cols.append(eq_response_db(values, freq_hz.to(torch.float64), float(sample_rate))[0] / probe_db)
    return torch.stack(cols, dim=1)


def tonal_matrix(features_config: dict[str, Any], param_names: list[str], chain_sample_rate: int,
                 config: dict[str, Any] | None) -> Tensor:
    """(num_params, n_mels) float64 map from the mel-mean feature deviation (feature units:
    dB / 20) to normalized parameter offsets; zero rows for everything but the five EQ gains.
    All zeros when strength is 0."""
    cfg = check_config(config)
    n_mels = int(features_config["n_mels"])
    out = torch.zeros(len(param_names), n_mels, dtype=torch.float64)
    if cfg["strength"] == 0.0:
        return out
    from dsp.eq import GAIN_DB  # model -> dsp

    nyquist = 0.5 * float(features_config.get("sample_rate_hz", chain_sample_rate))
    centres = mel_centres_hz(n_mels, float(features_config["f_min"]), float(features_config["f_max"]))
    valid = (centres < 0.95 * nyquist).to(torch.float64)
    basis = section_basis_db(centres.clamp(max=0.95 * nyquist), chain_sample_rate)   # (M, 5)
    # level-free: the deviation is taken relative to its own mean over 300 Hz - 3 kHz (a
    # linear operation, folded into the matrix), so the fit cannot mimic a treble cut by
    # boosting everything below it
    mid = ((centres >= MID_HZ[0]) & (centres <= MID_HZ[1])).to(torch.float64) * valid
    if mid.sum() == 0:
        raise ValueError("tonal path: the features have no mel band between 300 Hz and 3 kHz")
    reference = torch.eye(n_mels, dtype=torch.float64) - torch.outer(torch.ones(n_mels, dtype=torch.float64),
                                                                       mid / mid.sum())
    w = valid[:, None]
    reg = cfg["ridge"] * torch.eye(len(GAIN_SECTIONS), dtype=torch.float64)
    solve = torch.linalg.solve(basis.T @ (w * basis) + reg, (w * basis).T) @ reference  # (5, M)
    # gains_db = solve @ (-strength * dev_db), dev_db = 20 * feature deviation;
    # normalized gain = (gain_db + GAIN_DB) / (2 GAIN_DB)
    per_feature = -cfg["strength"] * 20.0 / (2.0 * GAIN_DB) * solve
    for i, name in enumerate(GAIN_SECTIONS):
        key = f"eq.{name}.gain_db"
        if key not in param_names:
            raise ValueError(f"tonal path needs the chain parameter {key!r}")
        out[param_names.index(key)] = per_feature[i]
    return out


def tonal_limits(config: dict[str, Any] | None) -> tuple[float, float]:
    """(clip on the feature deviation in feature units, cap on each normalized move)."""
    from dsp.eq import GAIN_DB  # model -> dsp

    cfg = check_config(config)
    return cfg["clip_db"] / 20.0, cfg["max_db"] / (2.0 * GAIN_DB)
