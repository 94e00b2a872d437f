"""LET 0.1.x's ground-truth surface (issue 11), checked against LET 0.1.4 itself where it runs here:
its low-level socket functions, GroundTruthTracker's class helpers, and a LET 1.x client in
front of a LET 0.1.4 server (fallback to /<host>/start|stop)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

import lamarr_energy_tracker.ground_truth_tracking as gtt
from bench import let014
from let_backends.tasmota.client import GroundTruthTracker
from let_core.errors import LetWarning
from let_core.tracker import EnergyTracker
from let_groundtruth.emulator import EmulatedSocket
from tests.loopback import free_port

LET014_PYTHON = let014.python()


def let014_env(tmp: Path) -> dict[str, str]:
    """LET 0.1.4's own venv, without this checkout on its path."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"HOME": str(tmp)}


def wait_http(url: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited: {proc.stdout.read() if proc.stdout else ''}")
        try:
            requests.get(url, timeout=2)
            return
        except requests.RequestException:
            time.sleep(0.1)
    raise AssertionError(f"{url} never answered")


def test_low_level_functions_as_0_1_with_deprecation(capsys: pytest.CaptureFixture[str]) -> None:
    assert gtt.GT_FMT == "%Y-%m-%dT%H:%M:%S"
    with EmulatedSocket(1200.0, start_total_kwh=3.0) as emu:
        with pytest.warns(DeprecationWarning, match="sessions"):
            read = gtt.send_tasmota_query(emu.address, "Status%208")
        assert read is not None and read["energy_consumed"] >= 3.0
        assert {"start_time", "timestamp", "duration"} <= set(read)
        assert "http://" + emu.address + "/cm?cmnd=Status%208" in capsys.readouterr().out
        with pytest.warns(DeprecationWarning, match="resets"):
            before = gtt.tasmota_start(emu.address)
        assert before is not None and before["energy_consumed"] >= 3.0
        assert emu.total_kwh < 0.01  # the counter really was reset, as 0.1.x did
        time.sleep(1.0)
        with pytest.warns(DeprecationWarning):
            after = gtt.tasmota_stop(emu.address)
        assert after is not None and 0 < after["energy_consumed"] < 0.01
        with pytest.warns(DeprecationWarning):
            assert gtt.send_tasmota_query(emu.address, "EnergyRes%205") is None  # 0.1.x: only Status 8 answers
    with pytest.warns(DeprecationWarning):
        assert gtt.send_tasmota_query(emu.address, "Status%208") is None  # closed: printed, None
    assert "Error reading power" in capsys.readouterr().out


@pytest.mark.skipif(not LET014_PYTHON.exists(), reason=str(let014.missing()))
def test_let014_reads_emulator_like_ours(tmp_path: Path) -> None:
    """The same socket read by 0.1.4's send_tasmota_query and ours gives the same keys."""
    with EmulatedSocket(500.0, start_total_kwh=2.0) as emu:
        code = ("import json; from lamarr_energy_tracker.ground_truth_tracking import send_tasmota_query as q; "
                f"print(json.dumps(q('{emu.address}', 'Status%208')))")
        out = subprocess.run([str(LET014_PYTHON), "-c", code], capture_output=True, text=True, timeout=120,
                             check=True, cwd=tmp_path, env=let014_env(tmp_path)).stdout.strip().splitlines()[-1]
        theirs = json.loads(out)
        with pytest.warns(DeprecationWarning):
            ours = gtt.send_tasmota_query(emu.address, "Status%208")
    assert ours is not None and set(ours) == set(theirs)
    assert ours["energy_consumed"] == pytest.approx(theirs["energy_consumed"], abs=0.001)


@pytest.fixture
def let014_server(tmp_path: Path) -> Iterator[tuple[str, int, EmulatedSocket]]:
    if not LET014_PYTHON.exists():
        pytest.skip(str(let014.missing()))
    emu = EmulatedSocket(1500.0, start_total_kwh=9.0).start()
    config = tmp_path / "gt.json"
    config.write_text(json.dumps({"old": emu.address}))
    port = free_port()
    proc = subprocess.Popen([str(LET014_PYTHON), "-m", "lamarr_energy_tracker.ground_truth_tracking",
                             "--config", str(config), "--host", "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=tmp_path, env=let014_env(tmp_path))
    try:
        wait_http(f"http://127.0.0.1:{port}/list", proc)
        yield "127.0.0.1", port, emu
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        emu.close()


def test_let1_client_falls_back_to_a_let014_server(let014_server: tuple[str, int, EmulatedSocket],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    host, port, emu = let014_server
    monkeypatch.setenv("LET_GT_HOST", host)
    monkeypatch.setenv("LET_GT_PORT", str(port))
    monkeypatch.setenv("LET_GT_HOSTNAME", "old")
    tracker = GroundTruthTracker(verbose=False)
    assert (tracker.server_host, tracker.server_port) == (host, str(port))  # strings, as 0.1.x
    with pytest.warns(LetWarning, match="RESET the socket"):
        tracker.start()
    time.sleep(2.0)
    result = tracker.stop()
    assert result["energy_consumed"] * 3.6e6 / result["duration"] == pytest.approx(1500.0, rel=0.5)
    assert result["quality"]["legacy_server"] is True

    with pytest.warns(LetWarning, match="LET 0.1.x server"):
        with EnergyTracker(project_name="old-server", backends=["tasmota"], reporters=[]) as t:
            time.sleep(2.0)
    m = t.last_result["measurements"]["tasmota"]  # type: ignore[index]
    assert m["energy_consumed"] > 0 and m["extras"]["gt_legacy_server"] is True


def test_class_helpers_and_send_command_like_0_1(let014_server: tuple[str, int, EmulatedSocket],
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    host, port, _ = let014_server
    monkeypatch.setenv("LET_GT_HOSTNAME", "old")
    assert GroundTruthTracker.all_available(host, port) == ["old"]
    assert GroundTruthTracker.is_available(host, str(port)) is True
    started = GroundTruthTracker.send_command(host, "start", port)
    assert {"energy_consumed", "start_time", "timestamp", "duration"} <= set(started)
    assert GroundTruthTracker.all_available(host, free_port()) is False
    assert "Could not connect" in capsys.readouterr().out
    with pytest.raises(RuntimeError):
        GroundTruthTracker.send_command(host, "launch", port)


def test_crash_false_dummy_results_and_attributes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LET_GT_HOST", "127.0.0.1")
    monkeypatch.setenv("LET_GT_PORT", str(free_port()))
    with pytest.warns(LetWarning):
        tracker = GroundTruthTracker(crash_if_unavailable=False, verbose=False)
    assert (tracker.server_host, tracker.server_port) == (None, None)
    dummy = {"energy_consumed": -1, "start_time": None, "timestamp": None, "duration": -1,
             "tracking_mode": "GroundTruth"}
    assert tracker.start() == dummy and tracker.stop() == dummy


def test_legacy_stop_is_an_error_when_the_socket_never_answered(tmp_path: Path) -> None:
    from let_groundtruth.config import parse_server_config
    from let_groundtruth.server import RunningServer

    dead = f"127.0.0.1:{free_port()}"  # nothing listens: the socket never answers
    with RunningServer(parse_server_config({"ghost": dead}), port=free_port(), token="",
                       poll_interval=0.2, socket_timeout=0.3) as srv:
        r = requests.get(f"{srv.url}/ghost/stop", timeout=30)
        assert r.status_code == 503 and "has not answered" in r.json()["error"]
