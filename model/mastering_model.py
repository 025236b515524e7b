"""MasteringModel: feature extractor + parameter network + the hyperparameters that rebuild them."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor, nn

from model.features import FeatureExtractor
from model.network import ParameterNetwork


class MasteringModel(nn.Module):
    """Audio (batch, channels, samples) -> normalized chain parameters (batch, num_params).

    ``config`` (JSON-ready dict) fully rebuilds the module: chain_sample_rate, num_params,
    param_names, features (FeatureExtractor kwargs), network (ParameterNetwork kwargs minus
    feature_dim / num_params) and optionally tonal (model/tonal.py: the fixed tonal-balance
    path added to the EQ gains; absent = off). When num_params / param_names are not given they are read from
    ``dsp.MasteringChain(chain_sample_rate)``.
    """

    def __init__(
        self,
        chain_sample_rate: int = 44100,
        num_params: int | None = None,
        param_names: list[str] | None = None,
        features: dict[str, Any] | None = None,
        network: dict[str, Any] | None = None,
        tonal: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if num_params is None or param_names is None:
            from dsp import MasteringChain  # lazy: model -> dsp

            chain = MasteringChain(sample_rate=int(chain_sample_rate))
            if num_params is None:
                num_params = chain.num_params
            if param_names is None and int(num_params) == chain.num_params:
                param_names = list(chain.param_names)
        if param_names is not None and len(param_names) != int(num_params):
            raise ValueError(f"param_names has {len(param_names)} entries but num_params is "
                             f"{num_params}")
        features = dict(features or {})
        features.setdefault("sample_rate_hz", int(chain_sample_rate))
        network = dict(network or {})
        for key in ("feature_dim", "num_params"):
            if key in network:
                raise ValueError(f"network config must not set {key!r}: it is derived")

        self.chain_sample_rate = int(chain_sample_rate)
        self.num_params = int(num_params)
        self.param_names = list(param_names) if param_names is not None else None
        self.features = FeatureExtractor(**features)
        self.network = ParameterNetwork(self.features.feature_dim, self.num_params, **network)
        from model import tonal as tonal_mod

        self.tonal = tonal_mod.check_config(tonal) if tonal is not None else None
        if self.tonal is not None and self.tonal["strength"] > 0:
            if self.param_names is None:
                raise ValueError("the tonal path needs param_names")
            self.network.set_tonal_map(
                tonal_mod.tonal_matrix(self.features.config(), self.param_names, self.chain_sample_rate, self.tonal),
                *tonal_mod.tonal_limits(self.tonal),
                target=tonal_mod.tonal_target(self.features.config(), self.tonal))

    @property
    def config(self) -> dict[str, Any]:
        """Constructor kwargs (JSON-ready deep copy) that rebuild this model."""
        net = self.network.config()
        net.pop("feature_dim")
        net.pop("num_params")
        out = {
            "chain_sample_rate": self.chain_sample_rate,
            "num_params": self.num_params,
            "param_names": self.param_names,
            "features": self.features.config(),
            "network": net,
        }
        if self.tonal is not None:
            out["tonal"] = self.tonal
        return copy.deepcopy(out)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "MasteringModel":
        """Rebuild from ``config`` (as returned by the property)."""
        if not isinstance(config, dict):
            raise ValueError(f"model config must be a dict, got {type(config).__name__}")
        unknown = set(config) - {"chain_sample_rate", "num_params", "param_names", "features",
                                 "network", "tonal"}
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        return cls(**copy.deepcopy(config))

    @property
    def feature_dim(self) -> int:
        """Length of the feature vector fed to the network."""
        return self.features.feature_dim

    @property
    def cond_dim(self) -> int:
        """Size of the conditioning vector (0 = none)."""
        return self.network.cond_dim

    def num_parameters(self) -> int:
        """Trainable scalars (the feature extractor has none)."""
        return self.network.num_parameters()

    def extract(self, x: Tensor, sample_rate: int | None = None) -> Tensor:
        """Audio (batch, channels, samples) -> features (batch, feature_dim) in the net's dtype."""
        ref = self.network.out.weight
        return self.features(x.to(ref.device), sample_rate).to(ref.dtype)

    def forward(self, x: Tensor, sample_rate: int | None = None,
                cond: Tensor | None = None, levels: Tensor | None = None) -> Tensor:
        """Audio (batch, channels, samples) at sample_rate (default chain_sample_rate),
        cond (batch, cond_dim) | None -> params (batch, num_params) in [0, 1], differentiable
        w.r.t. the network weights (not the audio)."""
        if isinstance(sample_rate, Tensor):
            raise ValueError("sample_rate must be an int; pass the conditioning as cond=...")
        sr = self.chain_sample_rate if sample_rate is None else sample_rate
        return self.network(self.extract(x, sr), cond, levels)

    def predict(self, x: Tensor, sample_rate: int | None = None,
                cond: Tensor | None = None, target_lufs=None, ceiling_dbtp=None) -> Tensor:
        """Inference: like forward but in eval mode (no dropout) and without autograd;
        ``target_lufs`` / ``ceiling_dbtp`` (numbers, None = -14 / -1) are what the master is
        asked for. Returns (batch, num_params) on the model's device."""
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                levels = None
                if self.network.n_levels:
                    from model.network import level_vector

                    levels = level_vector(target_lufs, ceiling_dbtp, x.shape[0], device=self.network.out.weight.device)
                return self.forward(x, sample_rate, cond, levels)
        finally:
            self.train(was_training)
