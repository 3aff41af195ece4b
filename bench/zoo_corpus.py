"""Hunt each zoo mutant with the conformance machines and store the replay string of the
minimal failure Hypothesis shrinks to: ``pgconform/data/history_schedules.json``.

tests/selftest/test_verdicts.py replays every stored string in every run (milliseconds each), so the
verdict output of every mutant (clause, diagram size, replay) is checked even for the mutants
whose random hunt takes minutes.  Rerun this after a change to the model or the machines that
makes a stored schedule stop failing:

    python bench/zoo_corpus.py [--budget SECONDS] [--mutants NAME,...]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pgconform.harness import runs
from pgconform.tools.bench import hunt
from pgconform.registry import resolve, zoo_names

OUT = Path(__file__).resolve().parent.parent / "pgconform" / "data" / "history_schedules.json"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--budget", type=float, default=600.0)
    ap.add_argument("--mutants", default="")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    corpus = json.loads(OUT.read_text()) if OUT.exists() else {}
    names = [n for n in args.mutants.split(",") if n] or zoo_names()
    for name in names:
        impl = resolve(name)
        arch = impl.arches[0] if impl.arches else "x86_64"
        runs.last_failure = None
        r = hunt(impl, args.seed, 10**6, args.budget, arch)
        failure = runs.last_failure
        if not r["caught"] or failure is None:
            print(f"{name}: not caught in {args.budget:g} s", flush=True)
            continue
        corpus[name] = failure.string
        print(f"{name}: {r['clause']} after {r['seconds']} s ({arch}, {r['scenarios'][-1]})",
              flush=True)
        OUT.write_text(json.dumps(corpus, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
