"""A process tree's share of the machine's figure: real processes, real /proc."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from let_backends.manual import ManualBackend
from let_core.tracker import EnergyTracker

ROOT = Path(__file__).resolve().parents[1]

TRACKED = textwrap.dedent("""
    import json, resource, subprocess, sys, time
    from let_backends.manual import ManualBackend
    from let_core.tracker import EnergyTracker
    busy = sys.argv[1] == "busy"
    with EnergyTracker(project_name="shared", attribution="process", reporters=[],
                       backends=[ManualBackend(power_watts=100, hardware="the machine")],
                       measure_power_secs=0.2) as t:
        if busy:  # the work runs in a child: the tree's share includes its children
            subprocess.run([sys.executable, "-c",
                            "import time\\nend = time.time() + 4\\nwhile time.time() < end: pass"])
        else:
            time.sleep(4)
    rows = {m.backend: {"kind": m.kind, "energy": m.energy_kwh, "error": m.error, "extras": dict(m.extras)}
            for m in t.last_run.measurements}
    child = resource.getrusage(resource.RUSAGE_CHILDREN)
    rows["child_cpu_s"] = child.ru_utime + child.ru_stime
    print(json.dumps(rows))
""")


def test_busy_and_sleeping_processes_at_once(tmp_path: Path) -> None:
    script = tmp_path / "tracked.py"
    script.write_text(TRACKED)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LET_HOME": str(tmp_path / "home")}
    procs = {role: subprocess.Popen([sys.executable, str(script), role], env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True) for role in ("busy", "sleeping")}
    out = {}
    for role, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr[-3000:]
        out[role] = json.loads(stdout.strip().splitlines()[-1])
    busy, sleeping = out["busy"]["manual/process"], out["sleeping"]["manual/process"]
    assert busy["kind"] == sleeping["kind"] == "attributed" and not busy["error"] and not sleeping["error"]
    # The machine figure stays as measured, beside the share.
    machine = min(out["busy"]["manual"]["energy"], out["sleeping"]["manual"]["energy"])
    assert out["busy"]["manual"]["kind"] == "estimate"
    assert busy["energy"] > 5 * sleeping["energy"]
    # Other work on this shared machine (other tests, other users) takes the rest of the busy time.
    assert 0 < busy["extras"]["cpu_share"] <= 1
    assert busy["energy"] + sleeping["energy"] <= machine * 1.02  # both ran the same ~4 s
    # The child's CPU time is the tree's (less at most one sampling interval lost at its exit).
    # (A loaded machine gives the child less than its 4 s; at least a few tenths of a second.)
    assert busy["extras"]["process_cpu_s"] >= out["busy"]["child_cpu_s"] - 0.25 and out["busy"]["child_cpu_s"] > 0.3

    # Counting, asked for the shares, counts them through the one rule (never beside the machine).
    from click.testing import CliRunner

    from let_core.cli import cli
    from let_core.results import aggregate, frame_totals, load_results
    from let_core.statement import format_energy

    home = tmp_path / "home"
    rows = load_results(home)
    shares = frame_totals(rows, attributed=True)
    assert shares.runs == 2
    assert shares.energy_kwh == pytest.approx(busy["energy"] + sleeping["energy"])
    assert shares.energy_kwh <= machine * 1.02 < frame_totals(rows).energy_kwh
    per_run = {run: frame_totals(rows[rows["run_id"] == run], attributed=True).energy_kwh
               for run in rows["run_id"].unique()}
    assert sorted(per_run.values()) == pytest.approx(sorted([busy["energy"], sleeping["energy"]]))
    assert aggregate(rows, "project", attributed=True)["kwh"].sum() == pytest.approx(shares.energy_kwh)
    stated = CliRunner().invoke(cli, ["statement", "--attribution", "--output-dir", str(home)])
    assert stated.exit_code == 0, stated.output
    assert "this process's share of the machine" in stated.output
    assert f"is estimated to {format_energy(shares.energy_kwh)}" in stated.output
    assert f"the machine as a whole used {format_energy(frame_totals(rows).energy_kwh)}" in stated.output
    assert "no share was measured" not in stated.output
    summed = CliRunner().invoke(cli, ["results", "--by", "project", "--attribution", "--output-dir", str(home)])
    assert summed.exit_code == 0 and format_energy(shares.energy_kwh) in summed.output, summed.output


def test_attributed_row_is_stored_and_not_counted(let_home: Path) -> None:
    from let_core.results import frame_totals, load_results

    with EnergyTracker(project_name="p", attribution="process", reporters=[],
                       backends=[ManualBackend(power_watts=100)]) as tracker:
        sum(range(10**6))
    rows = load_results(let_home)
    assert sorted(rows["kind"]) == ["attributed", "estimate"]
    attributed = rows[rows["kind"] == "attributed"].iloc[0]
    assert attributed["backend"] == "manual/process" and attributed["scope"] == "process"
    assert "this process's share of the machine" in attributed["methodology"]
    machine = rows[rows["kind"] == "estimate"]["energy_consumed"].iloc[0]
    assert frame_totals(rows).energy_kwh == pytest.approx(machine)
    assert tracker.last_result["energy_consumed"] == pytest.approx(machine)


def test_unreadable_proc_keeps_the_machine_figure_and_says_why(let_home: Path, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from let_core import attribution

    monkeypatch.setattr(attribution, "PROC", tmp_path / "no-proc")
    with EnergyTracker(project_name="p", attribution="process", reporters=[],
                       backends=[ManualBackend(power_watts=100)]) as tracker:
        pass
    by_name = {m.backend: m for m in tracker.last_run.measurements}
    assert by_name["manual"].ok
    assert not by_name["manual/process"].ok and "no share" in by_name["manual/process"].error
    assert "not readable" in by_name["manual/process"].error
    from let_core.results import frame_totals, load_results

    stored = load_results(let_home).set_index("backend")
    assert stored.loc["manual", "error"] == "" and stored.loc["manual", "energy_consumed"] > 0
    assert "no share" in stored.loc["manual/process", "error"] and stored.loc["manual/process", "kind"] == "attributed"
    # Asked for shares, the run counts its machine figure: it has no share to stand in for it.
    assert frame_totals(stored.reset_index(), attributed=True).energy_kwh == pytest.approx(
        stored.loc["manual", "energy_consumed"])


def test_attribution_setting_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    from let_core.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="process"):
        EnergyTracker(attribution="proces", backends=[ManualBackend(power_watts=1)], reporters=[])
    monkeypatch.setenv("LET_ATTRIBUTION", "process")
    assert EnergyTracker(backends=[ManualBackend(power_watts=1)], reporters=[]).attribution == "process"
    monkeypatch.setenv("LET_ATTRIBUTION", "everything")
    with pytest.raises(ConfigurationError, match="LET_ATTRIBUTION|everything"):
        EnergyTracker(backends=[ManualBackend(power_watts=1)], reporters=[])


def test_let_run_attribution_process(let_home: Path) -> None:
    from click.testing import CliRunner

    from let_core.cli import cli
    from let_core.results import load_results

    done = CliRunner().invoke(cli, ["run", "--attribution", "process", "--backend", "codecarbon", "-q", "--",
                                    sys.executable, "-c", "sum(range(10**6))"])
    assert done.exit_code == 0, done.output
    rows = load_results(let_home)
    share = rows[rows["kind"] == "attributed"]
    assert list(share["backend"]) == ["codecarbon/process"] and share["error"].iloc[0] == ""
    machine = rows[rows["kind"] == "estimate"]["energy_consumed"].iloc[0]
    assert 0 <= share["energy_consumed"].iloc[0] <= machine


def test_attributed_view_counts_shares_and_whole_figures_where_none(let_home: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from let_core import attribution
    from let_core.cli import cli
    from let_core.results import frame_totals, load_results

    with EnergyTracker(project_name="p", attribution="process", reporters=[],
                       backends=[ManualBackend(power_watts=100)]):
        sum(range(10**6))
    monkeypatch.setattr(attribution, "PROC", tmp_path / "no-proc")  # the second run gets no share
    with EnergyTracker(project_name="p", attribution="process", reporters=[],
                       backends=[ManualBackend(power_watts=100)]):
        pass
    rows = load_results(let_home)
    machine = rows[rows["kind"] == "estimate"].set_index("run_id")["energy_consumed"]
    share = rows[(rows["kind"] == "attributed") & (rows["error"] == "")].set_index("run_id")["energy_consumed"]
    (shared_run,) = share.index
    unshared_run = next(run for run in machine.index if run != shared_run)
    counted = frame_totals(rows, attributed=True)
    assert counted.runs == 2
    assert counted.energy_kwh == pytest.approx(share[shared_run] + machine[unshared_run])
    assert frame_totals(rows).energy_kwh == pytest.approx(machine.sum())  # the machine view as ever
    # Shares are stated as what they are shares of: the machine figure's backend and methodology.
    assert counted.backends == {"manual": 2} and counted.methodologies == frame_totals(rows).methodologies
    stated = CliRunner().invoke(cli, ["statement", "--attribution"])
    assert stated.exit_code == 0, stated.output
    assert "For 1 of the 2 runs no share was measured" in stated.output
    listed = CliRunner().invoke(cli, ["results", "--attribution", "--json"])
    shown = [json.loads(line) for line in listed.output.splitlines()]
    # The figure a share stands in for is left out; the run without a share shows its figure.
    assert sorted((r["run_id"] == shared_run, r["kind"]) for r in shown) == [
        (False, "attributed"), (False, "estimate"), (True, "attributed")]
