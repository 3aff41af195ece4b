"""What a reader of the trace (the race diagram) needs to know of the objects and the code the
engine runs, declared by whoever defines them, so that no reader parses a convention nothing
declares.

- *Name forms*: an object appears in effect texts, values and verdict messages by its ``repr``;
  the class that prints a name declares the form of its names (a regular expression), with
  :func:`name_form` next to its ``__repr__``, and any *alias* its names imply (the other name the
  same object goes by elsewhere: a table named in the value of the entry that links it).  A
  reader finds names by :func:`find_names` and widens them by :func:`aliases`.
- *Plumbing frames*: functions a kernel call path passes through that are no kernel function (a
  dispatcher choosing a variant, a check wrapped around a call); each declares itself with
  :func:`plumbing` where it is defined, and a reader leaves it out of the path it shows.

A name or a frame can only show up once the module defining it was imported, which declared it.
"""

from __future__ import annotations

import re
from collections.abc import Callable

#: (the declaring class's name, the form): in declaration order (a reader tries them in turn)
FORMS: list[tuple[str, str]] = []
#: (a form of names, the template of the alias a name of that form implies)
ALIASES: list[tuple[re.Pattern, str]] = []
#: code names of plumbing frames, and suffixes of plumbing code names
PLUMBING: set[str] = set()
PLUMBING_SUFFIXES: set[str] = set()

_pattern: re.Pattern | None = None


def name_form(form: str, *alias: tuple[str, str]) -> Callable[[type], type]:
    """Class decorator: the class's ``repr`` names the object by a name of ``form`` (a regex
    without groups that capture, ``(?:...)``); each ``alias`` is (a regex over its names, the
    template of the other name, in :meth:`re.Match.expand` syntax: ``table@\\1``)."""

    def declare(cls: type) -> type:
        global _pattern
        if (cls.__name__, form) not in FORMS:
            FORMS.append((cls.__name__, form))
            _pattern = None
            ALIASES.extend((re.compile(pattern), template) for pattern, template in alias)
        cls.name_form = form
        return cls

    return declare


def find_names(text: str) -> list[str]:
    """The object names in ``text``, by every declared form."""
    global _pattern
    if _pattern is None:
        _pattern = re.compile("|".join(form for _, form in FORMS) or r"(?!x)x")
    return _pattern.findall(text)


def aliases(name: str) -> list[str]:
    """The other names of the object named ``name``."""
    out = []
    for pattern, template in ALIASES:
        m = pattern.fullmatch(name)
        if m:
            out.append(m.expand(template))
    return out


def plumbing(fn=None, *, suffix: str | None = None):
    """Declare a function (decorator, or call) or every function whose name ends in ``suffix``
    plumbing: not a kernel function, left out of the call paths a reader shows."""
    if suffix is not None:
        PLUMBING_SUFFIXES.add(suffix)
    if fn is not None:
        PLUMBING.add(fn.__name__)
    return fn


def is_plumbing(code_name: str) -> bool:
    """Whether a frame of a call path is plumbing: declared, or Python's own (``<genexpr>``)."""
    return (code_name.startswith("<") or code_name in PLUMBING
            or any(code_name.endswith(s) for s in PLUMBING_SUFFIXES))
