"""The CUDA kernels' arithmetic, checked on any machine through numba's CUDA simulator.

The simulator runs the very kernel functions of dsp/_cuda_kernels.py on the CPU, so
the CUDA path's recursions and adjoints are compared with the CPU kernels even
where there is no GPU. It must be enabled before numba.cuda is imported, hence the
subprocess.
"""

import ast
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = r"""
import numpy as np
import dsp._cuda_kernels as G
import dsp._cpu_kernels as C
rng = np.random.default_rng(0)
x = rng.standard_normal((3, 300)).astype(np.float32)
g = rng.standard_normal(x.shape).astype(np.float32)
coef = np.array([[0.9, -1.5, 0.7, -1.6, 0.7], [1.0, 0.2, 0.1, -0.5, 0.2], [0.5, 0.0, -0.5, -1.2, 0.6]])
alpha = np.array([[0.9, 0.3], [0.99, 0.0], [0.5, 0.5]])
out = {}
y1 = np.empty_like(x); y2 = np.empty_like(x)
C.biquad_forward(x, coef, y1); G._biquad_forward[1, 64](x, coef, y2)
out["biquad"] = np.abs(y1 - y2).max()
dx1 = np.empty_like(x); dx2 = np.empty_like(x); dc1 = np.empty_like(coef); dc2 = np.empty_like(coef)
C.biquad_backward(x, y1, coef, g, dx1, dc1); G._biquad_backward[1, 64](x, y1, coef, g, dx2, dc2)
out["biquad_dx"] = np.abs(dx1 - dx2).max(); out["biquad_dc"] = np.abs(dc1 - dc2).max()
C.smoother_forward(x, alpha, y1); G._smoother_forward[1, 64](x, alpha, y2)
out["smoother"] = np.abs(y1 - y2).max()
da1 = np.empty_like(alpha); da2 = np.empty_like(alpha)
C.smoother_backward(x, y1, alpha, g, dx1, da1); G._smoother_backward[1, 64](x, y1, alpha, g, dx2, da2)
out["smoother_dx"] = np.abs(dx1 - dx2).max(); out["smoother_da"] = np.abs(da1 - da2).max()
print(repr({k: float(v) for k, v in out.items()}))
"""


def test_cuda_kernels_match_cpu_kernels_in_simulator():
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1", "PYTHONPATH": str(ROOT)}
    res = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    errors = ast.literal_eval(res.stdout.strip().splitlines()[-1])
    assert set(errors) == {"biquad", "biquad_dx", "biquad_dc", "smoother", "smoother_dx", "smoother_da"}
    for name, err in errors.items():
        assert err < 1e-5, f"{name}: CUDA kernel differs from CPU kernel by {err}"
