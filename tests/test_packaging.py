"""Packaging: the wheel carries the code, the shipped models and the Hydra configs, and the
installed code finds its data through importlib.resources rather than the checkout.

(.ci/wheel-check.sh goes further in CI: it installs the wheel into a fresh environment and
masters the bundled example from a folder outside the checkout.)
"""

from __future__ import annotations

import fnmatch
import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CODE = ("automaster", "dsp", "model", "train")


def _setuptools_config() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]


def test_package_list_names_every_code_folder():
    """pyproject.toml lists its packages explicitly (to map checkpoints/ and configs/ into
    them), so a new code folder must be added there or the wheel would leave it out."""
    packages = set(_setuptools_config()["packages"])
    folders = {p.parent.relative_to(ROOT).as_posix().replace("/", ".")
               for top in CODE for p in (ROOT / top).rglob("*.py") if "__pycache__" not in p.parts}
    assert folders <= packages, f"missing from [tool.setuptools] packages: {sorted(folders - packages)}"


def test_package_data_covers_the_shipped_files():
    cfg = _setuptools_config()
    for package, folder in cfg["package-dir"].items():
        assert package in cfg["packages"]
        patterns = cfg["package-data"][package]
        files = [p.relative_to(ROOT / folder).as_posix() for p in (ROOT / folder).rglob("*") if p.is_file()]
        assert files, folder
        missed = [f for f in files if not any(fnmatch.fnmatch(f, pat) or fnmatch.fnmatch(f, pat.replace("**/", ""))
                                              for pat in patterns)]
        assert not missed, f"{folder}/ files not shipped: {missed}"


def test_checkout_finds_its_own_models_and_configs(monkeypatch):
    from model.checkpoint import REGISTRY_DIR
    from train.cli import _config_dir

    monkeypatch.delenv("AUTOMASTER_CONFIG_DIR", raising=False)
    assert REGISTRY_DIR == ROOT / "checkpoints"
    assert _config_dir() == ROOT / "configs"
    monkeypatch.setenv("AUTOMASTER_CONFIG_DIR", "/somewhere/else")
    assert _config_dir() == Path("/somewhere/else")


@pytest.mark.slow
def test_wheel_contents_and_lookup(tmp_path):
    """Build the wheel (no network: the environment's setuptools), unpack it as a
    site-packages folder, and check the code there finds the packaged data, not the checkout."""
    import shutil

    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", *CODE, "checkpoints", "configs"):
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(ROOT / name, src / name)
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                          "-w", str(tmp_path / "dist"), str(src)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    (wheel,) = (tmp_path / "dist").glob("automaster-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {"model/_checkpoints/registry.json", "model/_checkpoints/default.safetensors",
               "model/_checkpoints/default.json", "train/_configs/config.yaml",
               "train/_configs/experiment/default.yaml", "automaster/examples/example.ogg",
               "automaster/cli.py", "dsp/_bs1770.py", "model/checkpoint.py", "train/cli.py"}
    assert shipped <= names, sorted(shipped - names)
    configs = {p.relative_to(ROOT / "configs").as_posix() for p in (ROOT / "configs").rglob("*.yaml")}
    assert {f"train/_configs/{c}" for c in configs} <= names
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = ("from model.checkpoint import REGISTRY_DIR, resolve_checkpoint; from train.cli import CONFIG_DIR; "
            "print(REGISTRY_DIR); print(CONFIG_DIR); print(resolve_checkpoint('default'))")
    env = {k: v for k, v in os.environ.items() if k != "AUTOMASTER_CONFIG_DIR"}
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                         env={**env, "PYTHONPATH": str(site)})
    assert res.returncode == 0, res.stderr
    registry, config, default = res.stdout.split()
    assert Path(registry) == site / "model" / "_checkpoints"
    assert Path(config) == site / "train" / "_configs"
    assert Path(default) == site / "model" / "_checkpoints" / "default"
