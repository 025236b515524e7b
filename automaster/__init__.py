"""automaster: ML-assisted audio mastering through a differentiable PyTorch chain.

``automaster.master(audio, sample_rate, ...)`` masters an array (see
:func:`automaster.pipeline.master`); the ``automaster`` command does the same for files.
Heavy modules (torch, scipy, the model) load on first use, so importing this package and
running ``automaster --help`` stay instant.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["master", "MasterResult", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("master", "MasterResult"):
        from automaster import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'automaster' has no attribute {name!r}")
