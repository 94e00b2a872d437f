"""Sessions cannot be hoarded, and a wall-clock step changes nothing (issue 20): a real server on
loopback in front of an emulated socket, clients from two addresses (127.0.0.1 and 127.0.0.2), and
a clock the test steps."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="fastapi is not installed: pip install '.[server]' (in the test extra)")

from let_groundtruth.clock import Clock  # noqa: E402
from let_groundtruth.config import SocketConfig  # noqa: E402
from let_groundtruth.emulator import EmulatedSocket  # noqa: E402
from let_groundtruth.server import RunningServer  # noqa: E402
from let_groundtruth.service import GroundTruthService  # noqa: E402
from tests.loopback import free_port, wait_until  # noqa: E402

LEASE_S = 600.0
CAP = 1000
_SYSTEM_WALL = time.time  # before any test patches it


class SteppedClock:
    """Real clocks plus offsets the test moves: ``wall_step`` as NTP does, ``mono_skip`` to let
    the lease run out without waiting ten minutes."""

    def __init__(self) -> None:
        self.wall_step = 0.0
        self.mono_skip = 0.0

    def monotonic(self) -> float:
        return time.monotonic() + self.mono_skip

    def wall(self) -> float:
        return _SYSTEM_WALL() + self.wall_step

    def clock(self) -> Clock:
        return Clock(monotonic=self.monotonic, wall=self.wall)


class Client:
    """HTTP from one source address, one keep-alive connection per thread."""

    def __init__(self, port: int, source: str) -> None:
        self.port, self.source = port, source
        self._local = threading.local()

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60,
                                                                 source_address=(self.source, 0))
        data = None if body is None else json.dumps(body)
        try:
            conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            return response.status, json.loads(response.read() or b"null")
        except (OSError, http.client.HTTPException):
            self._local.conn = None
            conn.close()
            raise

    def start(self, host: str = "box") -> tuple[int, Any]:
        return self.call("POST", f"/hosts/{host}/sessions", {"label": self.source})


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[RunningServer, SteppedClock, EmulatedSocket]]:
    socket = EmulatedSocket(2000.0).start()
    clock = SteppedClock()
    server = RunningServer({"box": SocketConfig("box", socket.address)}, port=free_port(), poll_interval=0.25,
                           token="", lease_s=LEASE_S, clock=clock.clock(), max_sessions_per_host=CAP,
                           max_sessions_per_client=CAP)
    try:
        server.start()
        yield server, clock, socket
    finally:
        server.stop()
        socket.close()


def test_one_clients_abandoned_sessions_never_refuse_another_client_and_expire(served: Any) -> None:
    server, clock, _socket = served
    hoarder, neighbour = Client(server.port, "127.0.0.1"), Client(server.port, "127.0.0.2")
    # A killed job array: 1000 sessions opened from one address and never stopped nor renewed.
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: hoarder.start(), range(CAP)))
    assert [status for status, _ in answers].count(201) == CAP
    abandoned = [body["session_id"] for _, body in answers]
    status, body = hoarder.start()
    assert status == 429 and "127.0.0.1" in body["error"] and "expire" in body["error"]

    status, mine = neighbour.start()  # the next machine's session on that host
    assert status == 201, mine
    assert server.service.open_sessions()["box"] == CAP + 1

    clock.mono_skip += LEASE_S - 60.0
    status, _ = neighbour.call("GET", f"/sessions/{mine['session_id']}")  # the neighbour renews; the hoarder cannot
    assert status == 200
    clock.mono_skip += 120.0  # the hoarder's lease has run out, the neighbour's has not
    wait_until(lambda: server.service.open_sessions()["box"] == 1, what="the abandoned sessions to expire")

    status, kept = hoarder.call("GET", f"/sessions/{abandoned[0]}")
    assert status == 200 and kept["expired"] is True and kept["running"] is False
    assert kept["energy_consumed"] >= 0 and "renew" in kept["note"]
    status, stopped = hoarder.call("POST", f"/sessions/{abandoned[1]}/stop")
    assert status == 200 and stopped["expired"] is True
    assert hoarder.start()[0] == 201  # its cap is free again
    status, result = neighbour.call("POST", f"/sessions/{mine['session_id']}/stop")
    assert status == 200 and "expired" not in result and result["energy_consumed"] > 0


@pytest.mark.parametrize("step_s", [-300.0, 300.0, 86400.0], ids=["back-5min", "ahead-5min", "ahead-1day"])
def test_a_wall_clock_step_mid_session_changes_neither_energy_nor_duration(
        step_s: float, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = SteppedClock()
    # Whatever in the server still asked the system's wall clock sees the step too.
    monkeypatch.setattr(time, "time", clock.wall)
    socket = EmulatedSocket(2400.0).start()
    service = GroundTruthService({"box": SocketConfig("box", socket.address)}, poll_interval=0.2,
                                 clock=clock.clock()).start()
    try:
        began = time.monotonic()
        true0 = socket.true_kwh
        sid = service.start_session("box")["session_id"]
        time.sleep(1.5)
        clock.wall_step += step_s
        time.sleep(1.5)
        result = service.stop_session(sid)
        elapsed = time.monotonic() - began
        true = socket.true_kwh - true0
    finally:
        service.close()
        socket.close()
    assert 2.5 < result["duration"] <= elapsed + 0.1, result
    assert result["energy_consumed"] == pytest.approx(true, rel=0.08), (result, true)
    assert result["energy_consumed"] * 3.6e6 / result["duration"] == pytest.approx(2400.0, rel=0.05)
    assert result["quality"]["complete"] is True and result["quality"]["coverage"] == 1.0


def test_restart_reads_persisted_instants_on_the_new_clock(tmp_path: Path) -> None:
    """A restart in the same boot keeps monotonic instants; after a reboot (another monotonic
    origin) they are moved by the wall time that passed."""
    mark = {"mono": 1000.0, "wall": 5000.0, "boot": "another-boot"}
    clock = Clock(monotonic=lambda: 20.0, wall=lambda: 5030.0)
    assert clock.offset_since(mark) == pytest.approx(20.0 - 30.0 - 1000.0)  # saved mono 1000 -> -10 now
    from let_groundtruth.clock import boot_id

    same = {"mono": 1000.0, "wall": 5000.0, "boot": boot_id()}
    assert clock.offset_since(same) == (0.0 if boot_id() else pytest.approx(-1010.0))


def test_lets_client_renews_within_a_short_lease(monkeypatch: pytest.MonkeyPatch) -> None:
    """A server with a 1.5 s lease: LET's client renews at a third of it (not its 30 s default),
    so a 4 s run is never expired and is metered in full."""
    from let_core.tracker import EnergyTracker

    socket = EmulatedSocket(1200.0).start()
    server = RunningServer({"box": SocketConfig("box", socket.address)}, port=free_port(), poll_interval=0.2,
                           token="", lease_s=1.5)
    try:
        server.start()
        monkeypatch.setenv("LET_GT_HOST", "127.0.0.1")
        monkeypatch.setenv("LET_GT_PORT", str(server.port))
        monkeypatch.setenv("LET_GT_HOSTNAME", "box")
        with EnergyTracker(project_name="lease", backends=["tasmota"], reporters=[]) as tracker:
            time.sleep(4.0)
        expired_now = server.service.expire()
    finally:
        server.stop()
        socket.close()
    m = tracker.last_result["measurements"]["tasmota"]  # type: ignore[index]
    assert not m["error"] and "gt_partial" not in m["extras"], m
    assert m["coverage"] == 1.0 and m["duration"] > 3.5
    assert m["energy_consumed"] * 3.6e6 / m["duration"] == pytest.approx(1200.0, rel=0.06)
    assert expired_now == 0
