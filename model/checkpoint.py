"""Checkpoints: ``<stem>.safetensors`` (weights) + ``<stem>.json`` (everything else).

Never pickles: weights go through safetensors only, metadata is plain JSON. Loading
verifies the schema version, required keys, the weights' SHA-256, the chain's range table
(so a model is never applied to a chain whose parameter meaning changed) and weight shapes;
any problem raises a one-line ``CheckpointError`` naming the file.
"""

from __future__ import annotations

import datetime as _dt
import glob
import hashlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from model.mastering_model import MasteringModel

SCHEMA_VERSION = 1
FORMAT = "automaster-checkpoint"


def _shipped_checkpoints_dir() -> Path:
    """The shipped models: ``model/_checkpoints`` inside an installed wheel (pyproject.toml maps
    the checkout's top-level ``checkpoints/`` there), else ``checkpoints/`` of the checkout."""
    from importlib.resources import files

    packaged = files(__package__ or "model").joinpath("_checkpoints")
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parent.parent / "checkpoints"


REGISTRY_DIR = _shipped_checkpoints_dir()
REGISTRY_PATH = REGISTRY_DIR / "registry.json"
_REQUIRED = {
    "format": str, "schema_version": int, "weights_sha256": str,
    "sample_rate": int, "model_config": dict, "feature_settings": dict, "range_table": list,
}
_RANGE_KEYS = ("name", "low", "high", "scale", "unit")
# Sanity bounds on untrusted metadata, checked before anything is allocated (issue #9). They
# do not depend on the current chain: the range-table comparison decides whether it fits.
MAX_METADATA_BYTES = 16 << 20
MAX_CHAIN_PARAMS = 1024
MAX_HIDDEN_LAYERS = 32
MAX_COND_DIM = 4096
MAX_MELS = 256
MAX_WINDOWS = 256


class CheckpointError(ValueError):
    """A checkpoint (or registry entry) that cannot be used, with a one-line reason."""


def _one_line(text: Any) -> str:
    return " ".join(str(text).split())


# ---------------------------------------------------------------------------- helpers
def _chain_range_table(sample_rate: int) -> list[dict[str, Any]]:
    """The current MasteringChain's range table (list of name/low/high/scale/unit dicts)."""
    from dsp import MasteringChain  # lazy: model -> dsp

    return MasteringChain(sample_rate=int(sample_rate)).range_table()


def _stem(path: str | os.PathLike) -> Path:
    p = Path(path)
    if p.suffix in (".safetensors", ".json"):
        return p.with_suffix("")
    return p


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _json_default(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor) or hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, (Path, _dt.datetime)):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON-serialisable")


def _finite_json(obj: Any) -> Any:
    """Replace non-finite floats by None (strict JSON has no NaN/Infinity)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_json(v) for v in obj]
    return obj


def _atomic_write(path: Path, write) -> None:
    """Run write(tmp_path) on a temp file beside ``path``, then os.replace it into place."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _int_in(value: Any, low: int, high: int, what: str, where: Path) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise CheckpointError(f"{where}: {what} must be an integer, got {_short(value)}")
    if not low <= value <= high:
        raise CheckpointError(f"{where}: {what} = {_short(value)} is outside [{low}, {high}]")
    return value


def _short(value: Any) -> str:
    text = repr(value) if not isinstance(value, int) or value.bit_length() < 64 \
        else f"an integer of {value.bit_length()} bits"
    return text if len(text) <= 40 else text[:37] + "..."


def check_metadata_sizes(meta: dict[str, Any], where: Path) -> int:
    """Bound every size in untrusted metadata before anything is built or allocated.

    Checks the sample rate, range-table and parameter-name lengths, the feature settings
    (n_mels, n_windows) and the network's shape (layer count, widths, cond_dim), and
    computes the network's parameter count from them with integer arithmetic, refusing it
    above ``model.network.MAX_PARAMETERS``. Returns the expected number of weight values
    (parameters and buffers), which bounds the size of the weights file.
    """
    from model.features import DESCRIPTORS, MAX_SAMPLE_RATE, MEL_STATS, MIN_SAMPLE_RATE
    from model.network import MAX_PARAMETERS

    _int_in(meta["sample_rate"], MIN_SAMPLE_RATE, MAX_SAMPLE_RATE, "sample_rate", where)
    _int_in(len(meta["range_table"]), 1, MAX_CHAIN_PARAMS, "range table length", where)
    config = meta["model_config"]
    num_params = _int_in(config.get("num_params"), 1, MAX_CHAIN_PARAMS, "model_config num_params",
                         where)
    names = config.get("param_names")
    if names is not None and (not isinstance(names, list) or len(names) > MAX_CHAIN_PARAMS):
        raise CheckpointError(f"{where}: model_config param_names must be a list of at most "
                              f"{MAX_CHAIN_PARAMS} names")
    feats = config.get("features", {}) or {}
    net = config.get("network", {}) or {}
    if not isinstance(feats, dict) or not isinstance(net, dict):
        raise CheckpointError(f"{where}: model_config features and network must be objects")
    n_mels = _int_in(feats.get("n_mels", 64), 4, MAX_MELS, "features n_mels", where)
    _int_in(feats.get("n_windows", 8), 1, MAX_WINDOWS, "features n_windows", where)
    if "sample_rate_hz" in feats:
        _int_in(feats["sample_rate_hz"], MIN_SAMPLE_RATE, MAX_SAMPLE_RATE,
                "features sample_rate_hz", where)
    cond = _int_in(net.get("cond_dim", 64), 0, MAX_COND_DIM, "network cond_dim", where)
    hidden = net.get("hidden", [512, 512, 256])
    if not isinstance(hidden, list) or not 1 <= len(hidden) <= MAX_HIDDEN_LAYERS:
        raise CheckpointError(f"{where}: network hidden must be a list of 1 to "
                              f"{MAX_HIDDEN_LAYERS} layer sizes")
    width = feature_dim = len(MEL_STATS) * n_mels + len(DESCRIPTORS)
    total = 0
    for i, h in enumerate(hidden):
        h = _int_in(h, 1, MAX_PARAMETERS, f"network hidden[{i}]", where)
        total += width * h + h + 2 * h + (2 * h * cond + 2 * h if cond else 0)
        width = h
    total += width * num_params + num_params
    if total > MAX_PARAMETERS:
        raise CheckpointError(f"{where}: the network described would have {total} parameters, "
                              f"more than the {MAX_PARAMETERS} limit; refusing to build it")
    return total + 2 * feature_dim


def _compare_range_tables(saved: list, current: list[dict[str, Any]], where: Path) -> None:
    if len(saved) != len(current):
        raise CheckpointError(f"{where}: range table has {len(saved)} parameters but the current "
                              f"MasteringChain has {len(current)}; retrain or use a matching chain")
    for i, (s, c) in enumerate(zip(saved, current)):
        if not isinstance(s, dict) or any(k not in s for k in _RANGE_KEYS):
            raise CheckpointError(f"{where}: range table entry {i} is malformed (needs keys "
                                  f"{', '.join(_RANGE_KEYS)})")
        for key in _RANGE_KEYS:
            a, b = s[key], c[key]
            if key in ("low", "high"):
                same = (isinstance(a, (int, float)) and not isinstance(a, bool)
                        and math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12))
            else:
                same = a == b
            if not same:
                raise CheckpointError(
                    f"{where}: range table differs from the current MasteringChain at parameter "
                    f"{i} ({c['name']!r}): {key} is {a!r} in the checkpoint, {b!r} now; the "
                    f"model was trained for a different chain")


# ---------------------------------------------------------------------------- registry
def registered_models() -> dict[str, dict[str, Any]]:
    """Entries of checkpoints/registry.json: name -> {"file", "description", ...}."""
    try:
        data = json.loads(REGISTRY_PATH.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{REGISTRY_PATH}: model registry not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{REGISTRY_PATH}: unreadable model registry ({_one_line(e)})") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) and isinstance(v.get("file"), str)
                                             for v in data.values()):
        raise CheckpointError(f"{REGISTRY_PATH}: registry must map names to "
                              f"{{\"file\": ..., \"description\": ...}} objects")
    return data


def resolve_checkpoint(path_or_name: str | os.PathLike) -> Path:
    """Registry name or path (stem, .safetensors or .json) -> checkpoint stem path.

    A bare word (no separator, no suffix, no such checkpoint file in the current directory)
    is looked up in checkpoints/registry.json.
    """
    text = os.fspath(path_or_name)
    p = Path(text)
    is_pathlike = (isinstance(path_or_name, os.PathLike) or os.sep in text or "/" in text
                   or p.suffix in (".safetensors", ".json")
                   or p.with_suffix(".safetensors").is_file() or p.with_suffix(".json").is_file())
    if is_pathlike:
        return _stem(p)
    models = registered_models()
    if text not in models:
        names = ", ".join(sorted(models)) or "(none)"
        raise CheckpointError(f"unknown model name {text!r}; available: {names} "
                              f"(registry {REGISTRY_PATH})")
    stem = _stem(REGISTRY_DIR / models[text]["file"])
    weights = stem.with_suffix(".safetensors")
    if not weights.exists():
        raise CheckpointError(f"{weights}: registered model {text!r} has no weights file "
                              f"(not trained/shipped yet?)")
    return stem


# ---------------------------------------------------------------------------- save / load
def save_checkpoint(path: str | os.PathLike, model: MasteringModel,
                    training_summary: dict[str, Any] | None = None) -> Path:
    """Write ``<stem>.safetensors`` and ``<stem>.json`` atomically; returns the weights path.

    ``path`` may be the stem or either file name. The JSON carries the model config, the
    current MasteringChain range table, sample rate, feature settings, schema version and the
    (JSON-serialisable) training summary.
    """
    from safetensors.torch import save_file

    if not isinstance(model, MasteringModel):
        raise ValueError(f"model must be a MasteringModel, got {type(model).__name__}")
    if training_summary is not None and not isinstance(training_summary, dict):
        raise ValueError(f"training_summary must be a dict or None, got "
                         f"{type(training_summary).__name__}")
    stem = _stem(path)
    stem.parent.mkdir(parents=True, exist_ok=True)
    weights_path = stem.with_suffix(".safetensors")
    json_path = stem.with_suffix(".json")

    range_table = _chain_range_table(model.chain_sample_rate)
    if len(range_table) != model.num_params:
        raise ValueError(f"model predicts {model.num_params} parameters but the current "
                         f"MasteringChain has {len(range_table)}")
    names = [r["name"] for r in range_table]
    if model.param_names is not None and list(model.param_names) != names:
        raise ValueError("model param_names differ from the current MasteringChain's names")

    tensors = {k: v.detach().to("cpu").contiguous().clone()
               for k, v in model.state_dict().items()}
    st_meta = {"format": FORMAT, "schema_version": str(SCHEMA_VERSION)}
    _atomic_write(weights_path, lambda tmp: save_file(tensors, str(tmp), metadata=st_meta))

    summary = None
    if training_summary is not None:
        try:
            summary = json.loads(json.dumps(training_summary, default=_json_default))
        except (TypeError, ValueError) as e:
            raise ValueError(f"training_summary is not JSON-serialisable: {_one_line(e)}") from None
    meta = {
        "format": FORMAT,
        "schema_version": SCHEMA_VERSION,
        "weights_file": weights_path.name,
        "weights_sha256": _sha256(weights_path),
        "sample_rate": model.chain_sample_rate,
        "model_config": model.config,
        "feature_settings": {**model.features.config(), "feature_dim": model.feature_dim,
                             "feature_names": model.features.feature_names},
        "range_table": range_table,
        "param_names": names,
        "num_trainable_parameters": model.num_parameters(),
        "training_summary": _finite_json(summary),
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "torch_version": torch.__version__,
    }
    text = json.dumps(_finite_json(meta), indent=2, allow_nan=False) + "\n"
    _atomic_write(json_path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return weights_path


def read_metadata(path_or_name: str | os.PathLike) -> dict[str, Any]:
    """Parse and validate a checkpoint's JSON metadata (no weights, no range-table check)."""
    stem = resolve_checkpoint(path_or_name)
    json_path = stem.with_suffix(".json")
    if not json_path.exists():
        if not json_path.parent.is_dir() or not any(json_path.parent.glob(glob.escape(stem.name) + ".*")):
            raise CheckpointError(f"{path_or_name}: model checkpoint not found (no "
                                  f"{stem.name}.safetensors / .json in {json_path.parent})")
        raise CheckpointError(f"{json_path}: checkpoint metadata file not found")
    try:
        size = json_path.stat().st_size
        if size > MAX_METADATA_BYTES:
            raise CheckpointError(f"{json_path}: metadata file too large ({size} bytes; at most "
                                  f"{MAX_METADATA_BYTES})")
        meta = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{json_path}: cannot read metadata ({_one_line(e)})") from None
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{json_path}: corrupt metadata JSON ({e.msg} at line {e.lineno} "
                              f"column {e.colno})") from None
    except RecursionError:
        raise CheckpointError(f"{json_path}: corrupt metadata JSON (nested too deeply)") from None
    except (ValueError, OverflowError) as e:  # e.g. integers of thousands of digits
        raise CheckpointError(f"{json_path}: corrupt metadata JSON ({_one_line(e)})") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{json_path}: metadata must be a JSON object")
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{json_path}: not an automaster checkpoint (format is "
                              f"{meta.get('format')!r}, expected {FORMAT!r})")
    version = meta.get("schema_version")
    if version != SCHEMA_VERSION or isinstance(version, bool):
        raise CheckpointError(f"{json_path}: schema_version {version!r} is not supported "
                              f"(this code reads version {SCHEMA_VERSION})")
    missing = [k for k in _REQUIRED if k not in meta]
    if missing:
        raise CheckpointError(f"{json_path}: metadata is missing keys: {', '.join(missing)}")
    for key, typ in _REQUIRED.items():
        if not isinstance(meta[key], typ) or isinstance(meta[key], bool):
            raise CheckpointError(f"{json_path}: metadata key {key!r} must be {typ.__name__}, "
                                  f"got {type(meta[key]).__name__}")
    check_metadata_sizes(meta, json_path)
    return meta


def load_checkpoint(path_or_name: str | os.PathLike, device: str | torch.device = "cpu",
                    *, check_range_table: bool = True) -> MasteringModel:
    """Registry name or checkpoint path -> MasteringModel in eval mode on ``device``.

    Raises CheckpointError (one line, naming the file) for anything missing, corrupt,
    from another schema version, for a different chain, or with mismatched weights.
    ``model.checkpoint_metadata`` holds the parsed JSON.
    """
    from safetensors.torch import load_file

    stem = resolve_checkpoint(path_or_name)
    json_path = stem.with_suffix(".json")
    meta = read_metadata(stem)
    weights_path = stem.with_suffix(".safetensors")   # the pair may have been renamed together
    if not weights_path.exists():
        raise CheckpointError(f"{weights_path}: checkpoint weights file not found")
    values = check_metadata_sizes(meta, json_path)
    limit = 8 * values + (1 << 20)  # float64 at most, plus the safetensors header
    if weights_path.stat().st_size > limit:
        raise CheckpointError(f"{weights_path}: weights file is {weights_path.stat().st_size} "
                              f"bytes, far more than the {values} values the metadata describes")

    if check_range_table:
        try:
            current = _chain_range_table(meta["sample_rate"])
        except (ValueError, TypeError) as e:
            raise CheckpointError(f"{json_path}: cannot build the MasteringChain at "
                                  f"{meta['sample_rate']} Hz ({_one_line(e)})") from None
        _compare_range_tables(meta["range_table"], current, json_path)

    digest = _sha256(weights_path)
    if digest != meta["weights_sha256"]:
        raise CheckpointError(f"{weights_path}: weights do not match the metadata's sha256 "
                              f"(corrupt, truncated or replaced file)")
    try:
        tensors = load_file(str(weights_path), device="cpu")
    except Exception as e:  # safetensors raises its own error type for every bad header/size
        raise CheckpointError(f"{weights_path}: corrupt or truncated safetensors file "
                              f"({_one_line(e)})") from None

    config = meta["model_config"]
    if config.get("num_params") != len(meta["range_table"]):
        raise CheckpointError(f"{json_path}: model_config num_params {config.get('num_params')!r} "
                              f"!= {len(meta['range_table'])} parameters in the range table")
    if config.get("chain_sample_rate") != meta["sample_rate"]:
        raise CheckpointError(f"{json_path}: model_config chain_sample_rate "
                              f"{config.get('chain_sample_rate')!r} != sample_rate "
                              f"{meta['sample_rate']}")
    try:
        model = MasteringModel.from_config(config)
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{json_path}: invalid model_config ({_one_line(e)})") from None

    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"{weights_path}: weights do not fit the config (missing: "
                              f"{', '.join(missing[:4]) or '-'}; unexpected: "
                              f"{', '.join(unexpected[:4]) or '-'})")
    for key, ref in expected.items():
        t = tensors[key]
        if tuple(t.shape) != tuple(ref.shape):
            raise CheckpointError(f"{weights_path}: tensor {key!r} has shape {tuple(t.shape)} but "
                                  f"the config needs {tuple(ref.shape)}")
        if not t.is_floating_point() or not torch.isfinite(t).all():
            raise CheckpointError(f"{weights_path}: tensor {key!r} is not finite floating point")
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in tensors.items()}, strict=True)
    # how reports name it: the registry name it was loaded by, or the checkpoint's file stem
    spec = os.fspath(path_or_name)
    named = not any(sep in spec for sep in ("/", os.sep)) and not spec.endswith((".json", ".safetensors"))
    model.checkpoint_metadata = {**meta, "model_name": spec if named else stem.name}
    return model.to(device).eval()
