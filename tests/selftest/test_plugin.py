"""The plugin's choice of implementation, the registry behind it, and ``python -m pgconform``.

The pytest runs here use tiny implementations written by pytester (a dict naming one series
function), so they do not depend on the conformance machines, the reference or the zoo.
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest

from pgconform import plugin, registry
from pgconform.implementation import Implementation, ImplementationError
from tests.selftest.helpers import PLUGIN_ARGS

ROOT = Path(__file__).resolve().parents[2]

MYIMPL = '''
def pte_free_defer(k, mm, pgtable):
    """A do-nothing series function: a generator that yields no effect."""
    return None
    yield


OPTION = {"pte_free_defer": pte_free_defer}
ENV = {"pte_free_defer": pte_free_defer}
INI = {"pte_free_defer": pte_free_defer}
UNKNOWN_FUNCTION = {"pte_free_deferred": pte_free_defer}
NOT_A_FUNCTION = {"pte_free_defer": 42}
'''


def check_selection(spec: str, source: str, *, name: str | None = None) -> str:
    """A test module asserting what the plugin selected, as the conformance machines will see it."""
    return textwrap.dedent(
        f"""
        import os

        import pgconform.plugin as plugin


        def test_selection():
            assert plugin.selected_spec() == {spec!r}
            assert plugin.selected_source() == {source!r}
            assert os.environ["PGCONFORM_IMPL"] == {spec!r}
            if {name!r} is not None:
                assert plugin.selected_implementation().name == {name!r}
        """
    )


def reference_problem() -> str | None:
    """Why ``reference`` cannot be resolved yet (it is written alongside this plugin), or None."""
    try:
        registry.resolve("reference")
    except ImplementationError as exc:
        return str(exc)
    return None


def needs_reference() -> None:
    problem = reference_problem()
    if problem is not None:
        pytest.skip(f"pgconform.reference is not usable yet: {problem}")


@pytest.fixture
def myimpl(pgconform_pytester: pytest.Pytester) -> pytest.Pytester:
    pgconform_pytester.makepyfile(myimpl=MYIMPL)
    return pgconform_pytester


# --- precedence: option > env > ini > default --------------------------------------------------


@pytest.mark.parametrize(
    ("option", "env", "ini", "expected", "source"),
    [
        ("myimpl:OPTION", "myimpl:ENV", "myimpl:INI", "myimpl:OPTION", "option"),
        (None, "myimpl:ENV", "myimpl:INI", "myimpl:ENV", "env"),
        (None, None, "myimpl:INI", "myimpl:INI", "ini"),
        (None, "", "myimpl:INI", "myimpl:INI", "ini"),  # a blank variable counts as unset
        ("myimpl:OPTION", None, None, "myimpl:OPTION", "option"),
    ],
    ids=["option-beats-env-and-ini", "env-beats-ini", "ini", "blank-env-is-unset", "option-alone"],
)
def test_precedence(myimpl, run_pgconform, monkeypatch, option, env, ini, expected, source):
    if env is not None:
        monkeypatch.setenv("PGCONFORM_IMPL", env)
    if ini is not None:
        myimpl.makeini(f"[pytest]\npgconform_impl = {ini}\n")
    myimpl.makepyfile(test_check=check_selection(expected, source, name=expected))
    result = run_pgconform(*(["--impl", option] if option else []))
    result.stdout.fnmatch_lines([f"pgconform: implementation {expected} (from {source})"])
    result.assert_outcomes(passed=1)


def test_default_is_the_reference(pgconform_pytester, run_pgconform):
    needs_reference()
    pgconform_pytester.makepyfile(test_check=check_selection("reference", "default"))
    result = run_pgconform()
    # no option: the plugin acts when asked for the selection, and prints no header then
    assert "pgconform:" not in result.stdout.str()
    result.assert_outcomes(passed=1)


def test_reference_by_name(pgconform_pytester, run_pgconform):
    needs_reference()
    pgconform_pytester.makepyfile(test_check=check_selection("reference", "option"))
    result = run_pgconform("--impl", "reference")
    result.stdout.fnmatch_lines(["pgconform: implementation reference (from option)"])
    result.assert_outcomes(passed=1)


@pytest.mark.parametrize("source", ["option", "env", "ini"])
def test_xdist_workers_agree(myimpl, run_pgconform, monkeypatch, source):
    spec = f"myimpl:{source.upper()}"
    args = ["-n", "2"]
    if source == "option":
        args += ["--impl", spec]
    elif source == "env":
        monkeypatch.setenv("PGCONFORM_IMPL", spec)
    else:
        myimpl.makeini(f"[pytest]\npgconform_impl = {spec}\n")
    myimpl.makepyfile(
        test_workers=textwrap.dedent(
            f"""
            import os

            import pytest

            import pgconform.plugin as plugin


            @pytest.mark.parametrize("i", range(6))
            def test_worker_sees_the_selection(i):
                assert os.environ.get("PYTEST_XDIST_WORKER")
                assert plugin.selected_implementation().name == {spec!r}
                assert os.environ["PGCONFORM_IMPL"] == {spec!r}
            """
        )
    )
    result = run_pgconform(*args)
    result.assert_outcomes(passed=6)


def test_module_attr_dict_of_overrides(myimpl, run_pgconform):
    myimpl.makepyfile(
        test_check=textwrap.dedent(
            """
            import myimpl
            import pgconform.plugin as plugin


            def test_overrides():
                impl = plugin.selected_implementation()
                assert impl.name == "myimpl:OPTION"
                assert dict(impl.overrides) == {"pte_free_defer": myimpl.pte_free_defer}
            """
        )
    )
    result = run_pgconform("--impl", "myimpl:OPTION")
    result.assert_outcomes(passed=1)


# --- usage errors ------------------------------------------------------------------------------


def assert_usage_error(result: pytest.RunResult, *fragments: str) -> None:
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    output = result.stdout.str() + result.stderr.str()
    assert "Traceback" not in output
    assert "INTERNALERROR" not in output
    for fragment in fragments:
        assert fragment in result.stderr.str(), result.stderr.str()


def test_unknown_name_lists_registered(pgconform_pytester, run_pgconform):
    pgconform_pytester.makepyfile(test_never="def test_never(): pass")
    result = run_pgconform("--impl", "no_such_impl")
    assert_usage_error(
        result,
        "unknown implementation 'no_such_impl'",
        "registered: ",
        "reference",
        "(implementation chosen by --impl)",
    )
    for name in registry.registered_names():
        assert name in result.stderr.str()


#: A module that asks for the selection when it is collected, as the conformance modules do.
ASKS_AT_COLLECTION = textwrap.dedent(
    """
    from pgconform.plugin import selected_implementation

    _impl = selected_implementation()


    def test_judged():
        assert _impl is not None
    """
)


@pytest.mark.parametrize("args", [(), ("-n", "2")], ids=["", "xdist"])
def test_unknown_name_from_env_says_so(pgconform_pytester, run_pgconform, monkeypatch, args):
    monkeypatch.setenv("PGCONFORM_IMPL", "no_such_impl")
    pgconform_pytester.makepyfile(test_conformance_like=ASKS_AT_COLLECTION)
    result = run_pgconform(*args)  # under xdist the workers find it: the controller says it
    assert_usage_error(
        result, "unknown implementation 'no_such_impl'", "PGCONFORM_IMPL environment variable"
    )
    assert "ERROR collecting" not in result.stdout.str()


def test_bad_preemption_bound_at_collection_is_a_usage_error(pgconform_pytester, run_pgconform,
                                                            monkeypatch):
    monkeypatch.setenv("PGCONFORM_PREEMPTION_BOUND", "-3")
    pgconform_pytester.makepyfile(test_conformance_like=ASKS_AT_COLLECTION)
    assert_usage_error(run_pgconform(), "pgconform: PGCONFORM_PREEMPTION_BOUND='-3': the "
                       "preemption bound must be an integer >= 0 (default 1)")


@pytest.mark.parametrize("value", ["-3", "two", "1.5"])
def test_bad_preemption_bound_is_a_usage_error(myimpl, run_pgconform, monkeypatch, value):
    monkeypatch.setenv("PGCONFORM_PREEMPTION_BOUND", value)
    myimpl.makepyfile(test_never="def test_never(): pass")
    result = run_pgconform("--impl", "myimpl:OPTION")
    assert_usage_error(result, f"pgconform: PGCONFORM_PREEMPTION_BOUND={value!r}: the preemption "
                               "bound must be an integer >= 0 (default 1)")


def test_default_bound_is_validated_in_one_place(monkeypatch):
    from pgconform.harness.sweep import default_bound

    for value, bound in (("", 1), (" 0 ", 0), ("2", 2)):
        monkeypatch.setenv("PGCONFORM_PREEMPTION_BOUND", value)
        assert default_bound() == bound
    monkeypatch.delenv("PGCONFORM_PREEMPTION_BOUND")
    assert default_bound() == 1
    for value in ("-1", "x"):
        monkeypatch.setenv("PGCONFORM_PREEMPTION_BOUND", value)
        with pytest.raises(ValueError, match="must be an integer >= 0"):
            default_bound()


def test_empty_impl_option_is_a_usage_error(pgconform_pytester, run_pgconform):
    pgconform_pytester.makepyfile(test_never="def test_never(): pass")
    for value in ("", "  "):
        assert_usage_error(run_pgconform(f"--impl={value}"),
                           "pgconform: --impl is empty; give a registered name")


BAD_ARCHES = """
from pgconform.implementation import Implementation

TYPO = Implementation(name="typo", arches=("x86-64",))
"""


def test_unknown_arch_in_an_implementation_is_a_usage_error(pgconform_pytester, run_pgconform):
    pgconform_pytester.makepyfile(badarches=BAD_ARCHES,
                                  test_never="def test_never(): pass")
    result = run_pgconform("--impl", "badarches:TYPO")
    assert_usage_error(result, "implementation 'typo': arches names x86-64, which are not "
                               "modelled arches; known: x86_64, ")


@pytest.mark.parametrize("field", ["arches", "arch_overrides", "arch_known_violations"])
def test_implementation_arch_names_are_checked(field):
    value = ("x86-64",) if field == "arches" else {"x86-64": {}}
    with pytest.raises(ImplementationError, match=f"{field} names x86-64, which are not "
                                                  "modelled arches; known: x86_64"):
        Implementation(name="typo", **{field: value})


def test_xfails_file_that_is_not_utf8_is_a_usage_error(myimpl, run_pgconform):
    (myimpl.path / "xfails.txt").write_bytes(b"pt.use-after-free x86_64 # caf\xe9\n")
    myimpl.makepyfile(test_never="def test_never(): pass")
    result = run_pgconform("--impl", "myimpl:OPTION", "--xfails-file", "xfails.txt")
    assert_usage_error(result, "xfails.txt: not UTF-8 text (byte 30: invalid continuation byte)")


def test_uncreatable_trace_dir_is_a_usage_error(myimpl, run_pgconform):
    (myimpl.path / "afile").write_text("")
    myimpl.makepyfile(test_never="def test_never(): pass")
    result = run_pgconform("--impl", "myimpl:OPTION", "--pgconform-trace-dir", "afile/traces")
    assert_usage_error(result, "pgconform: --pgconform-trace-dir afile/traces: cannot create or "
                               "write to it (Not a directory)")


@pytest.mark.parametrize(("path", "why"), [("nodir/report.json", "no directory "),
                                           (".", "is a directory")])
def test_unwritable_report_path_is_a_usage_error(myimpl, run_pgconform, path, why):
    myimpl.makepyfile(test_never="def test_never(): pass")
    result = run_pgconform("--impl", "myimpl:OPTION", "--pgconform-report", path)
    assert_usage_error(result, f"pgconform: --pgconform-report {path}: cannot write the report "
                               f"there ({why}")


def test_unknown_name_from_ini_says_so(pgconform_pytester, run_pgconform):
    pgconform_pytester.makeini("[pytest]\npgconform_impl = no_such_impl\n")
    result = run_pgconform()
    assert_usage_error(
        result, "unknown implementation 'no_such_impl'", "pgconform_impl ini key in "
    )


def test_module_that_is_no_implementation(pgconform_pytester, run_pgconform):
    result = run_pgconform("--impl", "os:path")
    assert_usage_error(result, "os:path is a module that defines none of the series functions")


def test_module_that_does_not_import(pgconform_pytester, run_pgconform):
    result = run_pgconform("--impl", "nosuchmodule_xyz:thing")
    assert_usage_error(
        result, "cannot import module 'nosuchmodule_xyz'", "No module named 'nosuchmodule_xyz'"
    )


def test_missing_attribute(myimpl, run_pgconform):
    result = run_pgconform("--impl", "myimpl:NOPE")
    assert_usage_error(result, "myimpl has no attribute 'NOPE'")


def test_override_of_unknown_function(myimpl, run_pgconform):
    result = run_pgconform("--impl", "myimpl:UNKNOWN_FUNCTION")
    assert_usage_error(result, "overrides pte_free_deferred, which are not series functions")


def test_override_that_is_not_a_function(myimpl, run_pgconform):
    result = run_pgconform("--impl", "myimpl:NOT_A_FUNCTION")
    assert_usage_error(result, "pte_free_defer is int, not a function")


def test_help_works_whatever_is_selected(pgconform_pytester, run_pgconform, monkeypatch):
    monkeypatch.setenv("PGCONFORM_IMPL", "no_such_impl")
    result = run_pgconform("--help")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["pgconform*", "*--impl=SPEC*", "*pgconform_impl*"])


# --- one example database per implementation --------------------------------------------------

PROFILES = textwrap.dedent(
    """
    from hypothesis import settings

    _default = settings.get_profile("default")
    settings.register_profile("seven", _default, max_examples=7)
    settings.register_profile("three", _default, max_examples=3)
    settings.register_profile("nodb", _default, database=None)
    settings.load_profile("seven")
    """
)


@pytest.mark.parametrize(
    ("args", "max_examples"), [((), 7), (("--hypothesis-profile", "three"), 3)]
)
def test_own_database_on_the_loaded_profile(myimpl, run_pgconform, args, max_examples):
    myimpl.makeconftest(PROFILES)
    myimpl.makepyfile(
        test_db=textwrap.dedent(
            f"""
            from hypothesis import settings
            from hypothesis.database import DirectoryBasedExampleDatabase


            def test_database(request):
                expected = request.config.rootpath / ".hypothesis" / "examples" / "myimpl_OPTION"
                assert settings.default.database == DirectoryBasedExampleDatabase(str(expected))
                # everything else comes from the profile that was loaded before the plugin
                assert settings.default.max_examples == {max_examples}
            """
        )
    )
    result = run_pgconform("--impl", "myimpl:OPTION", *args)
    result.stdout.fnmatch_lines(
        ["pgconform: example database */.hypothesis/examples/myimpl_OPTION"]
    )
    result.assert_outcomes(passed=1)


def test_profile_without_database_is_left_alone(myimpl, run_pgconform):
    myimpl.makeconftest(PROFILES)
    myimpl.makepyfile(
        test_db=textwrap.dedent(
            """
            from hypothesis import settings


            def test_database():
                assert settings.default.database is None
            """
        )
    )
    result = run_pgconform("--impl", "myimpl:OPTION", "--hypothesis-profile", "nodb")
    result.stdout.fnmatch_lines(["pgconform: example database disabled by the Hypothesis profile"])
    result.assert_outcomes(passed=1)


def test_judging_one_implementation_keeps_anothers_failures(myimpl, run_pgconform):
    myimpl.makeconftest(PROFILES)
    myimpl.makepyfile(
        test_fails=textwrap.dedent(
            """
            from hypothesis import given, strategies as st


            @given(st.integers())
            def test_fails(n):
                assert n != n  # fails on the first example: one failure to save
            """
        )
    )
    examples = myimpl.path / ".hypothesis" / "examples"
    run_pgconform("--impl", "myimpl:OPTION").assert_outcomes(failed=1)
    saved = sorted(
        p.relative_to(examples) for p in (examples / "myimpl_OPTION").rglob("*") if p.is_file()
    )
    assert saved, "the failure was not saved in the implementation's database"
    run_pgconform("--impl", "myimpl:ENV").assert_outcomes(failed=1)
    assert (examples / "myimpl_ENV").is_dir()
    for relative in saved:
        assert (examples / relative).is_file(), f"judging myimpl:ENV removed {relative}"


def test_database_dirname_is_a_single_safe_component():
    assert plugin.database_dirname("reference") == "reference"
    assert plugin.database_dirname("zoo.pte_offset_map_no_rcu") == "zoo.pte_offset_map_no_rcu"
    assert plugin.database_dirname("mymod:IMPL") == "mymod_IMPL"
    assert plugin.database_dirname("../../etc:x") == "etc_x"
    assert plugin.database_dirname("::") == "impl"


# --- nested runs -------------------------------------------------------------------------------


def test_inprocess_run_gives_everything_back(myimpl):
    from hypothesis import settings

    myimpl.syspathinsert()
    myimpl.makepyfile(test_check=check_selection("myimpl:OPTION", "option", name="myimpl:OPTION"))
    profile = settings.get_current_profile_name()
    result = myimpl.runpytest_inprocess(*PLUGIN_ARGS, "--impl", "myimpl:OPTION")
    result.assert_outcomes(passed=1)
    assert "PGCONFORM_IMPL" not in os.environ
    assert settings.get_current_profile_name() == profile


# --- the pure parts ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "env", "ini", "expected"),
    [
        ("a:b", "c:d", "e:f", ("a:b", "option")),
        (None, "c:d", "e:f", ("c:d", "env")),
        ("", " ", "e:f", ("e:f", "ini")),
        (None, None, "", ("reference", "default")),
        ("  x:y  ", None, None, ("x:y", "option")),
    ],
)
def test_choose_spec(option, env, ini, expected):
    assert plugin.choose_spec(option, env, ini) == expected


def test_registered_names_are_sorted_and_include_the_reference():
    names = registry.registered_names()
    assert names == sorted(names)
    assert "reference" in names


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("no_such_impl", "unknown implementation 'no_such_impl'; registered: "),
        ("", "empty implementation spec"),
        ("os:path", "os:path is a module that defines none of the series functions"),
        ("nosuchmodule_xyz:thing", "cannot import module 'nosuchmodule_xyz'"),
        ("os:no_such_attribute", "os has no attribute 'no_such_attribute'"),
        ("json:loads", "json:loads is a function, not a pgconform implementation"),
    ],
)
def test_resolve_errors(spec, fragment):
    with pytest.raises(ImplementationError) as excinfo:
        registry.resolve(spec)
    assert fragment in str(excinfo.value)


def _stand_in_pte_offset_map_lock(k, mm, pmd, addr):
    return None
    yield


def _fake_module(monkeypatch, name: str, **attrs) -> None:
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    monkeypatch.setitem(sys.modules, name, module)


def test_resolve_dict_module_and_implementation(monkeypatch):
    def pte_offset_map_lock(k, mm, pmd, addr):
        return None
        yield

    impl = Implementation(name="mine", overrides={"pte_offset_map_lock": pte_offset_map_lock})
    _fake_module(
        monkeypatch,
        "pgconform_selftest_impl",
        TABLE={"pte_offset_map_lock": pte_offset_map_lock},
        IMPL=impl,
        nested=types.SimpleNamespace(TABLE={"pte_offset_map_lock": pte_offset_map_lock}),
    )
    _fake_module(monkeypatch, "pgconform_selftest_mod", pte_offset_map_lock=pte_offset_map_lock)

    assert registry.resolve("pgconform_selftest_impl:IMPL") is impl
    from_dict = registry.resolve("pgconform_selftest_impl:TABLE")
    assert from_dict.name == "pgconform_selftest_impl:TABLE"
    assert dict(from_dict.overrides) == {"pte_offset_map_lock": pte_offset_map_lock}
    assert registry.resolve("pgconform_selftest_impl:nested.TABLE").overrides == from_dict.overrides
    from_module = registry.resolve("pgconform_selftest_mod:")
    assert dict(from_module.overrides) == {"pte_offset_map_lock": pte_offset_map_lock}


def test_a_table_of_functions_inherits_the_kernels_findings_outside_what_it_replaces(monkeypatch):
    """A mapping or module is judged with the findings the reference declares in the functions it
    does not replace (they are the 6.6 kernel's); the ones in a function it replaces are judged;
    an Implementation declares its own and is left as it is."""
    from pgconform.reference import IMPLEMENTATION as REFERENCE

    def retract_page_tables(k, mapping, pgoff):
        return None
        yield

    impl = Implementation(name="mine", overrides={"retract_page_tables": retract_page_tables})
    _fake_module(monkeypatch, "pgconform_selftest_findings",
                 TABLE={"retract_page_tables": retract_page_tables}, IMPL=impl,
                 NOTHING={"pte_offset_map_lock": _stand_in_pte_offset_map_lock})
    table = registry.resolve("pgconform_selftest_findings:TABLE")
    scoped = {key.partition("@")[2] for key in table.known_violations}
    assert "collapse_pte_mapped_thp" in scoped and "change_pmd_range" in scoped
    assert "retract_page_tables" not in scoped  # replaced: judged
    assert set(table.known_consequences) <= set(table.known_violations)
    assert table.known_violations.items() <= REFERENCE.known_violations.items()
    assert registry.resolve("pgconform_selftest_findings:IMPL") is impl
    untouched = registry.resolve("pgconform_selftest_findings:NOTHING")
    assert untouched.known_violations == REFERENCE.known_violations


def test_import_error_inside_the_module_is_reported(monkeypatch, tmp_path):
    (tmp_path / "pgconform_selftest_broken.py").write_text("import nosuchdependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(
        ImplementationError,
        match="cannot import module 'pgconform_selftest_broken'.*nosuchdependency_xyz",
    ):
        registry.resolve("pgconform_selftest_broken:IMPL")


def test_module_raising_at_import_is_reported(monkeypatch, tmp_path):
    (tmp_path / "pgconform_selftest_raises.py").write_text("raise RuntimeError('boom')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ImplementationError, match="raised RuntimeError: boom"):
        registry.resolve("pgconform_selftest_raises:IMPL")


class _EntryPoints:
    """Stand-ins for installed entry points: (distribution, name, value) triples."""

    def __init__(self, *triples):
        self.eps = [types.SimpleNamespace(name=name, value=value,
                                          dist=types.SimpleNamespace(name=dist))
                    for dist, name, value in triples]

    def __call__(self, group):
        assert group == registry.ENTRY_POINT_GROUP
        return self.eps


def _pyproject(tmp_path, name, table):
    path = tmp_path / "pyproject.toml"
    rows = "".join(f'"{k}" = "{v}"\n' for k, v in table.items())
    path.write_text(f'[project]\nname = "{name}"\n\n'
                    f'[project.entry-points."{registry.ENTRY_POINT_GROUP}"]\n{rows}')
    return path


def test_the_checkout_table_replaces_the_installed_metadata_of_pgconform(monkeypatch, tmp_path):
    """Running from a checkout (its pyproject.toml next to the package), pgconform's own names are
    the checkout's, whatever the installed metadata says; another distribution's stay."""
    monkeypatch.setattr(importlib.metadata, "entry_points", _EntryPoints(
        ("pgconform", "zoo.stale", "pgconform.zoo.gone:MUTANT"),
        ("pgconform", "reference", "pgconform.reference:OLD"),
        ("other-dist", "theirs", "theirs:IMPL"),
        ("other-dist", "reference", "theirs:REFERENCE")))
    path = _pyproject(tmp_path, "pgconform", {"reference": "pgconform.reference:IMPLEMENTATION",
                                              "zoo.fresh": "pgconform.zoo.fresh:MUTANT"})
    monkeypatch.setattr(registry, "checkout_pyproject", lambda: path)
    assert registry.registered() == {"reference": "pgconform.reference:IMPLEMENTATION",
                                     "theirs": "theirs:IMPL",
                                     "zoo.fresh": "pgconform.zoo.fresh:MUTANT"}
    assert registry.zoo_names() == ["zoo.fresh"]


def test_an_installed_wheel_reads_its_entry_points(monkeypatch, tmp_path):
    """No pyproject.toml next to the package (a wheel), or another project's: the installed
    metadata is the list; pgconform's own names win over another distribution's."""
    monkeypatch.setattr(importlib.metadata, "entry_points", _EntryPoints(
        ("other-dist", "reference", "theirs:REFERENCE"),
        ("pgconform", "reference", "pgconform.reference:IMPLEMENTATION"),
        ("pgconform", "zoo.a", "pgconform.zoo.a:MUTANT"),
        ("other-dist", "bad:name", "theirs:BAD")))
    expected = {"reference": "pgconform.reference:IMPLEMENTATION",
                "zoo.a": "pgconform.zoo.a:MUTANT"}
    monkeypatch.setattr(registry, "checkout_pyproject", lambda: tmp_path / "pyproject.toml")
    with pytest.warns(UserWarning, match="names may not contain ':'"):
        assert registry.registered() == expected
    path = _pyproject(tmp_path, "someone-else", {"zoo.x": "x:MUTANT"})
    monkeypatch.setattr(registry, "checkout_pyproject", lambda: path)
    with pytest.warns(UserWarning, match="names may not contain ':'"):
        assert registry.registered() == expected


def test_the_implementation_list_is_written_once():
    """The registry of this checkout is its pyproject.toml's entry points, and every module of
    the zoo, the versions and the alternative designs is in it (a new one cannot be forgotten)."""
    import tomllib

    table = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"][
        registry.ENTRY_POINT_GROUP]
    assert registry.registered() == dict(sorted(table.items()))
    registered_modules = {target.partition(":")[0] for target in table.values()}
    for package in ("zoo", "versions", "alt"):
        modules = {f"pgconform.{package}.{path.stem}"
                   for path in (ROOT / "pgconform" / package).glob("*.py")
                   if path.stem != "__init__"}
        assert modules <= registered_modules, sorted(modules - registered_modules)


def test_nothing_is_imported_by_importing_the_registry_or_the_plugin():
    code = (
        "import sys, pgconform.registry, pgconform.plugin; "
        "print(sorted(m for m in sys.modules if m.startswith("
        "('pgconform.reference', 'pgconform.zoo', 'pgconform.kernel', 'hypothesis'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert out.stdout.strip() == "[]"


# --- installation and the command line ---------------------------------------------------------


def _installed() -> bool:
    try:
        importlib.metadata.distribution("pgconform")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


@pytest.mark.skipif(
    not _installed(), reason="pgconform is not installed (pip install -e '.[test]')"
)
def test_entry_points_are_installed():
    pytest11 = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="pytest11")}
    assert pytest11.get("pgconform") == "pgconform.plugin"
    impls = {ep.name for ep in importlib.metadata.entry_points(group=registry.ENTRY_POINT_GROUP)}
    assert {
        "reference",
        "zoo.retract_pte_free_immediate",
        "zoo.pte_offset_map_no_rcu",
        "zoo.pte_offset_map_lock_no_pmd_same",
    } <= impls


@pytest.mark.skipif(
    not _installed(), reason="pgconform is not installed (pip install -e '.[test]')"
)
def test_installed_plugin_loads_from_its_entry_point(myimpl, monkeypatch):
    monkeypatch.setenv("PGCONFORM_IMPL", "myimpl:ENV")
    myimpl.makepyfile(test_check=check_selection("myimpl:ENV", "env", name="myimpl:ENV"))
    result = myimpl.runpytest_subprocess()  # no -p: the pytest11 entry point loads the plugin
    result.assert_outcomes(passed=1)
    result = myimpl.runpytest_subprocess("--arch", "x86_64")  # an option: the header shows
    result.stdout.fnmatch_lines(["pgconform: implementation myimpl:ENV (from env)"])
    result.assert_outcomes(passed=1)


# --- installing pgconform changes nothing else ------------------------------------------------

#: Another project's tests: a Hypothesis failure (saved to, and replayed from, its example
#: database) and the database it runs with.
UNRELATED = textwrap.dedent(
    """
    import sys

    from hypothesis import given, settings, strategies as st


    def test_database():
        print("database:", repr(settings.default.database))


    def test_nothing_of_pgconform_is_imported_but_the_plugin():
        loaded = [m for m in sys.modules if m.startswith("pgconform.")
                  and m != "pgconform.plugin" and not m.startswith("pgconform.plugin.")]
        print("pgconform modules:", sorted(loaded))


    @given(st.integers(0, 10 ** 6))
    def test_small(n):
        assert n < 1000
    """
)


def _normalised(result: pytest.RunResult) -> list[str]:
    import re

    lines = [re.sub(r" in [0-9.]+s", " in Ns", line) for line in result.outlines]
    return [line for line in lines if not line.startswith(("running:", "     in:"))]


def test_unrelated_hypothesis_project_is_untouched(pgconform_pytester, monkeypatch):
    """The pytest11 entry point loads the plugin in every pytest run of the environment: in a run
    that is not pgconform's (none of its options, no conformance module), it changes nothing:
    not the example database, not the exit status, not the output, even with a stale
    PGCONFORM_IMPL in the environment."""
    import hypothesis._settings

    # outside CI, where Hypothesis keeps an example database (its CI profile has none)
    for name in getattr(hypothesis._settings, "_CI_VARS", {"CI": None}):
        monkeypatch.delenv(name, raising=False)
    pgconform_pytester.makepyfile(test_other=UNRELATED)
    args = ("-p", "no:cacheprovider", "-s")
    without = pgconform_pytester.runpytest_subprocess("-p", "no:pgconform", *args)
    assert without.ret == pytest.ExitCode.TESTS_FAILED
    assert "pgconform modules: []" in without.stdout.str()
    without.stdout.fnmatch_lines(
        ["*database: DirectoryBasedExampleDatabase(*/.hypothesis/examples'))"])
    examples = pgconform_pytester.path / ".hypothesis" / "examples"
    saved = sorted(p for p in examples.rglob("*") if p.is_file())
    assert saved, "the failure was not saved to the project's database"
    for env in (None, "no_such_impl", "reference"):
        if env is None:
            monkeypatch.delenv("PGCONFORM_IMPL", raising=False)
        else:
            monkeypatch.setenv("PGCONFORM_IMPL", env)
        with_plugin = pgconform_pytester.runpytest_subprocess(*PLUGIN_ARGS, *args)
        assert with_plugin.ret == without.ret, env
        assert _normalised(with_plugin) == _normalised(without), env
        with_plugin.stdout.fnmatch_lines(["E *n=1000,"])  # replayed from the saved failure
        assert not (examples / "reference").exists()
        assert sorted(p for p in examples.rglob("*") if p.is_file()) == saved


def test_the_wheel_ships_only_the_pgconform_namespace():
    """pip wheel --no-deps . lists pgconform/ and its dist-info only: the repository's
    strategies/ folder is a re-export of pgconform.strategies."""
    import tomllib

    import pgconform.strategies
    import strategies

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"] == ["pgconform"]
    assert strategies.worlds is pgconform.strategies.worlds
    assert strategies.make_op is pgconform.strategies.make_op
    # coverage.py is for `python -m pgconform windows` and tox -e cov: an extra, not a dependency
    assert not any(d.startswith("coverage") for d in project["project"]["dependencies"])
    assert "cov" in project["project"]["optional-dependencies"]


def test_tox_runs_each_test_once_and_passes_the_selection():
    import configparser

    tox = configparser.ConfigParser()
    tox.read(ROOT / "tox.ini")
    envs = [e.strip() for e in tox["tox"]["env_list"].split(",")]
    assert "selftest" in envs and "zoo" not in envs  # zoo is a subset of selftest
    assert "PGCONFORM_IMPL" in tox["testenv"]["passenv"].split()


def _pgconform(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pgconform", *args], capture_output=True, text=True, cwd=ROOT
    )


def test_cli_list():
    out = _pgconform("list")
    assert out.returncode == 0, out.stderr
    assert "reference" in out.stdout.splitlines()
    assert out.stdout.splitlines() == registry.registered_names()


def test_cli_list_verbose_gives_targets():
    out = _pgconform("list", "-v")
    assert out.returncode == 0, out.stderr
    assert "reference\tpgconform.reference:IMPLEMENTATION" in out.stdout.splitlines()


@pytest.mark.parametrize("args", [(), ("no-such-command",)])
def test_cli_usage(args):
    out = _pgconform(*args)
    assert out.returncode == 2
    assert out.stdout == ""
    assert out.stderr.startswith("usage: pgconform")


# --- the README's option table ----------------------------------------------------------------


def test_readme_option_table_matches_the_plugin():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Selecting the implementation\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.split("\n### ", 1)[0].splitlines() if line.startswith("| `")]
    settings_in_precedence_order = [row.split("|")[1].strip() for row in rows]
    assert settings_in_precedence_order == [
        "`--impl SPEC`",
        f"`{plugin.ENV_VAR}`",
        f"`{plugin.INI_KEY}`",
    ]
    assert f"default `{plugin.DEFAULT_SPEC}`" in section


# --- --arch ----------------------------------------------------------------------------------


def test_unknown_arch_is_a_usage_error(pgconform_pytester, run_pgconform):
    pgconform_pytester.makepyfile(test_never="def test_never(): pass")
    result = run_pgconform("--arch", "vax")
    assert_usage_error(result, "unknown --arch vax", "x86_64", "powerpc64", "s390")


def test_arch_selection_reaches_the_tests(pgconform_pytester, run_pgconform):
    pgconform_pytester.makepyfile(test_arches=textwrap.dedent(
        """
        import os

        import pgconform.plugin as plugin


        def test_arches():
            assert plugin.selected_arches() == ["s390", "powerpc64"]
            assert os.environ["PGCONFORM_ARCH"] == "s390,powerpc64"
        """))
    result = run_pgconform("--arch", "s390", "--arch", "powerpc64", "--arch", "s390")
    result.assert_outcomes(passed=1)


def _conformance_items(*args: str) -> pytest.RunResult:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--collect-only", "-q",
         str(ROOT / "tests" / "conformance"), *args],
        capture_output=True, text=True, cwd=ROOT, check=False)


def test_conformance_items_are_arch_by_scenario():
    from pgconform.harness.machines import SCENARIOS
    from pgconform.kernel.arch import ARCHES

    out = _conformance_items()
    items = [line for line in out.stdout.splitlines() if "::Test_" in line]
    assert len(items) == len(ARCHES) * len(SCENARIOS), out.stdout + out.stderr
    out = _conformance_items("--arch", "s390", "--arch", "x86_pae")
    items = [line for line in out.stdout.splitlines() if "::Test_" in line]
    assert len(items) == 2 * len(SCENARIOS)
    assert all("Test_s390_" in i or "Test_x86_pae_" in i for i in items), items


def test_implementation_is_skipped_where_it_does_not_apply():
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rs",
         str(ROOT / "tests" / "conformance"), "--arch", "x86_64",
         "--impl", "pgconform.zoo.a10_pae_no_sync:MUTANT"],
        capture_output=True, text=True, cwd=ROOT, check=False)
    # a run that judged nothing is a usage error, with one line saying why
    assert out.returncode == pytest.ExitCode.USAGE_ERROR, out.stdout + out.stderr
    # one machine item per scenario and one sweep item per world (the anon world too: skipped
    # anyway)
    from pgconform.harness.machines import SCENARIOS
    from pgconform.harness.sweep import WORLDS

    skipped = f"{len(SCENARIOS) + len(WORLDS)} skipped"
    assert skipped in out.stdout and "applies to x86_pae only" in out.stdout, out.stdout
    assert ("pgconform: usage error: the run judged nothing: every conformance item was skipped "
            f"or deselected ({skipped}); check --arch, -k, -m and the implementation's "
            "arches") in out.stdout.splitlines()
    assert "pgconform conformance summary" not in out.stdout


def test_a_run_whose_conformance_items_are_all_deselected_is_a_usage_error():
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
         str(ROOT / "tests" / "conformance"), "--arch", "x86_64", "-k", "no_such_item"],
        capture_output=True, text=True, cwd=ROOT, check=False)
    assert out.returncode == pytest.ExitCode.USAGE_ERROR, out.stdout + out.stderr
    from pgconform.harness.machines import SCENARIOS
    from pgconform.harness.sweep import WORLDS

    n = len(SCENARIOS) + len(WORLDS)
    assert ("pgconform: usage error: the run judged nothing: every conformance item was skipped "
            f"or deselected ({n} deselected); check --arch, -k, -m and the implementation's "
            "arches") in out.stdout.splitlines()
    assert "Traceback" not in out.stdout + out.stderr


@pytest.mark.parametrize(("args", "message"), [
    (("matrix", "--versions", "nosuch"),
     "python -m pgconform matrix: error: --versions: unknown implementation 'nosuch'; registered:"),
    (("matrix", "--arch", "vax"), "python -m pgconform matrix: error: unknown --arch vax; known: "),
    (("windows", "--impl", "nosuch"),
     "pgconform windows: error: --impl: unknown implementation 'nosuch'; registered: "),
    (("windows", "--arch", "vax"), "pgconform windows: error: unknown --arch vax; known: "),
    (("windows", "--data", "/nonexistent"),
     "pgconform windows: error: --data /nonexistent: no such file"),
    (("windows", "--data", "README.md"),
     "pgconform windows: error: --data README.md: not a coverage data file ("),
])
def test_cli_bad_arguments_are_usage_errors(args, message):
    out = _pgconform(*args)
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stdout == ""
    assert out.stderr.startswith(message), out.stderr
    assert len(out.stderr.splitlines()) == 1, out.stderr


def test_cli_windows_without_coverage_says_what_to_install():
    code = ("import sys; sys.modules['coverage'] = None\n"  # as if coverage.py were not installed
            "from pgconform.__main__ import main; sys.exit(main(['windows']))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stderr == ("pgconform windows: error: coverage.py is not installed (pip install "
                          "'pgconform[cov]')\n")


def test_cli_windows_data_that_measured_none_of_pgconform(tmp_path):
    import coverage

    data = coverage.CoverageData(basename=str(tmp_path / ".coverage"))
    data.add_lines({str(tmp_path / "other.py"): [1, 2]})
    data.write()
    out = _pgconform("windows", "--data", str(tmp_path / ".coverage"))
    assert out.returncode == 2, out.stdout + out.stderr
    assert "measured none of pgconform's sources with race windows" in out.stderr
