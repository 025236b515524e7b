"""Benchmark: does ``--restore auto`` leave clean, mastered music alone? (issue #10:
"never harm a clean master")

Runs :func:`automaster.restore.falsealarm.false_alarm_rate` (the one definition of the
measurement) on excerpts from the middle of every held-out corpus track (the validation
package, held out whole as in training) and prints, per detector, on how many excerpts it
reported its problem; the clicks' isolated outliers left alone per minute; the largest
long-term spectrum change auto made (1/3-octave bands above 30 Hz within 60 dB of the
loudest); on how many excerpts a fix beyond the always-on DC/subsonic high-pass was
applied; and the false-positive rate (excerpts changed by 0.1 dB or more).

    python -m bench.restore_fp                          # every held-out track, 30 s each
    python -m bench.restore_fp --items 4 --seconds 10   # a quick look
    python -m bench.restore_fp --json fp.json

Skips (exit 0, with a message) when the corpus manifest is absent.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    from automaster.restore.falsealarm import DEFAULT_MANIFEST, false_alarm_rate, summary

    ap = argparse.ArgumentParser(prog="python -m bench.restore_fp", description=__doc__.split("\n\n")[0])
    ap.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST)
    ap.add_argument("--items", type=int, default=None, help="the first N held-out tracks (default: all)")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    if not args.manifest.is_file():
        print(f"skipped: no corpus manifest at {args.manifest}")
        return 0
    result = false_alarm_rate(args.manifest, seconds=args.seconds, count=args.items)
    print(summary(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
