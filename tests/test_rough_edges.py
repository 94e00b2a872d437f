"""A newcomer's rough edges (issue 23): newest rows, scaled units, plots per project, messages
that say what exists and what to do, short options."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from let_backends.manual import ManualBackend
from let_core.cli import cli
from let_core.errors import ConfigurationError
from let_core.tracker import EnergyTracker

ROOT = Path(__file__).resolve().parents[1]


def _run(project: str, kwh: float, reporters: Any = ("csv",), **kwargs: Any) -> str:
    with EnergyTracker(project_name=project, backends=[ManualBackend(energy_kwh=kwh, hardware="Xeon")],
                       reporters=list(reporters), carbon_intensity=400, **kwargs) as tracker:
        pass
    return tracker.run_id


def test_limit_is_the_newest_runs_also_with_a_parquet_dataset(let_home: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LET_DATASET", str(let_home / "runs"))
    # Partitions come back by project: "zeta"'s old runs would be last, so a plain tail shows them.
    # Start times are stored to the second: a second apart, each run is newer than the last.
    ids = [(time.sleep(1.05), _run(project, 0.1, reporters=["parquet"]))[1]
           for project in ("zeta", "zeta", "alpha", "alpha")]
    assert (let_home / "runs").is_dir()
    result = CliRunner().invoke(cli, ["results", "-n", "2", "--json"])
    import json

    shown = [json.loads(line)["run_id"] for line in result.output.splitlines()]
    assert shown == ids[2:]


def test_by_scales_units_as_the_plain_table(let_home: Path) -> None:
    _run("tiny", 5e-6)
    lines = CliRunner().invoke(cli, ["results", "--by", "project"]).output.splitlines()
    assert lines[2].split()[:6] == ["tiny", "1", "5.000", "mWh", "2.000", "mg"]
    assert "0.000005" not in "\n".join(lines) and "0.000000" not in "\n".join(lines)


def test_plot_draws_each_project_apart_with_markers_and_counts_runs(let_home: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import matplotlib.axes

    for i in range(7):
        _run("a" if i % 2 else "b", 0.01 * (i + 1))
    drawn: list[dict[str, Any]] = []
    real_plot = matplotlib.axes.Axes.plot

    def spy(self: Any, *args: Any, **kwargs: Any) -> Any:
        drawn.append({"y": list(args[1]), **kwargs})
        return real_plot(self, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "plot", spy)
    result = CliRunner().invoke(cli, ["plot", "--output", str(tmp_path / "e.png")])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"wrote {tmp_path / 'e.png'}: 7 runs of 2 projects"
    by_label = {d["label"]: d for d in drawn}
    assert set(by_label) == {"a, estimate (3 runs)", "b, estimate (4 runs)"}
    assert sorted(by_label["a, estimate (3 runs)"]["y"]) == pytest.approx([20, 40, 60])  # Wh, only a's
    assert all(d["marker"] == "o" for d in drawn)


def test_plot_into_a_missing_folder_is_one_line(let_home: Path) -> None:
    _run("a", 0.1)
    result = CliRunner().invoke(cli, ["plot", "--output", "/no/dir/x.png"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "Error: cannot write /no/dir/x.png: the folder /no/dir does not exist; "
        "create it first or give another --output"]


@pytest.mark.parametrize("command", [["results"], ["statement"], ["plot"], ["export", "csv", "out.csv"], ["cite"]])
def test_a_project_typo_fails_naming_the_close_project(let_home: Path, command: list[str]) -> None:
    _run("resnet-cifar", 0.1)
    _run("bert-glue", 0.1)
    result = CliRunner().invoke(cli, [*command, "-p", "resnet-cifra"])
    assert result.exit_code == 1, result.output
    assert "did you mean 'resnet-cifar'?" in result.output


def test_an_unknown_options_key_names_the_backends(let_home: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"'manaul' name no backend.*known backends: .*manual.*"
                                                 r"did you mean 'manual' for 'manaul'\?"):
        EnergyTracker(project_name="x", options={"manaul": {"energy_kwh": 1.0}})


def test_options_for_manual_make_it_available_to_auto(let_home: Path) -> None:
    with EnergyTracker(project_name="x", options={"manual": {"energy_kwh": 0.25}}, reporters=["csv"]) as tracker:
        pass
    result = tracker.stop()
    assert result["measurements"]["manual"]["energy_consumed"] == pytest.approx(0.25)


def test_a_busy_port_is_an_error_before_the_banner(let_home: Path) -> None:
    pytest.importorskip("uvicorn", reason="`lett ui` needs the server extra (fastapi, uvicorn)")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "let_core", "ui", "--port", str(port)], capture_output=True,
                              text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 1
    assert "LET dashboard on" not in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == (f"Error: cannot listen on 127.0.0.1:{port}: Address already in use; another "
                                   "program (an earlier `lett ui`?) may use it: stop it, or pick another port: "
                                   f"lett ui --port {port + 1}")


def test_export_to_an_unknown_format_lists_the_formats(let_home: Path) -> None:
    _run("a", 0.1)
    result = CliRunner().invoke(cli, ["export", "xlsx", "out.xlsx"])
    assert result.exit_code == 1
    assert "unknown export format 'xlsx'; formats: csv, parquet, strep" in result.output


def test_demo_with_an_unknown_country_fails_before_the_workload(let_home: Path) -> None:
    result = CliRunner().invoke(cli, ["demo", "--seconds", "30", "--country", "ATLANTIS"])
    assert result.exit_code == 1
    assert "Tracking" not in result.output and "ATLANTIS" in result.output


def test_short_options_mean_the_same_on_every_command(let_home: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    _run("a", 0.1, output_dir=str(store))
    _run("b", 0.2, output_dir=str(store))
    runner = CliRunner()
    long = runner.invoke(cli, ["results", "--json", "--output-dir", str(store), "--project", "b"]).output
    short = runner.invoke(cli, ["results", "--json", "-o", str(store), "-p", "b"]).output
    assert short == long and '"project_name": "b"' in short
    statement = runner.invoke(cli, ["statement", "-o", str(store), "-p", "b"])
    assert statement.exit_code == 0 and "0.200 kWh" in statement.output
    for command in ("results", "statement", "plot", "export", "delete", "cite", "run", "demo", "ui", "doctor"):
        help_text = runner.invoke(cli, [command, "--help"]).output
        if "--output-dir" in help_text:
            assert "-o, --output-dir" in help_text, command
        if "--project " in help_text:
            assert "-p, --project" in help_text, command
