"""Differentiable mastering processors in PyTorch (CPU and CUDA).

Audio is (batch, channels, samples) float32; processor parameters are (batch, n)
normalized to [0, 1]. Each processor has a pure function in physical units and a
thin ``nn.Module`` with a declared range table.
"""

from dsp.chain import MasteringChain
from dsp.compressor import Compressor, compress, compressor_gain_db
from dsp.crossover import split_bands
from dsp.multiband import MultibandCompressor, multiband_compress
from dsp.eq import ParametricEQ, parametric_eq
from dsp.gain import Gain, apply_gain
from dsp.limiter import Limiter, limit, limiter_gain
from dsp.loudness import (
    integrated_loudness,
    loudness_range,
    momentary_loudness,
    normalize_loudness,
    short_term_loudness,
)
from dsp.ranges import ParamRange
from dsp.saturation import Saturation, saturate
from dsp.truepeak import true_peak
from dsp.width import StereoWidth, stereo_width

__all__ = [
    "MasteringChain", "Compressor", "compress", "compressor_gain_db", "ParametricEQ", "parametric_eq", "Gain",
    "apply_gain", "Limiter", "limit", "limiter_gain", "integrated_loudness", "loudness_range", "momentary_loudness",
    "normalize_loudness", "short_term_loudness", "ParamRange", "Saturation", "saturate", "MultibandCompressor", "multiband_compress", "split_bands", "true_peak",
    "StereoWidth", "stereo_width",
]
