#!/usr/bin/env python
"""``python bench/bench.py ARGS`` is ``python -m pgconform bench ARGS`` (pgconform/tools/bench.py),
kept runnable from here; pgconform must be importable (``pip install -e .``)."""

import sys

from pgconform.__main__ import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
