#!/usr/bin/env bash
# Create a fresh virtual environment DEST that uses the cached environment's packages (those
# of PYTHON's environment), so installing automaster into it needs no download: a .pth line
# in DEST's site-packages runs site.addsitedir on the cached site-packages (whose own .pth
# files then apply too). Packages installed into DEST come first.
# Usage: .ci/overlay-venv.sh DEST PYTHON
set -euo pipefail
dest="$1"
py="$2"
rm -rf "$dest"
"$py" -m venv --without-pip "$dest"
cached_site="$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
own_site="$("$dest/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
echo "import site; site.addsitedir('$cached_site')" > "$own_site/automaster-cached-env.pth"
