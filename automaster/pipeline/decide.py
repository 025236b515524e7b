"""Decide the setting: ``--params-in`` values, the network's prediction (from the same
bounded set of analysis windows its feature extractor would pick from the whole track), or
the built-in preset when no trained model exists; with a reference, refined by
:mod:`automaster.reference`; then ``intensity`` blends the identity setting towards it in
normalized parameter space."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from automaster.errors import UserError
from automaster.io import Source
from automaster.metering import Measurement
from automaster.pipeline.analyse import analysis_windows, excerpt_batch, reference_lufs
from automaster.pipeline.device import resolve_device
from automaster.pipeline.job import Job, note_once


def default_model_available() -> bool:
    """Whether the registry's "default" checkpoint has its weights file."""
    from pathlib import Path

    from model.checkpoint import REGISTRY_DIR, CheckpointError, registered_models

    try:
        entry = registered_models().get("default")
    except CheckpointError:
        return False
    if not entry:
        return False
    stem = REGISTRY_DIR / entry["file"]
    weights = stem if stem.suffix == ".safetensors" else Path(str(stem) + ".safetensors")
    return weights.exists()


def load_model(spec: Any, device: Any):
    """Model spec -> MasteringModel on ``device``, or None when the default is not shipped.

    ``spec``: a MasteringModel, a registry name / checkpoint path, or None (the registry's
    default if its weights exist). Raises model.checkpoint.CheckpointError for bad files.
    """
    from model.checkpoint import load_checkpoint
    from model.mastering_model import MasteringModel

    dev = resolve_device(device)
    if isinstance(spec, MasteringModel):
        return spec.to(dev).eval()
    if spec is None:
        if not default_model_available():
            return None
        spec = "default"
    return load_checkpoint(spec, dev)


def choose_setting(chain, source: Source, before: Measurement, job: Job, device) -> tuple[Any, dict]:
    """Normalized setting (1, n) and a dict describing where it came from."""
    info: dict[str, Any] = {}
    identity = chain.identity_params(1, device=device)
    if job.settings is not None:
        p = _from_params_in(chain, job, identity, info)
    else:
        model = job.model
        if model is None or isinstance(model, (str, os.PathLike)):
            model = load_model(model, device)
            job.model = model if model is not None else job.model
        if model is not None:
            p = _predict(chain, model, source, job, device, info)
        elif job.reference is not None:
            p = identity.clone()
            info["source"] = "identity"
        else:
            p = _preset(chain, identity, before, job, device, info)
        if job.reference is not None:
            p, ref_info = match_to_reference(chain, source, job, p, device, reference_lufs(before))
            info["reference"] = ref_info
            info["source"] = f"reference (from {info['source']})"
    if job.intensity != 1.0:
        from automaster.intensity import scale_setting

        p = scale_setting(chain, p, job.intensity)
    return p, info


def _from_params_in(chain, job: Job, identity, info: dict) -> Any:
    """``--params-in`` values, completed from the identity setting."""
    from automaster.settings import complete_settings

    identity_phys = chain.denormalize(identity.cpu())[0]
    full, filled = complete_settings(job.settings, chain.ranges, identity_phys, job.settings_path)
    if filled:
        info["filled_from_identity"] = filled
    info["source"] = "params-in"
    return chain.normalize([full]).to(identity.device)


def _predict(chain, model, source: Source, job: Job, device, info: dict) -> Any:
    """The network's setting from the analysis windows of the whole track."""
    import torch

    window = getattr(model.features, "window_seconds", 4.0)
    count = getattr(model.features, "n_windows", 8)
    x = analysis_windows(source, count, window)
    xt = torch.from_numpy(np.ascontiguousarray(x))[None].to(device)
    p = model.predict(xt, source.sample_rate, target_lufs=job.target_lufs,
                      ceiling_dbtp=job.ceiling_dbtp).to(device=device, dtype=torch.float32)
    if p.shape != (1, chain.num_params):
        raise UserError(f"the model predicts {tuple(p.shape)} parameters but the chain "
                        f"needs (1, {chain.num_params})")
    meta = getattr(model, "checkpoint_metadata", None) or {}
    info["source"] = "model"
    info["model"] = meta.get("model_name") or meta.get("weights_file", type(model).__name__)
    return p.clamp(0.0, 1.0)


def _preset(chain, identity, before: Measurement, job: Job, device, info: dict) -> Any:
    """The built-in 'gentle' preset, announced once, when no trained model exists."""
    from automaster.presets import preset_settings

    msg = ("no trained model found (checkpoints/default.safetensors is missing); using "
           "the built-in 'gentle' preset (automaster/presets.py)")
    (job.notify or (lambda m: note_once("preset", m)))(msg)
    identity_phys = chain.denormalize(identity.cpu())[0]
    phys = preset_settings(identity_phys, chain.ranges, before.integrated_lufs)
    info["source"] = "preset:gentle"
    return chain.normalize([phys]).to(device)


def match_to_reference(chain, source: Source, job: Job, p0, device, reference_lufs: float) -> tuple[Any, dict]:
    """Fit the setting to job.reference (see automaster.reference)."""
    import torch

    from automaster import reference as ref_mod
    from automaster.io import ResampledSource

    rate = source.sample_rate
    opt_src: Source = source
    if rate > ref_mod.MAX_OPT_RATE:
        rate = ref_mod.MAX_OPT_RATE
        opt_src = ResampledSource(source, rate)
    ref_src = job.reference
    if ref_src.sample_rate > ref_mod.MAX_OPT_RATE:
        ref_src = ResampledSource(ref_src, ref_mod.MAX_OPT_RATE)
    many, sec = ref_mod.PROFILE_EXCERPTS, ref_mod.EXCERPT_SECONDS
    ref_x = torch.from_numpy(excerpt_batch(ref_src, many, sec)).to(device)
    # compare like with like: a mono master against the reference's mid signal
    if source.channels == 1 and ref_x.shape[1] == 2:
        ref_x = ref_x.mean(dim=1, keepdim=True)
    exc = torch.from_numpy(excerpt_batch(opt_src, ref_mod.EXCERPTS, sec)).to(device)
    with torch.no_grad():
        ref_profile = ref_mod.profile(ref_x, ref_src.sample_rate)
        in_profile = ref_mod.profile(torch.from_numpy(excerpt_batch(opt_src, many, sec))
                                     .to(device), rate)
        target_profile = ref_mod.retarget(ref_mod.profile(exc, rate), ref_profile, in_profile)
    chain_opt = chain
    if rate != source.sample_rate:
        from dsp import MasteringChain

        chain_opt = MasteringChain(sample_rate=rate).to(device)
    p, info = ref_mod.match(chain_opt, exc, rate, target_profile, p0, target_lufs=job.target_lufs,
                            ceiling_dbtp=job.ceiling_dbtp, reference_lufs=reference_lufs)
    info["reference_profile"] = ref_profile.as_dict()
    info["input_profile"] = in_profile.as_dict()
    return p.to(device), info

