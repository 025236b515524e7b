"""Checks of what an API caller passes to :func:`automaster.pipeline.master` (issue #9):
samples, orientation, numbers, and the reference (array or file)."""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from automaster.io import ArraySource, Source


def as_audio_array(audio: Any, what: str) -> np.ndarray:
    """An API caller's samples -> float32 ndarray, full scale 1.0.

    Float arrays (and float tensors, detached from autograd) are taken as they are; integer
    PCM (int8/int16/int32, and offset-binary uint8) is divided by its full scale; anything
    else (bool, complex, other integer widths, objects, strings) is a TypeError.
    """
    if hasattr(audio, "detach") and hasattr(audio, "cpu") and hasattr(audio, "numpy"):
        t = audio.detach().cpu()  # a tensor that requires grad: its values, without the graph
        if t.is_floating_point():
            t = t.float()  # float16/bfloat16 have no numpy twin
        audio = t.numpy()
    x = np.asarray(audio)
    kind, dt = x.dtype.kind, x.dtype
    if kind == "f":
        return x.astype(np.float32, copy=False)
    if kind in "iu" and dt.itemsize <= 4 and not (kind == "u" and dt.itemsize > 1):
        full = float(2 ** (8 * dt.itemsize - 1))
        offset = full if kind == "u" else 0.0  # 8-bit WAV PCM is unsigned, centred on 128
        return ((x.astype(np.float64) - offset) / full).astype(np.float32)
    if kind == "b":
        raise TypeError(f"{what} is a bool array; pass float samples in [-1, 1] (or int16/int32 PCM)")
    if kind == "c":
        raise TypeError(f"{what} is complex; pass real float samples in [-1, 1]")
    if kind in "iu":
        raise TypeError(f"{what} has dtype {dt}; integer PCM must be int8, int16, int32 or "
                        f"uint8 (a Python list of ints is int64: convert to float in [-1, 1])")
    raise TypeError(f"{what} has dtype {dt}; pass float samples in [-1, 1]")


def check_orientation(x: np.ndarray, what: str) -> None:
    if x.size == 0:  # (2, 0) is no audio, not a transposed array
        raise ValueError(f"{what} is empty (shape {x.shape}: no samples)")
    if x.shape[0] > x.shape[1]:
        if x.shape[1] <= 8:
            raise ValueError(f"{what} has shape {x.shape}, which looks like (samples, channels); "
                             f"pass it transposed ({what}.T) as (channels, samples)")
        raise ValueError(f"{what} must be (channels, samples); got {x.shape} (transposed?)")


def check_audio(audio: Any) -> np.ndarray:
    """The input samples -> (channels, samples) float32, or a ValueError/TypeError."""
    x = as_audio_array(audio, "audio")
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2:
        raise ValueError(f"audio must be (channels, samples) or (samples,), got shape {x.shape}")
    check_orientation(x, "audio")
    if x.shape[0] not in (1, 2):
        raise ValueError(f"audio must be mono or stereo, got {x.shape[0]} channels")
    return x


def check_length_and_values(x: np.ndarray, sample_rate: int) -> None:
    if x.shape[1] < int(0.4 * sample_rate):
        raise ValueError(f"audio is too short ({x.shape[1] / sample_rate:.3f} s; at least 0.4 s)")
    if not np.isfinite(x).all():
        raise ValueError("audio contains NaN or infinite samples")


def check_sample_rate(rate: Any, what: str = "sample_rate") -> None:
    from automaster.io import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE

    if (not isinstance(rate, (int, np.integer)) or isinstance(rate, bool)
            or not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE):
        raise ValueError(f"{what} must be an integer in [{MIN_SAMPLE_RATE}, {MAX_SAMPLE_RATE}], "
                         f"got {rate!r}")


def check_args(sample_rate: Any, target_lufs: Any, ceiling_dbtp: Any, intensity: Any) -> None:
    check_sample_rate(sample_rate)
    for name, value, optional in (("target_lufs", target_lufs, True),
                                  ("ceiling_dbtp", ceiling_dbtp, True),
                                  ("intensity", intensity, False)):
        if value is None and optional:
            continue
        try:  # what math.isfinite below takes (0-d arrays and tensors too), but not text
            if isinstance(value, (str, bytes)):
                raise TypeError
            float(value)
        except (TypeError, ValueError):
            raise TypeError(f"{name} must be a number, got {value!r:.40}") from None
    if target_lufs is not None and not (math.isfinite(target_lufs) and -70.0 < target_lufs <= 0.0):
        raise ValueError(f"target_lufs must be in (-70, 0], got {target_lufs}")
    if ceiling_dbtp is not None and not (math.isfinite(ceiling_dbtp) and -30.0 <= ceiling_dbtp <= 0.0):
        raise ValueError(f"ceiling_dbtp must be in [-30, 0], got {ceiling_dbtp}")
    if not (math.isfinite(intensity) and 0.0 <= intensity <= 1.0):
        raise ValueError(f"intensity must be in [0, 1], got {intensity}")


def reference_source(reference: Any, sample_rate: int) -> tuple[Source, str]:
    """A reference given as a file path or an array -> (Source, name), at most 2 channels."""
    if isinstance(reference, (str, os.PathLike)):
        from automaster.io import check_input_info, probe, read_audio

        check_input_info(probe(reference), downmix=True)
        data, sr = read_audio(reference)
        name = os.fspath(reference)
    else:
        data, sr, name = as_audio_array(reference, "reference"), int(sample_rate), "reference"
        if data.ndim == 1:
            data = data[None, :]
        if data.ndim != 2:
            raise ValueError(f"reference must be (channels, samples), got shape {data.shape}")
        check_orientation(data, "reference")
        if not np.isfinite(data).all():
            raise ValueError("reference contains NaN or infinite samples")
        if data.shape[1] < int(0.4 * sr):
            raise ValueError("reference is too short (at least 0.4 s)")
    if data.shape[0] > 2:
        from automaster.io import downmix_matrix

        data = downmix_matrix(data.shape[0]) @ data
    return ArraySource(data, sr), name
