"""``python -m train``: same as ``automaster-train`` (Hydra overrides, --multirun)."""

from train.cli import main

if __name__ == "__main__":  # guard: DataLoader workers are spawned and re-import __main__
    raise SystemExit(main())
