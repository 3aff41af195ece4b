"""The README stays true to the code."""


def test_readme_lists_every_clause():
    from pathlib import Path

    from pgconform.oracle.clauses import CLAUSES

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    missing = [c for c in CLAUSES if f"`{c}`" not in readme]
    assert not missing, f"README's clause table lacks {missing}"
