"""automaster.model: features, parameter network, MasteringModel and checkpoint I/O.

Imports of dsp are lazy (inside functions), so ``import model`` works on its own.
"""

from model.checkpoint import (
    SCHEMA_VERSION,
    CheckpointError,
    load_checkpoint,
    read_metadata,
    registered_models,
    resolve_checkpoint,
    save_checkpoint,
)
from model.features import DESCRIPTORS, FeatureExtractor, mel_filterbank
from model.mastering_model import MasteringModel
from model.network import MAX_PARAMETERS, ParameterNetwork

__all__ = [
    "CheckpointError",
    "DESCRIPTORS",
    "FeatureExtractor",
    "MAX_PARAMETERS",
    "MasteringModel",
    "ParameterNetwork",
    "SCHEMA_VERSION",
    "load_checkpoint",
    "mel_filterbank",
    "read_metadata",
    "registered_models",
    "resolve_checkpoint",
    "save_checkpoint",
]
