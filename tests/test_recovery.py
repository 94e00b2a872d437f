"""A tracked process that dies before it stops its tracker keeps what it had published: the next
tracker to start on the node records it, once, as a failed run that says so."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from let_backends.manual import ManualBackend
from let_core.tracker import EnergyTracker

ROOT = Path(__file__).resolve().parents[1]

KILLED = textwrap.dedent("""
    import os, signal, sys, time
    from let_backends.manual import ManualBackend
    from let_core.tracker import EnergyTracker
    gpu = ManualBackend(power_watts=250, scope="gpu", name="gpu", hardware="NVIDIA A100 GPU")
    with EnergyTracker(project_name="killed", backends=[ManualBackend(power_watts=360, hardware="the node"), gpu],
                       reporters=[]) as t:
        print(t.run_id, flush=True)
        time.sleep(600)  # until the test kills it, as a time limit or the OOM killer would
""")


@pytest.fixture
def node(tmp_path: Path, let_home: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    runtime = tmp_path / "run"
    for name, value in {"LET_RUNTIME_DIR": str(runtime), "LET_LIVE_INTERVAL": "0.1", "LET_HOSTNAME": "node1"}.items():
        monkeypatch.setenv(name, value)
    return {**os.environ, "PYTHONPATH": str(ROOT), "LET_LOAD_PLUGINS": "", "RUNTIME": str(runtime)}


def _killed_run(node: dict[str, str], tmp_path: Path) -> tuple[str, float]:
    """A tracked process SIGKILLed once it published a figure: its run id and that figure."""
    script = tmp_path / "killed.py"
    script.write_text(KILLED)
    proc = subprocess.Popen([sys.executable, str(script)], env=node, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        run_id = proc.stdout.readline().strip()
        assert run_id, proc.communicate()[1][-3000:]
        live = Path(node["RUNTIME"]) / "live"
        while True:
            files = list(live.glob(f"node1-{proc.pid}-*.json"))
            data = json.loads(files[0].read_text()) if files else {}
            energy = [r["energy_kwh"] for r in data.get("readings", []) if r["backend"] == "manual"]
            if energy and energy[0] > 0:
                break
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return run_id, energy[0]
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def test_a_killed_run_is_recorded_by_the_next_tracker_on_the_node(node: dict[str, str], let_home: Path,
                                                                  tmp_path: Path) -> None:
    from let_core.results import frame_totals, load_results

    dead_run, published = _killed_run(node, tmp_path)
    assert load_results(let_home).empty  # it stored nothing itself
    with EnergyTracker(project_name="next", backends=[ManualBackend(power_watts=10)], reporters=[]):
        pass
    rows = load_results(let_home)
    kept = rows[rows["run_id"] == dead_run].set_index("backend")
    assert sorted(kept.index) == ["gpu", "manual"]
    assert set(kept["run_status"]) == {"failed"} and set(kept["project_name"]) == {"killed"}
    assert all(error.startswith("process_died:") for error in kept["error"])
    assert kept.loc["manual", "energy_consumed"] >= published > 0
    # Its own kinds, scopes, methodology and hardware, from what it wrote at start.
    assert kept.loc["gpu", "scope"] == "gpu" and kept.loc["gpu", "hardware"] == "NVIDIA A100 GPU"
    assert kept.loc["manual", "hardware"] == "the node" and kept.loc["manual", "methodology"]
    # Counted as the run would have been: the whole-system figure covers the GPU's (scopes kept).
    assert frame_totals(kept.reset_index()).energy_kwh == pytest.approx(kept.loc["manual", "energy_consumed"])
    assert not list((Path(node["RUNTIME"]) / "live").iterdir())  # nothing left to record again
    with EnergyTracker(project_name="next", backends=[ManualBackend(power_watts=10)], reporters=[]):
        pass
    assert (load_results(let_home)["run_id"] == dead_run).sum() == 2  # still its two rows, once


def test_a_damaged_header_records_nothing_and_stays(node: dict[str, str], let_home: Path, tmp_path: Path) -> None:
    from let_core.results import load_results

    dead_run, _ = _killed_run(node, tmp_path)
    (header,) = (Path(node["RUNTIME"]) / "live").glob("*.header")
    header.write_text('{"format": 1, "pid": "not a pid"')
    with EnergyTracker(project_name="next", backends=[ManualBackend(power_watts=10)], reporters=[]):
        pass
    rows = load_results(let_home)
    assert dead_run not in set(rows["run_id"]) and list(rows["project_name"]) == ["next"]
    assert header.exists()  # left for a person to look at, never guessed at


def test_a_run_that_stops_leaves_nothing_to_recover(node: dict[str, str], let_home: Path) -> None:
    live = Path(node["RUNTIME"]) / "live"
    with EnergyTracker(project_name="p", backends=[ManualBackend(power_watts=10)], reporters=[]) as tracker:
        # From the first publication on, the figures with the header written before them.
        while not list(live.glob("*.json")):
            time.sleep(0.02)
        assert {p.suffix for p in live.iterdir()} == {".json", ".header"}
    assert not list(live.iterdir())
    from let_core.recovery import recover_dead_runs

    assert recover_dead_runs(Path(node["RUNTIME"]), "node1") == []
    assert tracker.last_run is not None and tracker.last_run.status == "ok"


def test_a_dead_run_whose_store_cannot_be_written_never_stops_a_new_run(node: dict[str, str], let_home: Path,
                                                                        tmp_path: Path) -> None:
    from let_core.results import load_results

    _killed_run(node, tmp_path)
    (header,) = (Path(node["RUNTIME"]) / "live").glob("*.header")
    data = json.loads(header.read_text())
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    header.write_text(json.dumps({**data, "output_dir": str(blocker / "store")}))  # a store that cannot exist
    with pytest.warns(Warning) as caught:
        with EnergyTracker(project_name="next", backends=[ManualBackend(power_watts=10)], reporters=[]):
            pass
    # The dead run goes where any run goes whose store cannot be written: a rescue file, said.
    assert any("rescue" in str(w.message) and "lett doctor --repair" in str(w.message) for w in caught)
    assert list(load_results(let_home)["project_name"]) == ["next"]
