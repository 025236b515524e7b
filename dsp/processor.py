"""Base class for the normalized-parameter processor modules."""

from __future__ import annotations

from abc import ABCMeta, abstractmethod

import torch
from torch import nn

from dsp.ranges import ParamRange, check_audio, check_params


class Processor(nn.Module, metaclass=ABCMeta):
    """A processor with a declared range table.

    Subclasses set ``ranges`` (ordered name -> ParamRange) and implement
    ``process(x, values)`` where ``values`` maps each name to a (batch,) tensor in
    physical units. ``forward(x, p)`` validates, denormalizes and calls it.
    """

    ranges: dict[str, ParamRange] = {}

    def __init__(self, sample_rate: float) -> None:
        super().__init__()
        if not sample_rate > 0:
            raise ValueError(f"sample_rate must be positive, got {sample_rate}")
        self.sample_rate = float(sample_rate)

    @property
    def param_names(self) -> list[str]:
        return list(self.ranges)

    @property
    def num_params(self) -> int:
        return len(self.ranges)

    def denormalize(self, p: torch.Tensor) -> dict[str, torch.Tensor]:
        """(batch, n) normalized -> {name: (batch,) physical}."""
        return {name: r.to_physical(p[:, i]) for i, (name, r) in enumerate(self.ranges.items())}

    def identity_values(self) -> dict[str, float]:
        """Physical settings that leave audio unchanged (subclasses override)."""
        raise ValueError(f"{type(self).__name__} has no identity setting")

    def forward(self, x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        """x: (batch, channels, samples); p: (batch, n) in [0, 1] -> same shape as x."""
        check_audio(x)
        check_params(p, self.num_params, x.shape[0])
        return self.process(x, self.denormalize(p.to(x.dtype)))

    @abstractmethod
    def process(self, x: torch.Tensor, values: dict[str, torch.Tensor]) -> torch.Tensor:
        """Render with physical ``values`` ({name: (batch,)}); x: (batch, channels, samples)."""
