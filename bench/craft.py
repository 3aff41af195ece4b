#!/usr/bin/env python
"""``python bench/craft.py ARGS`` is ``python -m pgconform craft ARGS`` (pgconform/tools/craft.py),
kept runnable from here; pgconform must be importable (``pip install -e .``)."""

import sys

from pgconform.__main__ import main

if __name__ == "__main__":
    sys.exit(main(["craft", *sys.argv[1:]]))
