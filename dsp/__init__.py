"""Differentiable mastering processors in PyTorch (CPU and CUDA).

Audio is (batch, channels, samples) float32; processor parameters are (batch, n)
normalized to [0, 1]. Each processor has a pure function in physical units and a
thin ``nn.Module`` with a declared range table.

The names below are imported on first use (PEP 562), so ``import dsp._bs1770`` (the
torch-free BS.1770 definitions that ``automaster.metering`` shares) does not import torch.
"""

from importlib import import_module as _import_module

_EXPORTS = {
    "MasteringChain": "dsp.chain",
    "Compressor": "dsp.compressor", "compress": "dsp.compressor", "compressor_gain_db": "dsp.compressor",
    "ParametricEQ": "dsp.eq", "parametric_eq": "dsp.eq",
    "Gain": "dsp.gain", "apply_gain": "dsp.gain",
    "Limiter": "dsp.limiter", "limit": "dsp.limiter", "limiter_gain": "dsp.limiter",
    "integrated_loudness": "dsp.loudness", "loudness_range": "dsp.loudness", "momentary_loudness": "dsp.loudness",
    "normalize_loudness": "dsp.loudness", "short_term_loudness": "dsp.loudness",
    "ParamRange": "dsp.ranges",
    "Saturation": "dsp.saturation", "saturate": "dsp.saturation",
    "MultibandCompressor": "dsp.multiband", "multiband_compress": "dsp.multiband",
    "split_bands": "dsp.crossover",
    "true_peak": "dsp.truepeak",
    "StereoWidth": "dsp.width", "stereo_width": "dsp.width",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:  # a submodule reached as an attribute (``import dsp; dsp.loudness``)
        try:
            return _import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(_import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
