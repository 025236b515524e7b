"""Start-up cost of an inference process: mastering on the CPU must not import
torch._dynamo (about 1.8 s here), which the first dispatch of a custom op does; dsp's ops
send plain CPU tensors that need no gradient straight to their CPU kernels
(dsp/_ops.py ``_op``). Training (gradients) still goes through the registered ops.
Restoration (on by default) must not import scipy.signal either (0.9 s;
automaster/restore/_filters.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = r"""
import sys
import numpy as np
import torch
import automaster
x = 0.1 * np.random.default_rng(0).standard_normal((2, 44100 * 3)).astype(np.float32)
res = automaster.master(x, 44100, target_lufs=-14.0, ceiling_dbtp=-1.0)
assert np.isfinite(res.audio).all()
print("inference", "torch._dynamo" in sys.modules, "scipy.signal" in sys.modules)
from dsp import MasteringChain
chain = MasteringChain(44100)
p = torch.full((1, chain.num_params), 0.5, requires_grad=True)
chain(torch.from_numpy(x[None, :, :4410]), p).square().mean().backward()
print("training", p.grad is not None and bool(torch.isfinite(p.grad).all()))
"""


def test_inference_does_not_import_dynamo_and_training_still_differentiates():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env,
                         cwd=str(ROOT), timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.split("\n")
    assert "inference False False" in lines, out.stdout   # nor scipy.signal (0.9 s; restoration)
    assert "training True" in lines, out.stdout
