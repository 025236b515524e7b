#!/usr/bin/env bash
# CI: the package as users install it (`pip install .`). Builds the wheel from a copy of the
# sources, installs it into a fresh virtual environment whose dependencies come from the
# cached one, and from a folder outside the checkout (no PYTHONPATH) masters the bundled
# example with the shipped default model and asks automaster-train for its config groups.
# Usage: .ci/wheel-check.sh [PYTHON of the cached environment; default: .ci/env.sh's]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="${1:-$("$here/.ci/env.sh")}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
unset PYTHONPATH

# 1. wheel, built from a copy (pip builds inside the source folder, and the copy proves the
#    wheel needs nothing beyond these files), with the cached environment's setuptools
mkdir "$tmp/src"
cp -r "$here"/{pyproject.toml,README.md,automaster,dsp,model,train,checkpoints,configs} "$tmp/src/"
find "$tmp/src" -name __pycache__ -prune -exec rm -rf {} +
"$py" -m pip wheel -q --no-deps --no-build-isolation -w "$tmp/dist" "$tmp/src" 2>&1 \
    | { grep -v -e "BuildBackendWarning" -e "warnings.warn" || true; } >&2
wheel="$(ls "$tmp"/dist/automaster-*.whl)"

# 2. a fresh venv that reuses the cached environment's packages
"$here/.ci/overlay-venv.sh" "$tmp/venv" "$py"
vpy="$tmp/venv/bin/python"
"$vpy" -m pip install -q --no-deps "$wheel"

# 3. use it from elsewhere, as a user would
mkdir "$tmp/work"
cd "$tmp/work"
export PATH="$tmp/venv/bin:$PATH"
"$vpy" - "$tmp/venv" <<'PY'
import sys
from pathlib import Path

import automaster, dsp, model, train
for mod in (automaster, dsp, model, train):
    if not Path(mod.__file__).resolve().is_relative_to(Path(sys.argv[1]).resolve()):
        sys.exit(f"wheel check: {mod.__name__} imported from {mod.__file__}, not the installed wheel")
PY
example="$("$vpy" -c 'from importlib.resources import files; print(files("automaster") / "examples" / "example.ogg")')"
automaster "$example" -o master.wav --report --quiet 2> stderr.txt || { cat stderr.txt >&2; exit 1; }
"$vpy" - "$tmp/venv" <<'PY'
import json, sys
from pathlib import Path

from model.checkpoint import REGISTRY_DIR

rep = json.loads(Path("master.wav.report.json").read_text())
err = Path("stderr.txt").read_text()
if rep.get("source") != "model" or "preset" in err:
    sys.exit(f"wheel check: the master did not use the shipped default model "
             f"(source {rep.get('source')!r}): {err.strip()}")
if not REGISTRY_DIR.resolve().is_relative_to(Path(sys.argv[1]).resolve()):
    sys.exit(f"wheel check: models looked up in {REGISTRY_DIR}, not in the installed wheel")
print(f"wheel check: mastered with the shipped model ({REGISTRY_DIR}): "
      f"{rep['after']['integrated_lufs']} LUFS, {rep['after']['true_peak_dbtp']} dBTP")
PY
automaster-train --help > train-help.txt
grep -q "experiment: default, smoke, style" train-help.txt \
    || { echo "wheel check: automaster-train did not list its config groups" >&2; cat train-help.txt >&2; exit 1; }
echo "wheel check: automaster-train finds its configs (${SECONDS} s in all)"
