"""Client side: GroundTruthTracker (0.1.x), the ``tasmota`` backend in EnergyTracker, ``lett gt``."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from let_backends.tasmota.client import GroundTruthError, GroundTruthTracker
from let_core.errors import BackendUnavailable, LetWarning
from let_core.tracker import EnergyTracker
from let_groundtruth.cli import gt as gt_cli
from let_groundtruth.config import parse_server_config
from let_groundtruth.emulator import EmulatorFarm
from let_groundtruth.server import RunningServer
from tests.loopback import free_port

TOKEN = "client-token"


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[RunningServer, EmulatorFarm]]:
    farm = EmulatorFarm([1800.0, 90.0], names=["worker", "idle"]).start()
    srv = RunningServer(parse_server_config(farm.config()), port=free_port(), token=TOKEN,
                        poll_interval=0.25).start()
    try:
        yield srv, farm
    finally:
        srv.stop()
        farm.close()


@pytest.fixture
def configured(server: tuple[RunningServer, EmulatorFarm], monkeypatch: pytest.MonkeyPatch) -> RunningServer:
    srv = server[0]
    monkeypatch.setenv("LET_GT_HOST", "127.0.0.1")
    monkeypatch.setenv("LET_GT_PORT", str(srv.port))
    monkeypatch.setenv("LET_GT_TOKEN", TOKEN)
    monkeypatch.setenv("LET_GT_HOSTNAME", "worker")
    return srv


class Collect:
    name = "collect"

    def __init__(self) -> None:
        self.runs: list[Any] = []

    def report(self, run: Any) -> None:
        self.runs.append(run)


def test_no_server_default_raises_with_instructions() -> None:
    with pytest.raises(GroundTruthError) as info:
        GroundTruthTracker(verbose=False)
    message = str(info.value)
    assert "LET_GT_HOST" in message and "LET_GT_PORT" in message and "lett gt config" in message


def test_no_server_crash_false_warns_and_disables() -> None:
    with pytest.warns(LetWarning, match="disabled"):
        tracker = GroundTruthTracker(crash_if_unavailable=False, verbose=False)
    assert not tracker.enabled
    assert tracker.start()["energy_consumed"] == -1
    assert tracker.stop()["energy_consumed"] == -1


def test_configured_but_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LET_GT_HOST", "127.0.0.1")
    monkeypatch.setenv("LET_GT_PORT", str(free_port()))  # nothing listens there
    with pytest.raises(GroundTruthError, match="cannot reach"):
        GroundTruthTracker(verbose=False)


def test_tracker_start_stop_like_0_1(configured: RunningServer, capsys: pytest.CaptureFixture[str]) -> None:
    tracker = GroundTruthTracker()
    started = tracker.start()
    assert started["session_id"] and started["start_time"].tzinfo is not None
    time.sleep(2.0)
    result = tracker.stop()
    assert result["tracking_mode"] == "GroundTruth"
    assert result["energy_consumed"] * 3.6e6 / result["duration"] == pytest.approx(1800.0, rel=0.06)
    assert result["timestamp"] > result["start_time"]
    assert "kWh" in capsys.readouterr().out


def test_wrong_token_and_unknown_host(configured: RunningServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LET_GT_TOKEN", "wrong")
    with pytest.raises(GroundTruthError, match="LET_GT_TOKEN"):
        GroundTruthTracker(verbose=False)
    monkeypatch.setenv("LET_GT_TOKEN", TOKEN)
    monkeypatch.setenv("LET_GT_HOSTNAME", "not-metered")
    with pytest.raises(GroundTruthError, match="does not meter host 'not-metered'"):
        GroundTruthTracker(verbose=False)


def test_backend_unavailable_without_server() -> None:
    from let_backends.tasmota import TasmotaBackend

    tracker = EnergyTracker(backends=[], reporters=[])
    availability = TasmotaBackend.availability(tracker.settings)
    assert not availability.available and "LET_GT_HOST" in availability.reason
    with pytest.raises(BackendUnavailable, match="LET_GT_HOST"):
        EnergyTracker(backends=["tasmota"], reporters=[])


def test_energy_tracker_end_to_end_with_task(configured: RunningServer) -> None:
    collect = Collect()
    with EnergyTracker(project_name="gt-paper", backends=["tasmota"], reporters=[collect]) as tracker:
        time.sleep(1.0)
        with tracker.task("epoch-1"):
            time.sleep(1.5)
    result = tracker.last_result
    assert result is not None
    m = result["measurements"]["tasmota"]
    assert (m["kind"], m["scope"], m["methodology"], m["hardware"]) == (
        "metered", "system", "Tasmota smart socket", "worker")
    assert m["energy_consumed"] * 3.6e6 / m["duration"] == pytest.approx(1800.0, rel=0.06)
    assert m["extras"]["gt_complete"] is True and m["extras"]["gt_resets"] == 0
    assert result["tracking_mode"] == "Tasmota smart socket"
    task_run, main_run = collect.runs
    assert task_run.task == "epoch-1" and task_run.parent_run_id == main_run.run_id
    assert 0 < task_run.energy_kwh < main_run.energy_kwh
    row = main_run.rows("test")[0]
    assert row["kind"] == "metered" and "gt_session_id" in row["extra"]


def test_auto_selects_tasmota_when_server_knows_host(configured: RunningServer) -> None:
    from let_backends.tasmota import TasmotaBackend

    tracker = EnergyTracker(backends=[], reporters=[])
    assert TasmotaBackend.availability(tracker.settings).available
    auto = EnergyTracker(reporters=[])
    assert "tasmota" in [b.name for b in auto.backends]


def test_cli_config_hosts_calibrate_emulate(configured: RunningServer, let_home: Path,
                                            server: tuple[RunningServer, EmulatorFarm]) -> None:
    runner = CliRunner()
    result = runner.invoke(gt_cli, ["config", "--host", "10.0.0.7", "--port", "8123"])
    assert result.exit_code == 0, result.output
    assert (let_home / "GT_REMOTE_CONFIG").read_text() == "10.0.0.7:8123"
    shown = runner.invoke(gt_cli, ["config"])
    assert "127.0.0.1" in shown.output and "LET_GT_HOST" in shown.output  # env wins over the file

    listed = runner.invoke(gt_cli, ["hosts"])
    assert listed.exit_code == 0 and "worker" in listed.output and "idle" in listed.output

    idle = server[1].sockets["idle"]
    result = runner.invoke(gt_cli, ["calibrate", "idle", "--volts", "228", "--watts", "99",
                                    "--address", idle.address])
    assert result.exit_code == 0, result.output
    assert '"PowerSet": 99.0' in result.output and '"Power": 99' in result.output
    assert "verdict: OK - measured 99 W vs expected 99 W" in result.output
    unchecked = runner.invoke(gt_cli, ["calibrate", "idle", "--volts", "230", "--address", idle.address])
    assert unchecked.exit_code == 0 and "give --watts" in unchecked.output
    idle.power_gain = idle.voltage_gain = 1.0  # undo for other tests
    missing = runner.invoke(gt_cli, ["calibrate", "idle", "--watts", "11"])
    assert missing.exit_code != 0 and "--address" in missing.output

    out = runner.invoke(gt_cli, ["emulate", "--sockets", "2", "--watts", "150", "--duration", "0.2"])
    assert out.exit_code == 0, out.output
    assert out.output.count("127.0.0.1:") >= 2


def test_module_client_mode_writes_remote_config(tmp_path: Path) -> None:
    env = {**os.environ, "LET_HOME": str(tmp_path / "lethome")}
    done = subprocess.run([sys.executable, "-m", "lamarr_energy_tracker.ground_truth_tracking",
                           "--host", "192.0.2.10", "--port", "8042"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "lethome" / "GT_REMOTE_CONFIG").read_text() == "192.0.2.10:8042"
    bad = subprocess.run([sys.executable, "-m", "lamarr_energy_tracker.ground_truth_tracking",
                          "--config", str(tmp_path / "missing.json")], env=env, capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode == 2 and "cannot read the ground-truth config" in bad.stderr
