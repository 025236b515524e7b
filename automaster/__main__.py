"""``python -m automaster``: same as the ``automaster`` command."""

import sys

from automaster.cli import main

if __name__ == "__main__":
    sys.exit(main())
