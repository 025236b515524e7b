"""Parameter network: features (+ optional conditioning vector) -> normalized chain params.

A small MLP (LayerNorm + GELU blocks) whose hidden layers are FiLM-modulated by a
conditioning vector (style or reference embedding; zeros when absent, which leaves the
network unmodulated). Outputs go through a sigmoid so they are valid chain parameters in [0, 1].
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor, nn

MAX_PARAMETERS = 2_000_000


LEVEL_NAMES = ("target_lufs", "ceiling_dbtp")
LEVEL_CENTRE = (-14.0, -1.0)
LEVEL_SCALE = (6.0, 1.0)


def level_vector(target_lufs, ceiling_dbtp, batch: int, device=None, dtype=torch.float32) -> Tensor:
    """What the master is asked for, as the network's level input (batch, 2):
    ((target + 14) / 6, (ceiling + 1) / 1). Each of target and ceiling is a number, None
    (the defaults -14 LUFS / -1 dBTP) or a (batch,) tensor (non-finite entries -> default)."""
    cols = []
    for value, centre, scale in zip((target_lufs, ceiling_dbtp), LEVEL_CENTRE, LEVEL_SCALE):
        v = torch.full((batch,), centre, dtype=torch.float64) if value is None else \
            torch.as_tensor(value, dtype=torch.float64).detach().cpu().expand(batch)
        v = torch.where(torch.isfinite(v), v, torch.full_like(v, centre))
        cols.append(((v - centre) / scale).clamp(-5.0, 5.0))
    return torch.stack(cols, dim=1).to(device=device, dtype=dtype)


class ParameterNetwork(nn.Module):
    """features (batch, feature_dim), cond (batch, cond_dim) | None, levels (batch, n_levels)
    | None -> params (batch, num_params).

    ``n_levels`` extra inputs carry what the master is asked for (:func:`level_vector`:
    loudness target and true-peak ceiling), concatenated to the standardised features, so
    a -8 LUFS club master and a -16 LUFS one of the same mix can get different dynamics.

    ``feature_mean`` / ``feature_std`` buffers (default 0 / 1, saved with the weights) standardise
    the input; training sets them with ``set_feature_stats``. ``cond_dim=0`` disables conditioning.
    """

    def __init__(
        self,
        feature_dim: int,
        num_params: int,
        cond_dim: int = 64,
        hidden: Sequence[int] = (512, 512, 256),
        dropout: float = 0.1,
        n_levels: int = 0,
    ) -> None:
        super().__init__()
        hidden = [int(h) for h in hidden]
        if int(feature_dim) < 1 or int(num_params) < 1:
            raise ValueError(f"feature_dim and num_params must be >= 1, got {feature_dim}, "
                             f"{num_params}")
        if int(cond_dim) < 0:
            raise ValueError(f"cond_dim must be >= 0, got {cond_dim}")
        if int(n_levels) not in (0, len(LEVEL_NAMES)):
            raise ValueError(f"n_levels must be 0 or {len(LEVEL_NAMES)}, got {n_levels}")
        if not hidden or any(h < 1 for h in hidden):
            raise ValueError(f"hidden must be a non-empty list of positive sizes, got {hidden}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.feature_dim = int(feature_dim)
        self.num_params = int(num_params)
        self.cond_dim = int(cond_dim)
        self.hidden = hidden
        self.dropout = float(dropout)
        self.n_levels = int(n_levels)

        self.register_buffer("feature_mean", torch.zeros(self.feature_dim))
        self.register_buffer("feature_std", torch.ones(self.feature_dim))
        # fixed tonal-balance path (model/tonal.py), rebuilt from the model config, not saved
        self.register_buffer("tonal_map", torch.zeros(self.num_params, 0), persistent=False)
        self.register_buffer("tonal_target", torch.zeros(0), persistent=False)
        self.tonal_clip = 0.0
        self.tonal_cap = 0.0
        self.linears = nn.ModuleList()
        self.norms = nn.ModuleList()
        self.films = nn.ModuleList()
        width = self.feature_dim + self.n_levels
        for h in hidden:
            self.linears.append(nn.Linear(width, h))
            self.norms.append(nn.LayerNorm(h))
            if self.cond_dim > 0:
                film = nn.Linear(self.cond_dim, 2 * h)
                with torch.no_grad():   # small start: conditioning nudges, never dominates
                    film.weight.mul_(0.1)
                    film.bias.zero_()
                self.films.append(film)
            width = h
        self.act = nn.GELU()
        self.drop = nn.Dropout(self.dropout)
        self.out = nn.Linear(width, self.num_params)

        n = self.num_parameters()
        if n > MAX_PARAMETERS:
            raise ValueError(f"network has {n} parameters, more than the {MAX_PARAMETERS} limit; "
                             f"use smaller hidden sizes (got {hidden})")

    def config(self) -> dict[str, Any]:
        """Constructor kwargs (JSON-ready) that rebuild this network."""
        return {"feature_dim": self.feature_dim, "num_params": self.num_params,
                "cond_dim": self.cond_dim, "hidden": list(self.hidden), "dropout": self.dropout,
                "n_levels": self.n_levels}

    def num_parameters(self) -> int:
        """Number of trainable scalars (buffers excluded)."""
        return sum(p.numel() for p in self.parameters())

    @torch.no_grad()
    def set_feature_stats(self, mean: Tensor, std: Tensor) -> None:
        """Set input standardisation from data statistics, each (feature_dim,)."""
        mean = torch.as_tensor(mean).reshape(-1)
        std = torch.as_tensor(std).reshape(-1)
        if mean.numel() != self.feature_dim or std.numel() != self.feature_dim:
            raise ValueError(f"feature stats must have {self.feature_dim} entries, got "
                             f"{mean.numel()} and {std.numel()}")
        if not (torch.isfinite(mean).all() and torch.isfinite(std).all()):
            raise ValueError("feature stats must be finite")
        self.feature_mean.copy_(mean)
        self.feature_std.copy_(std.clamp_min(1e-3))

    @torch.no_grad()
    def init_output_to(self, p0: Tensor, weight_scale: float = 0.01) -> None:
        """Make the untrained net predict ~p0: output bias = logit(p0), weights scaled down.

        p0: (num_params,) or (1, num_params) in [0, 1], e.g. chain.identity_params(1).
        """
        p0 = torch.as_tensor(p0).detach().reshape(-1)
        if p0.numel() != self.num_params:
            raise ValueError(f"p0 must have {self.num_params} entries, got {p0.numel()}")
        if not torch.isfinite(p0).all() or (p0 < 0).any() or (p0 > 1).any():
            raise ValueError("p0 must be finite and inside [0, 1]")
        p0 = p0.to(device=self.out.bias.device, dtype=self.out.bias.dtype).clamp(1e-4, 1 - 1e-4)
        self.out.bias.copy_(torch.logit(p0))
        self.out.weight.mul_(float(weight_scale))

    @torch.no_grad()
    def set_tonal_map(self, tonal_map: Tensor, clip: float, cap: float, target: Tensor | None = None) -> None:
        """Install the fixed tonal-balance path: tonal_map (num_params, k) acts on the first k
        features' deviation from ``target`` (k,) (default ``feature_mean``), limited as
        :meth:`tonal_offset` says; each resulting move is capped at +-cap and added to the
        sigmoid output. An all-zero map disables it."""
        tonal_map = torch.as_tensor(tonal_map)
        if tonal_map.dim() != 2 or tonal_map.shape[0] != self.num_params or tonal_map.shape[1] > self.feature_dim:
            raise ValueError(f"tonal_map must be ({self.num_params}, k <= {self.feature_dim}), "
                             f"got {tuple(tonal_map.shape)}")
        if not torch.isfinite(tonal_map).all() or not (clip > 0 and cap > 0):
            raise ValueError("tonal_map must be finite, clip and cap > 0")
        if target is not None:
            target = torch.as_tensor(target)
            if target.shape != (tonal_map.shape[1],) or not torch.isfinite(target).all():
                raise ValueError(f"tonal target must be ({tonal_map.shape[1]},) and finite, got {tuple(target.shape)}")
        if not tonal_map.any():
            tonal_map, target = tonal_map[:, :0], None
        self.tonal_target = (torch.zeros(0) if target is None else target).to(
            device=self.feature_mean.device, dtype=self.feature_mean.dtype)
        self.tonal_map = tonal_map.to(device=self.feature_mean.device, dtype=self.feature_mean.dtype)
        self.tonal_clip = float(clip)
        self.tonal_cap = float(cap)

    def tonal_offset(self, features: Tensor) -> Tensor | None:
        """(batch, num_params) normalized moves of the tonal path, or None when it is off."""
        k = self.tonal_map.shape[1]
        if k == 0:
            return None
        target = self.tonal_target if self.tonal_target.numel() else self.feature_mean[:k]
        dev = features[:, :k] - target.to(features.dtype)
        # above the target: cut, limited to clip. Below it: boost, limited to clip, and
        # folded back to no boost at 2 x clip below: a band the mix leaves (almost) empty
        # on purpose (no sub-bass in a chiptune, a low-passed lossy top) is not filled up
        clip = self.tonal_clip
        dev = torch.where(dev < -clip, (-2.0 * clip - dev).clamp(max=0.0), dev).clamp(max=clip)
        return (dev @ self.tonal_map.to(features.dtype).T).clamp(-self.tonal_cap, self.tonal_cap)

    def _check_cond(self, cond: Tensor | None, features: Tensor) -> Tensor | None:
        if cond is None or self.cond_dim == 0:
            if cond is not None and cond.abs().sum() != 0:
                raise ValueError("this network has cond_dim=0 and cannot take a conditioning input")
            return None
        if not isinstance(cond, Tensor):
            raise ValueError(f"cond must be a tensor, got {type(cond).__name__}")
        if cond.dim() == 1:
            cond = cond.unsqueeze(0)
        if cond.dim() != 2 or cond.shape[1] != self.cond_dim:
            raise ValueError(f"cond must be (batch, {self.cond_dim}), got {tuple(cond.shape)}")
        if cond.shape[0] == 1 and features.shape[0] > 1:
            cond = cond.expand(features.shape[0], -1)
        if cond.shape[0] != features.shape[0]:
            raise ValueError(f"cond batch {cond.shape[0]} != features batch {features.shape[0]}")
        return cond.to(device=features.device, dtype=features.dtype)

    def forward(self, features: Tensor, cond: Tensor | None = None, levels: Tensor | None = None) -> Tensor:
        """features (batch, feature_dim), cond (batch, cond_dim) / (cond_dim,) / None,
        levels (batch, n_levels) / None (the defaults) -> params (batch, num_params) in [0, 1]."""
        if features.dim() != 2 or features.shape[1] != self.feature_dim:
            raise ValueError(f"features must be (batch, {self.feature_dim}), "
                             f"got {tuple(features.shape)}")
        cond = self._check_cond(cond, features)
        h = (features - self.feature_mean) / self.feature_std
        if self.n_levels:
            if levels is None:
                levels = level_vector(None, None, features.shape[0])
            if levels.shape != (features.shape[0], self.n_levels):
                raise ValueError(f"levels must be (batch, {self.n_levels}), got {tuple(levels.shape)}")
            h = torch.cat([h, levels.to(device=h.device, dtype=h.dtype)], dim=1)
        for i, (lin, norm) in enumerate(zip(self.linears, self.norms)):
            h = norm(lin(h))
            if cond is not None:
                gamma, beta = self.films[i](cond).chunk(2, dim=-1)
                h = h * (1.0 + gamma) + beta
            h = self.drop(self.act(h))
        p = torch.sigmoid(self.out(h))
        offset = self.tonal_offset(features)
        return p if offset is None else (p + offset).clamp(0.0, 1.0)
