"""dsp.memory.keep_freed_memory: the chain's large tensors, freed and allocated again on
the next render, reuse the process's memory instead of page-faulting fresh pages
(counted with getrusage's minor faults, in a subprocess each, so this process's
allocator is left alone)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = r"""
import json, resource, torch
from dsp.memory import keep_freed_memory
from dsp import MasteringChain
on = keep_freed_memory()
torch.set_num_threads(1)
chain = MasteringChain(44100)
x = 0.1 * torch.randn(1, 2, 44100 * 100, generator=torch.Generator().manual_seed(0))  # 100 s: 35 MB a signal
p = torch.full((1, chain.num_params), 0.5)
faults = []
with torch.no_grad():
    for _ in range(4):  # the first renders compile and grow the heap
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        chain(x, p, ceiling_dbtp=-1.0, target_lufs=-14.0)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print("RESULT " + json.dumps({"on": on, "faults": faults[-1]}))
"""


def _run(keep: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "AUTOMASTER_KEEP_MEMORY": keep}
    res = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    return json.loads([ln for ln in res.stdout.splitlines() if ln.startswith("RESULT ")][-1][7:])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_memory_is_reused_without_page_faults():
    off, on = _run("0"), _run("1")
    if not on["on"]:
        pytest.skip("not glibc")
    assert off["on"] is False  # AUTOMASTER_KEEP_MEMORY=0 leaves the allocator alone
    signal_pages = 2 * 44100 * 100 * 4 // 4096
    assert off["faults"] > 5 * signal_pages  # glibc maps blocks above 32 MB afresh: faulted on every render
    assert on["faults"] < 0.05 * off["faults"]  # kept: the heap's pages serve the next render
