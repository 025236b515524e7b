"""Training throughput: steps/s, items/s and where a step's time goes.

    python -m bench.train_step                       # experiment=default, corpus data
    python -m bench.train_step experiment=smoke      # any Hydra overrides
    python -m bench.train_step --steps 6 --items 16

Measures, in one process: the data side per item (excerpt read, de-mastering, the
worker-side analysis: features, reference and render levels), then training steps on
collated batches, split into network forward, chain render (forward), loss, backward and
optimizer. Threads: torch uses --threads (default 1, as in a training run where the data
worker takes the other core). Prints one table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

import torch


def _compose(overrides: list[str]):
    from hydra import compose, initialize_config_dir

    from train.cli import CONFIG_DIR

    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        return compose(config_name="config", overrides=overrides)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--items", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("overrides", nargs="*", default=["experiment=default"])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    try:
        import numba

        numba.set_num_threads(args.threads)
    except (ImportError, ValueError):
        pass
    from train.loop import Trainer
    from train.pairs import collate, item_generator

    cfg = _compose(args.overrides + ["trainer.progress=false", "data.val_items=0", "trainer.feature_stats_items=0"])
    trainer = Trainer(cfg, tempfile.mkdtemp(prefix="bench_train_"))
    ds = trainer.train_set
    parts = {"read": [], "demaster": [], "analysis": []}
    items = []
    for i in range(args.items):
        t0 = time.perf_counter()
        master = ds.source.excerpt(i).float()
        t1 = time.perf_counter()
        degraded, params = ds.demasterer(master, item_generator(ds.seed, "train", i))
        t2 = time.perf_counter()
        ds.analysis(degraded, master[..., : ds.crop_samples or master.shape[-1]])
        t3 = time.perf_counter()
        if i:  # the first item pays one-time compilation
            parts["read"].append(t1 - t0)
            parts["demaster"].append(t2 - t1)
            parts["analysis"].append(t3 - t2)
        items.append(ds[i])
    b = trainer.local_batch
    # full batches whatever --items is (items reused round-robin)
    batches = [collate([items[(k * b + j) % len(items)] for j in range(b)]) for k in range(args.steps + 1)]
    steps = {"network": [], "render": [], "loss": [], "backward": [], "optimizer": []}
    for k, batch in enumerate(batches):
        x, tgt = batch["input"], batch["target"]
        t0 = time.perf_counter()
        p = trainer.net(batch["features"].float(), None, trainer._levels(batch))
        t1 = time.perf_counter()
        y = trainer.renderer(x, p, batch)
        t2 = time.perf_counter()
        loss, _ = trainer.loss_fn(y, tgt, p, batch.get("param_target"), batch.get("param_mask"))
        t3 = time.perf_counter()
        trainer.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        t4 = time.perf_counter()
        trainer.optimizer.step()
        t5 = time.perf_counter()
        if k:  # warm-up step excluded
            for name, dt in zip(steps, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)):
                steps[name].append(dt)
    med = {k: statistics.median(v) for k, v in {**parts, **steps}.items()}
    item_s = med["read"] + med["demaster"] + med["analysis"]
    step_s = sum(med[k] for k in steps)
    crop = x.shape[-1] / trainer.sample_rate
    print(f"batch {b} x {crop:.1f} s crops, context {items[0]['context'].shape[-1] / trainer.sample_rate:.1f} s, "
          f"{args.threads} thread(s)")
    print("data, per item (median):")
    for k in parts:
        print(f"  {k:10s} {med[k] * 1000:8.1f} ms")
    print(f"  {'total':10s} {item_s * 1000:8.1f} ms  -> {1 / item_s:.1f} items/s per data worker")
    print("training step (median):")
    for k in steps:
        print(f"  {k:10s} {med[k] * 1000:8.1f} ms")
    print(f"  {'total':10s} {step_s * 1000:8.1f} ms  -> {1 / step_s:.2f} steps/s, {b / step_s:.1f} items/s")
    # the main process and the data workers run side by side: the slower one sets the pace
    workers = max(1, int(cfg.data.get("num_workers", 1) or 1))
    paced = max(step_s, b * item_s / workers)
    print(f"with {workers} data worker(s) beside the main process: about {paced:.2f} s per step "
          f"({'data' if b * item_s / workers > step_s else 'main process'} bound)")
    print(json.dumps({"batch": b, "crop_s": crop, "item_ms": {k: round(med[k] * 1000, 1) for k in parts},
                      "step_ms": {k: round(med[k] * 1000, 1) for k in steps}, "step_s": round(step_s, 3),
                      "steps_per_s": round(1 / step_s, 3), "data_items_per_s_per_worker": round(1 / item_s, 2),
                      "data_workers": workers, "paced_step_s": round(paced, 3)}))


if __name__ == "__main__":
    main()
