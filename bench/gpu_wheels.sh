#!/usr/bin/env bash
# Download the few wheels the GPU check machine lacks into the git-ignored .whl/ folder.
#
# That machine has no network; its Python 3.12 image has torch 2.11 (CUDA 13), triton,
# numpy, scipy, numba/llvmlite, PyYAML, safetensors, matplotlib, tqdm and tensorboard
# (/work/.library/device/KINDS.md lists it), but not the packages below: the CLI's audio
# I/O, the loudness reference of the tests and the Hydra training app. numba stays out on
# purpose: llvmlite's wheel alone is 60 MB, and the CUDA ops never import the CPU kernels.
# Run this here (with network) before a device run; .whl/ then travels with the working
# tree (`carry: [".whl"]`), and bench/gpu_check.py's docstring shows how it is installed
# there. Versions match this project's environment; the total stays far under the 64 MiB
# that a device run may carry (printed at the end).
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .whl
mkdir -p .whl
PY="${PYTHON:-python3}"
wheels=(
    soundfile==0.14.0 cffi==2.1.1 pycparser==3.12   # audio I/O
    pyloudnorm==0.2.0                                # loudness reference in the tests
    hydra-core==1.3.8 omegaconf==2.3.1               # the Hydra training app
)
for w in "${wheels[@]}"; do
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d .whl "$w"
done
# hydra 1.3 needs antlr4 4.9.*, published only as a source archive: build its (pure-python) wheel here
"$PY" -m pip wheel -q --no-deps -w .whl antlr4-python3-runtime==4.9.3
ls -l .whl
du -sh .whl
