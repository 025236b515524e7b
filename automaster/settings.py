"""Chain settings as JSON (``--params-out`` / ``--params-in``), with validation.

A settings file holds physical values keyed by ``MasteringChain.param_names``::

    {"format": "automaster-settings", "version": 1,
     "settings": {"eq.low_shelf.gain_db": 1.5, "multiband.low.ratio": 2.0, ...}, ...}

Only ``settings`` is read back; the other keys (source, target, ...) are informative. A
flat ``{name: value}`` object is accepted too. Names left out take the chain's identity
value (so a file can hold just the edits); unknown names, non-numbers and values outside
a parameter's range are errors naming the file and the parameter.
"""

from __future__ import annotations

import json
import math
import numbers
import os
from pathlib import Path
from typing import Any

from automaster.errors import SettingsError, one_line

FORMAT = "automaster-settings"
VERSION = 1
MAX_FILE_BYTES = 16 << 20  # a settings file is a few kB; refuse anything absurd before parsing


def read_settings_file(path: str | os.PathLike) -> dict[str, Any]:
    """Parse a settings JSON file into {name: value} (types checked, names not yet)."""
    p = Path(path)
    if not p.exists():
        raise SettingsError("settings file not found", path)
    if p.is_dir():
        raise SettingsError("is a folder, not a settings JSON file", path)
    try:
        if p.stat().st_size > MAX_FILE_BYTES:
            raise SettingsError(f"too large for a settings file ({p.stat().st_size} bytes; at "
                                f"most {MAX_FILE_BYTES})", path)
        data = json.loads(p.read_text(encoding="utf-8-sig"))  # a BOM from Notepad is fine
    except (OSError, UnicodeDecodeError) as e:
        raise SettingsError(f"cannot read settings ({one_line(e)})", path) from None
    except json.JSONDecodeError as e:
        raise SettingsError(f"invalid JSON ({e.msg} at line {e.lineno} column {e.colno})",
                            path) from None
    except RecursionError:
        raise SettingsError("invalid settings JSON (nested too deeply)", path) from None
    except (ValueError, OverflowError) as e:  # e.g. an integer of thousands of digits
        raise SettingsError(f"invalid settings JSON ({one_line(e)})", path) from None
    return parse_settings(data, path)


def parse_settings(data: Any, path: str | os.PathLike | None = None) -> dict[str, float]:
    """Settings object (flat or wrapped) -> {name: float}; SettingsError on bad types."""
    if isinstance(data, dict) and "files" in data and "settings" not in data:
        raise SettingsError("holds settings for several files (a batch --params-out); pass "
                            "one file's settings", path)
    if isinstance(data, dict) and "settings" in data:
        data = data["settings"]
    if not isinstance(data, dict):
        raise SettingsError("settings must be a JSON object of {parameter name: value}", path)
    out: dict[str, float] = {}
    for name, value in data.items():
        if getattr(value, "ndim", None) == 0 and hasattr(value, "item"):
            value = value.item()  # a 0-d numpy array or torch tensor (the Python API)
        if isinstance(value, bool) or not isinstance(value, numbers.Real):  # numpy scalars too
            shown = one_line(json.dumps(value, default=lambda o: type(o).__name__)
                             if not isinstance(value, (dict, list)) else type(value).__name__)[:60]
            raise SettingsError(f"parameter {name!r} must be a number, got {shown}", path)
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            raise SettingsError(f"parameter {name!r} is not finite", path)
        out[str(name)] = number
    return out


def complete_settings(settings: dict[str, float], ranges: dict, identity: dict[str, float],
                      path: str | os.PathLike | None = None) -> tuple[dict[str, float], list[str]]:
    """Check names and ranges against a chain; fill missing names from ``identity``.

    ``ranges``: name -> ParamRange. Returns (full settings in chain order, filled names).
    """
    unknown = [n for n in settings if n not in ranges]
    if unknown:
        raise SettingsError(f"unknown parameter{'s' if len(unknown) > 1 else ''} "
                            f"{', '.join(unknown)} (see --params-out for the names)", path)
    full: dict[str, float] = {}
    filled: list[str] = []
    for name, r in ranges.items():
        if name in settings:
            v = settings[name]
            lo, hi = float(r.low), float(r.high)
            tol = 1e-6 * max(abs(lo), abs(hi), 1.0)
            if v < lo - tol or v > hi + tol:
                unit = f" {r.unit}" if getattr(r, "unit", "") else ""
                raise SettingsError(f"{name} = {v:g} is outside its range [{lo:g}, {hi:g}]{unit}",
                                    path)
            full[name] = min(max(v, lo), hi)
        else:
            full[name] = float(identity[name])
            filled.append(name)
    return full, filled


def rounded(settings: dict[str, float], digits: int = 6) -> dict[str, float]:
    """Values rounded to ``digits`` significant digits (readable JSON, exact enough)."""
    out = {}
    for k, v in settings.items():
        out[k] = float(f"{v:.{digits}g}") if v else 0.0
    return out


def settings_document(settings: dict[str, float], **info: Any) -> dict[str, Any]:
    """The JSON object written by ``--params-out`` for one file."""
    return {"format": FORMAT, "version": VERSION, **info, "settings": rounded(settings)}
