#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment and print its python.
# The environment is cached outside the checkout, keyed by a hash of pyproject.toml
# and this script: a missing or stale cache is rebuilt from PyPI.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${AUTOMASTER_VENV:-$HOME/.cache/automaster/venv}"
stamp="$(cat "$here/pyproject.toml" "$here/.ci/env.sh" | sha256sum | cut -c1-16)"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/.automaster-stamp" 2>/dev/null)" != "$stamp" ]; then
    echo "setting up $venv (torch is large: a few minutes on first run)" >&2
    rm -rf "$venv"
    python3 -m venv "$venv"
    # setuptools as pyproject.toml's build-system asks: the wheel check and `make demo`'s
    # editable install build without isolation, from this environment
    "$venv/bin/python" -m pip install -q --upgrade pip wheel "setuptools>=68" >&2
    # dependencies only: the code runs from the checkout (PYTHONPATH), so one cached
    # environment serves every clone (`make demo` installs the checkout into its own .venv
    # on top of this one; .ci/wheel-check.sh installs the wheel into a throwaway one)
    "$venv/bin/python" -m pip install -q "$here[dev,bench,web,webtest]" >&2
    "$venv/bin/python" -m pip uninstall -q -y automaster >&2
    echo "$stamp" > "$venv/.automaster-stamp"
fi
# the web app's browser test (tests/test_web_browser.py) drives Debian's chromium through
# Playwright (never a downloaded browser build); installed where we are root with apt
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing chromium for the web app's browser test" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >&2 \
        || echo "could not install chromium: the browser test will be skipped" >&2
fi
echo "$venv/bin/python"
