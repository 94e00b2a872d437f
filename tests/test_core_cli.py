"""The `let` command line: results, statement, delete, cite, run, demo."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from let_backends.manual import ManualBackend
from let_core import load_results
from let_core.cli import cli, main
from let_core.tracker import EnergyTracker


def record(project: str, kwh: float = 0.2) -> None:
    with EnergyTracker(project_name=project, reporters=["csv"],
                       backends=[ManualBackend(energy_kwh=kwh, hardware="Intel CPU")]):
        pass


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_results_table_and_json(let_home, runner):
    record("alpha")
    record("beta")
    table = runner.invoke(cli, ["results"])
    assert table.exit_code == 0, table.output
    lines = table.output.splitlines()
    assert lines[0].split()[:4] == ["start_time", "project_name", "hostname", "backend"]
    assert any("alpha" in line and "0.200 kWh" in line for line in lines)
    as_json = runner.invoke(cli, ["results", "--json", "--project", "beta"])
    rows = [json.loads(line) for line in as_json.output.splitlines()]
    assert len(rows) == 1 and rows[0]["project_name"] == "beta" and rows[0]["energy_consumed"] == 0.2
    nothing = runner.invoke(cli, ["results", "--project", "none"])
    assert nothing.exit_code == 1
    message = nothing.output.strip()
    assert message.startswith("Error: no stored runs match in ") and str(let_home / "emissions.csv") in message
    assert message.endswith("--project 'none' matches none; stored: alpha, beta")


def test_statement_stored_and_custom(let_home, runner):
    record("paper", 0.5)
    out = runner.invoke(cli, ["statement", "--project", "paper"])
    assert out.exit_code == 0 and "estimated to 0.500 kWh" in out.output
    custom = runner.invoke(cli, ["statement", "--methodology", "the CO2 Impact Calculator",
                                 "--hardware", "NVIDIA GTX 1080 GPU", "--energy", "3.2", "--carbon-intensity", "380"])
    assert "1.216 kg" in custom.output
    partial = runner.invoke(cli, ["statement", "--methodology", "x"])
    assert partial.exit_code == 2 and "needs --methodology, --hardware and --energy" in partial.output
    missing = runner.invoke(cli, ["statement", "--project", "nothing"])
    assert missing.exit_code == 1 and "no stored runs" in missing.output and "Traceback" not in missing.output


def test_delete_asks_first_and_deletes_only_matches(let_home, runner):
    record("keep")
    record("drop")
    record("drop")
    refused = runner.invoke(cli, ["delete", "--project", "drop"], input="n\n")
    assert refused.exit_code == 1 and "Delete 2 run(s)" in refused.output
    assert len(load_results()) == 3
    done = runner.invoke(cli, ["delete", "--project", "drop", "--yes"])
    assert "deleted 2 run(s)" in done.output
    assert list(load_results()["project_name"]) == ["keep"]
    assert "nothing deleted" in runner.invoke(cli, ["delete", "--project", "drop", "--yes"]).output


def test_cite_prints_what_the_statement_cites(let_home, runner):
    empty = runner.invoke(cli, ["cite"])  # nothing stored: nothing to cite (issue 14)
    assert empty.exit_code == 1 and "nothing to cite" in empty.output
    everything = runner.invoke(cli, ["cite", "--all"]).output
    assert "@software{lamarr_energy_tracker" in everything and "@software{codecarbon" in everything
    record("manual-only")
    cited = runner.invoke(cli, ["cite", "--project", "manual-only"]).output
    assert "@software{codecarbon" not in cited  # no CodeCarbon numbers in that statement
    assert "@misc{ai_energy_validation" in cited


def test_run_tracks_a_command_and_passes_its_exit_code(let_home):
    ok = subprocess.run([sys.executable, "-m", "let_core.cli", "run", "--project", "cmd",
                         "--backend", "manual", "--", sys.executable, "-c", "print('hi')"],
                        capture_output=True, text=True)
    # "manual" needs a figure, so the error says so before running anything.
    assert ok.returncode == 1 and "needs a figure" in ok.stderr
    failing = subprocess.run([sys.executable, "-c",
                              "import sys; from let_core.cli import main; "
                              "from let_core import tracker; sys.exit(main())",
                              "run", "--project", "cmd", "--", sys.executable, "-c", "import sys; sys.exit(3)"],
                             capture_output=True, text=True)
    assert failing.returncode == 3
    frame = load_results(project_name="cmd")
    assert set(frame["run_status"]) == {"failed"} and "exit status 3" in frame.iloc[0]["error"]


def test_main_registers_plugin_commands(let_home, capsys):
    import click

    from let_core.hookspecs import hookimpl
    from let_core.plugins import pm

    class HelloPlugin:
        @hookimpl
        def let_register_commands(self, cli):
            @cli.command()
            @click.argument("name")
            def hello(name):
                """Greets."""
                click.echo(f"hello {name} from a plugin")

    pm.register(HelloPlugin(), name="test-hello-plugin")
    try:
        with pytest.raises(SystemExit) as exit_info:
            main(["hello", "world"])
        assert exit_info.value.code == 0
        assert "hello world from a plugin" in capsys.readouterr().out
    finally:
        pm.unregister(name="test-hello-plugin")
        cli.commands.pop("hello", None)
    with pytest.raises(SystemExit) as exit_info:
        main(["hello", "world"])  # gone with its plugin
    assert exit_info.value.code == 2


def test_run_success_records_an_ok_run_and_exits_zero(let_home):
    done = subprocess.run([sys.executable, "-m", "let_core", "run", "--project", "okcmd", "--",
                           sys.executable, "-c", "print('hi from the command')"],
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert "hi from the command" in done.stdout
    frame = load_results(project_name="okcmd")
    assert len(frame) >= 1 and set(frame["run_status"]) == {"ok"} and set(frame["error"].fillna("")) == {""}
    assert (frame["energy_consumed"] > 0).all()


def test_demo_tracks_a_workload_and_prints_each_backend(let_home, runner):
    result = runner.invoke(cli, ["demo", "--seconds", "0.3", "--project", "demo-test"])
    assert result.exit_code == 0, result.output
    assert "codecarbon:" in result.output and "Wh (CodeCarbon " in result.output
    assert "lett statement" in result.output
