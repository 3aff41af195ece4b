#!/usr/bin/env python
"""``python bench/zoo_corpus.py ARGS`` is ``python -m pgconform corpus ARGS``
(pgconform/tools/corpus.py), kept runnable from here; pgconform must be importable
(``pip install -e .``)."""

import sys

from pgconform.__main__ import main

if __name__ == "__main__":
    sys.exit(main(["corpus", *sys.argv[1:]]))
