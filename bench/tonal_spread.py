"""How well can a track's tonal balance be predicted from what an EQ does not change?

Issue #7's responsiveness bar asks the model to remove half of a +-6 dB shelf error, but
for a system that does not know the original, the best estimate of an EQ error is the
deviation it hears shrunk by sigma_e^2 / (sigma_e^2 + sigma_n^2), where sigma_n is the
natural spread of the band's level between finished masters (README, "Responsiveness").
A genre-aware target would shrink sigma_n to the residual of a prediction made from
descriptors a static EQ leaves alone. This script measures that residual on the corpus.

For every corpus track of at least 30 s (whole track, decoded float32 cache), the
shipped model's feature extractor (model.features, 8 windows of 3 s) gives per mel band
the mean level, the spread of window means, the mean frame spread and the flux (dB, the
last three unchanged by a static EQ), and the stereo descriptors. Targets: the 40-150 Hz
and 6-14 kHz levels relative to 300 Hz-3 kHz. Predictors (standardised, ridge):
temporal statistics, plus stereo, plus the mean-level shape inside 500 Hz-2.5 kHz (far
from both shelves). Reported: the targets' standard deviation, the 8-fold cross-validated
residual on the training split, and what the Bayes-limited correction would become for
the de-mastering's EQ errors (sigma_e 3.1 dB).

    python -m bench.tonal_spread            # needs python -m train.cache (the corpus cache)
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np

SIGMA_E_DB = 3.1  # the de-mastering's EQ errors (train/demaster.py, README)


def collect(manifest: str, cache_dir: str, min_seconds: float = 30.0):
    import torch

    from model.features import FeatureExtractor
    from model.tonal import mel_centres_hz
    from train.cache import AudioCache
    from train.data import scan_manifest, val_groups

    tracks = [t for t in scan_manifest(manifest) if t.duration_s >= min_seconds]
    val = val_groups([t.group for t in tracks], 0.1)
    cache = AudioCache(cache_dir)
    fx = FeatureExtractor(44100, 64, 8, 3.0, 0.093, 30.0, 16000.0)
    stats, stereo, is_val = [], [], []
    names = fx.feature_names
    cols = [i for i, n in enumerate(names) if n.startswith("stereo")]
    with torch.no_grad():
        for t in tracks:
            x = torch.from_numpy(cache.read(t.path, 0.0, cache.frames(t.path)))[None]
            a = fx.analyze(x)
            stats.append(a["mel_stats"][0].numpy())
            stereo.append(fx.vectorize(a)[0].numpy()[cols])
            is_val.append(t.group in val)
    return np.array(stats), np.array(stereo), np.array(is_val), mel_centres_hz(64, 30.0, 16000.0).numpy()


def cv_residual(X: np.ndarray, y: np.ndarray, lam: float, folds: int = 8, seed: int = 0) -> float:
    idx = np.arange(len(y))
    np.random.default_rng(seed).shuffle(idx)
    res = []
    for f in np.array_split(idx, folds):
        m = np.ones(len(y), bool)
        m[f] = False
        mu, sd = X[m].mean(0), X[m].std(0) + 1e-9
        Z = (X - mu) / sd
        w = np.linalg.solve(Z[m].T @ Z[m] + lam * np.eye(Z.shape[1]), Z[m].T @ (y[m] - y[m].mean()))
        res.append(y[f] - (Z[f] @ w + y[m].mean()))
    return float(np.concatenate(res).std())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--manifest", default="~/.cache/automaster/corpus/manifest.jsonl")
    ap.add_argument("--cache", default="~/.cache/automaster/corpus/cache")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    S, stereo, is_val, fc = collect(os.path.expanduser(args.manifest), os.path.expanduser(args.cache))
    train = ~is_val
    mean = S[:, 0]  # dB relative to the track's mean band level
    mid = mean[:, (fc >= 300) & (fc <= 3000)].mean(1)
    targets = {"bass 40-150 Hz": mean[:, (fc >= 40) & (fc <= 150)].mean(1) - mid,
               "treble 6-14 kHz": mean[:, (fc >= 6000) & (fc <= 14000)].mean(1) - mid}
    core = (fc >= 500) & (fc <= 2500)
    shape = mean[:, core] - mean[:, core].mean(1, keepdims=True)
    temporal = np.concatenate([S[:, 1], S[:, 2], S[:, 3]], 1)
    sets = {"temporal": temporal, "temporal + stereo": np.concatenate([temporal, stereo], 1),
            "temporal + stereo + 0.5-2.5 kHz shape": np.concatenate([temporal, stereo, shape], 1)}
    out = {"tracks": int(len(S)), "train_tracks": int(train.sum()), "sigma_e_db": SIGMA_E_DB, "targets": {}}
    for tname, y in targets.items():
        sd = float(y[train].std())
        row = {"std_db": round(sd, 2), "bayes_correction": round(SIGMA_E_DB**2 / (SIGMA_E_DB**2 + sd**2), 3)}
        for sname, X in sets.items():
            r = min(cv_residual(X[train], y[train], lam) for lam in (10.0, 100.0, 1000.0))
            row[sname] = {"cv_residual_db": round(r, 2),
                          "bayes_correction": round(SIGMA_E_DB**2 / (SIGMA_E_DB**2 + r**2), 3)}
        out["targets"][tname] = row
    if args.json:
        print(json.dumps(out))
        return
    print(f"{out['tracks']} tracks ({out['train_tracks']} in the training split); de-mastering EQ errors "
          f"sigma_e {SIGMA_E_DB} dB")
    for tname, row in out["targets"].items():
        print(f"{tname}: spread {row['std_db']} dB -> best correction {row['bayes_correction']}")
        for sname in sets:
            r = row[sname]
            print(f"  predicted from {sname}: residual {r['cv_residual_db']} dB -> {r['bayes_correction']}")


if __name__ == "__main__":
    main()
