"""Third-party plugins through the entry-point group "let", and what goes wrong with them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from let_core import load_results, plugins, track_energy
from let_core.errors import LetWarning
from let_core.tracker import EnergyTracker

PLUGIN_SOURCE = textwrap.dedent('''
    from let_core import hookimpl
    from let_core.interfaces import Availability
    from let_core.records import Measurement


    class ConstantBackend:
        name = "constant"
        auto = True
        description = "a quarter kWh, always"

        @classmethod
        def availability(cls, settings):
            return Availability.yes()

        @classmethod
        def from_settings(cls, settings):
            return cls()

        def start(self):
            pass

        def stop(self):
            return Measurement(backend="constant", methodology="a constant", kind="estimate",
                               energy_kwh=0.25, duration_s=0.0, hardware="Plugin Board")


    @hookimpl
    def let_register_backends(register):
        register(ConstantBackend)
''')


def make_distribution(root: Path, name: str, module: str, source: str, entry: str) -> Path:
    """A minimal installed distribution: a module and its dist-info with an entry point."""
    site = root / "site"
    site.mkdir(exist_ok=True)
    (site / f"{module}.py").write_text(source)
    info = site / f"{name.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[let]\n{entry} = {module}\n")
    return site


@pytest.fixture
def fresh_plugins():
    plugins.reset()
    yield
    plugins.reset()


@pytest.fixture
def demo_site(tmp_path, monkeypatch, fresh_plugins):
    site = make_distribution(tmp_path, "let-demo-plugin", "let_demo_plugin", PLUGIN_SOURCE, "demo")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delenv("LET_LOAD_PLUGINS")
    yield site
    sys.modules.pop("let_demo_plugin", None)


def test_entry_point_plugin_is_found_and_dispatched_by_track_energy(demo_site, let_home):
    @track_energy(project_name="plugged", backends=["constant"])
    def experiment() -> int:
        return 7

    assert experiment() == 7
    assert "constant" in [b.name for b in EnergyTracker(backends=["auto"], reporters=[]).backends]
    row = load_results(project_name="plugged").iloc[0]
    assert (row["backend"], row["energy_consumed"], row["hardware"]) == ("constant", 0.25, "Plugin Board")
    registered = plugins.registry().backends["constant"]
    assert registered.source == "let-demo-plugin" and registered.plugin == "demo"


@pytest.mark.parametrize("value, loaded", [("", False), ("demo", True), ("other,demo", True), ("other", False)])
def test_let_load_plugins_filters_entry_points(demo_site, monkeypatch, value, loaded):
    monkeypatch.setenv("LET_LOAD_PLUGINS", value)
    assert ("constant" in plugins.registry().backends) is loaded
    assert "manual" in plugins.registry().backends  # built-ins always


def test_broken_plugin_is_named_and_builtins_still_track(tmp_path, monkeypatch, fresh_plugins, let_home):
    site = make_distribution(tmp_path, "let-broken", "let_broken", "raise ImportError('needs libfoo')", "broken")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delenv("LET_LOAD_PLUGINS")
    with pytest.warns(LetWarning, match="'broken' \\(let-broken\\).*needs libfoo"):
        registry = plugins.registry()
    assert [p.plugin for p in registry.problems] == ["broken"]
    from let_backends.manual import ManualBackend

    with EnergyTracker(backends=[ManualBackend(energy_kwh=1.0)], reporters=["csv"]):
        pass
    assert len(load_results()) == 1


def test_duplicate_backend_name_is_rejected_with_both_plugins_named(tmp_path, monkeypatch, fresh_plugins):
    source = PLUGIN_SOURCE.replace('name = "constant"', 'name = "manual"')
    site = make_distribution(tmp_path, "let-clash", "let_clash", source, "clash")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delenv("LET_LOAD_PLUGINS")
    with pytest.warns(LetWarning, match="already registered by 'let_backends.manual'"):
        registry = plugins.registry()
    assert registry.backends["manual"].source == "built-in"
    sys.modules.pop("let_clash", None)


def test_invalid_names_and_missing_methods_are_problems(tmp_path, monkeypatch, fresh_plugins):
    source = textwrap.dedent('''
        from let_core import hookimpl

        class Nameless:
            name = "Bad Name!"

        class Incomplete:
            name = "incomplete"

        @hookimpl
        def let_register_backends(register):
            register(Nameless)
            register(Incomplete)
    ''')
    site = make_distribution(tmp_path, "let-sloppy", "let_sloppy", source, "sloppy")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delenv("LET_LOAD_PLUGINS")
    with pytest.warns(LetWarning):
        registry = plugins.registry()
    messages = " ".join(p.message for p in registry.problems)
    assert "invalid name 'Bad Name!'" in messages and "'incomplete' lacks auto, description, availability, from_settings" in messages
    sys.modules.pop("let_sloppy", None)


def test_let_plugins_lists_name_kind_source_and_availability(demo_site):
    env = {**os.environ, "PYTHONPATH": str(demo_site)}
    env.pop("LET_LOAD_PLUGINS", None)
    out = subprocess.run([sys.executable, "-m", "let_core.cli", "plugins", "--json"], env=env,
                         capture_output=True, text=True, check=True).stdout
    listed = {p["name"]: p for p in json.loads(out)["plugins"]}
    assert listed["constant"]["source"] == "let-demo-plugin" and listed["constant"]["available"]
    assert listed["manual"]["source"] == "built-in" and not listed["manual"]["available"]
    assert "needs a figure" in listed["manual"]["reason"]
    assert listed["csv"]["kind"] == "reporter"
    table = subprocess.run([sys.executable, "-m", "let_core.cli", "plugins"], env=env,
                           capture_output=True, text=True, check=True).stdout
    assert "constant" in table and "let-demo-plugin" in table


def test_plugin_loading_is_lazy_and_importing_is_cheap():
    code = ("import sys, let_core, lamarr_energy_tracker, let_core.tracker; "
            "from lamarr_energy_tracker import EnergyTracker; "
            "heavy = [m for m in ('codecarbon', 'pandas', 'pyarrow', 'requests', 'fastapi', 'mlflow') "
            "if m in sys.modules]; "
            "from let_core import plugins; "
            "print(heavy, plugins.pm.get_plugins() == set())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[] True"


def test_tracking_path_imports_no_heavy_library(let_home):
    code = ("import sys\n"
            "from lamarr_energy_tracker import EnergyTracker\n"
            "from let_backends.manual import ManualBackend\n"
            "with EnergyTracker(project_name='light', backends=[ManualBackend(energy_kwh=0.2)]):\n"
            "    pass\n"
            # uuid (platform), click and the dataset module each cost a tracked run milliseconds
            # of start-up; the manual-backend run must not pay for them either.
            "print([m for m in ('codecarbon', 'pandas', 'pyarrow', 'requests', 'uuid',\n"
            "                   'click', 'let_core.dataset') if m in sys.modules])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_builtin_table_matches_what_the_modules_register(fresh_plugins):
    registry = plugins.registry()
    registered = {(r.kind, r.name, r.factory.auto, r.plugin)
                  for table in (registry.backends, registry.reporters) for r in table.values()}
    declared = {(kind, name, auto, module)
                for module, entries in plugins.BUILTINS.items() for kind, name, auto in entries}
    assert registered == declared
    assert registry.problems == []  # every built-in satisfies the contract it is checked against


def _modules_after(code: str) -> list[str]:
    env = {**os.environ}
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys\nprint(sorted(m for m in sys.modules "
                          "if m.startswith(('let_backends.', 'let_reporters.'))))"],
                         env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1].replace("'", '"'))


def test_a_named_plugin_loads_only_its_own_module(let_home):
    loaded = _modules_after("from let_core.tracker import EnergyTracker\n"
                            "EnergyTracker(backends=['codecarbon'], reporters=['csv'])")
    assert loaded == ["let_backends.codecarbon", "let_reporters.csv"]


def test_auto_loads_the_auto_plugins_only(let_home):
    loaded = _modules_after("from let_core.tracker import EnergyTracker\n"
                            "EnergyTracker(backends=['auto'], reporters=['auto'])")
    assert "let_backends.codecarbon" in loaded and "let_reporters.statement" in loaded
    assert "let_backends.manual" not in loaded and "let_reporters.strep" not in loaded


def test_an_entry_point_plugin_installed_later_is_found(tmp_path, monkeypatch, fresh_plugins):
    monkeypatch.delenv("LET_LOAD_PLUGINS")
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    assert "constant" not in plugins.registry().backends
    plugins.reset()
    make_distribution(tmp_path, "let-demo-plugin", "let_demo_plugin", PLUGIN_SOURCE, "demo")
    assert "constant" in plugins.registry().backends
    sys.modules.pop("let_demo_plugin", None)


def test_factory_missing_a_protocol_attribute_is_rejected_by_name(tmp_path, monkeypatch, fresh_plugins,
                                                                  let_home):
    source = textwrap.dedent('''
        from let_core import hookimpl
        from let_core.interfaces import Availability

        class Orderless:
            name = "orderless"
            auto = True
            description = "a reporter without order"

            @classmethod
            def availability(cls, settings):
                return Availability.yes()

            @classmethod
            def from_settings(cls, settings):
                return cls()

            def report(self, run):
                pass

        class Undescribed:
            name = "undescribed"
            auto = "yes"

            @classmethod
            def availability(cls, settings):
                return Availability.yes()

            @classmethod
            def from_settings(cls, settings):
                return cls()

        @hookimpl
        def let_register_reporters(register):
            register(Orderless)

        @hookimpl
        def let_register_backends(register):
            register(Undescribed)
    ''')
    site = make_distribution(tmp_path, "let-partial", "let_partial", source, "partial")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delenv("LET_LOAD_PLUGINS")
    with pytest.warns(LetWarning):
        registry = plugins.registry()
    messages = {p.message.split(":")[0] for p in registry.problems}
    assert "reporter 'orderless' lacks order" in messages
    assert "backend 'undescribed' lacks description; auto must be True or False, not 'yes'" in messages
    assert "orderless" not in registry.reporters and "undescribed" not in registry.backends
    from let_backends.manual import ManualBackend

    with EnergyTracker(backends=[ManualBackend(energy_kwh=0.1)], reporters=["csv"]):
        pass  # the built-ins still work beside the rejected plugins
    assert len(load_results()) == 1
    sys.modules.pop("let_partial", None)


def test_misspelled_hook_implementation_is_reported(tmp_path, monkeypatch, fresh_plugins):
    source = PLUGIN_SOURCE.replace("def let_register_backends(", "def let_register_backend(")
    site = make_distribution(tmp_path, "let-typo", "let_typo", source, "typo")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delenv("LET_LOAD_PLUGINS")
    with pytest.warns(LetWarning, match="let_register_backend"):
        registry = plugins.registry()
    [problem] = registry.problems
    assert problem.plugin == "typo" and "unknown hook 'let_register_backend'" in problem.message
    assert "let_register_backends" in problem.message  # the names that do exist
    sys.modules.pop("let_typo", None)


@pytest.mark.parametrize("verbose", [[], ["-v"]])
def test_let_plugins_fits_80_columns_and_says_why(monkeypatch, verbose):
    from click.testing import CliRunner

    from let_core.cli import cli

    monkeypatch.setenv("COLUMNS", "80")
    result = CliRunner().invoke(cli, ["plugins", *verbose])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(map(len, lines)) <= 80
    assert any(line.startswith("manual ") and line.rstrip().endswith("no") for line in lines)
    assert "why not: needs a figure" in result.output
    assert ("CodeCarbon's estimate" in result.output) == bool(verbose)


def test_countries_is_a_core_command():
    from click.testing import CliRunner

    from let_core.cli import cli

    result = CliRunner().invoke(cli, ["countries", "--search", "germ"])  # no plugin commands loaded
    assert result.exit_code == 0 and "DEU" in result.output
