#!/usr/bin/env python
"""The benchmark, kept runnable from here: ``python bench/bench.py ARGS`` is
``python -m pgconform bench ARGS`` (pgconform/tools/bench.py)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pgconform.tools.bench import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
