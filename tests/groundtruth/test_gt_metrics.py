"""The ground-truth server's /metrics (issue 22), read with prometheus_client's own text parser from a
real `lett gt serve` process in front of an emulated socket: names and units by Prometheus's
conventions, no session ids as labels, and an energy counter that never falls, across the
socket's own counter reset and across a server killed and restarted on the same state."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

pytest.importorskip("prometheus_client", reason="prometheus-client is not installed: pip install '.[prometheus]'")

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from let_groundtruth.emulator import EmulatedSocket  # noqa: E402
from tests.loopback import free_port, wait_until  # noqa: E402

TOKEN = "metrics-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
WATTS = 2400.0


class Served:
    def __init__(self, tmp: Path, socket: EmulatedSocket) -> None:
        self.config = tmp / "gt.json"
        self.config.write_text(json.dumps({"box": socket.address}))
        self.state = tmp / "state"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        env = {**os.environ, "LET_LOAD_PLUGINS": "", "LET_GT_TOKEN": TOKEN}
        self.proc = subprocess.Popen([sys.executable, "-m", "let_core", "gt", "serve", "--config", str(self.config),
                                      "--port", str(self.port), "--poll-interval", "0.2", "--state-dir",
                                      str(self.state)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)

        def up() -> bool:
            assert self.proc is not None and self.proc.poll() is None, "the server exited"
            try:
                return requests.get(self.url + "/health", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        wait_until(up, what="the ground-truth server")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=20)
            self.proc = None

    def scrape(self) -> dict[str, Any]:
        r = requests.get(self.url + "/metrics", headers=AUTH, timeout=30)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("text/plain")
        return {family.name: family for family in text_string_to_metric_families(r.text)}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Served, EmulatedSocket]]:
    socket = EmulatedSocket(WATTS, start_total_kwh=50.0).start()
    server = Served(tmp_path_factory.mktemp("metrics"), socket)
    try:
        server.start()
        yield server, socket
    finally:
        server.kill()
        socket.close()


def value(families: dict[str, Any], name: str, sample: str | None = None) -> float | None:
    """The host's sample of a family (``sample``: the sample's own name, e.g. ``..._total``)."""
    family = families.get(name)
    if family is None:
        return None
    for s in family.samples:
        if s.labels.get("host") == "box" and s.name == (sample or name):
            return float(s.value)
    return None


def energy(families: dict[str, Any]) -> float | None:
    return value(families, "let_gt_socket_energy_joules", "let_gt_socket_energy_joules_total")


def test_names_units_and_labels_follow_prometheus_conventions(served: tuple[Served, EmulatedSocket]) -> None:
    server, _socket = served
    sid = requests.post(server.url + "/hosts/box/sessions", headers=AUTH, json={}, timeout=30).json()["session_id"]
    try:
        wait_until(lambda: value(server.scrape(), "let_gt_socket_power_watts") == WATTS, what="a power reading")
        families = server.scrape()
    finally:
        requests.post(f"{server.url}/sessions/{sid}/stop", headers=AUTH, timeout=30)
    # base units in the names (the text format has no UNIT line)
    assert families["let_gt_socket_power_watts"].type == "gauge"
    assert families["let_gt_socket_energy_joules"].type == "counter"
    assert value(families, "let_gt_socket_up") == 1.0
    assert value(families, "let_gt_sessions_open") == 1.0
    age = value(families, "let_gt_socket_reading_age_seconds")
    assert age is not None and 0.0 <= age < 30.0
    for family in families.values():
        assert family.name.startswith("let_gt_"), family.name
        if family.type == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in family.samples), family.name
        for s in family.samples:
            assert set(s.labels) <= {"host"}, s  # no session id, no client: bounded cardinality
            assert sid not in s.labels.values()
    # behind the token like every other route
    assert requests.get(server.url + "/metrics", timeout=30).status_code == 401


def test_energy_counter_never_falls_across_a_socket_reset_and_a_server_restart(
        served: tuple[Served, EmulatedSocket]) -> None:
    server, socket = served
    seen: list[float] = []

    def scrape_energy() -> float | None:
        try:
            e = energy(server.scrape())
        except requests.RequestException:
            return None  # the server is down right now
        if e is not None:
            assert not seen or e >= seen[-1], (e, seen[-5:])
            seen.append(e)
        return e

    wait_until(lambda: (scrape_energy() or 0) > 0, what="an energy sample")
    first = seen[-1]
    time.sleep(1.0)
    wait_until(lambda: (scrape_energy() or 0) > first + WATTS * 0.5, what="the counter to rise")

    socket.reset_counter()  # what LET 0.1.x did to every user of a socket
    wait_until(lambda: value(server.scrape(), "let_gt_socket_counter_resets", "let_gt_socket_counter_resets_total") == 1.0,
               what="the reset to be seen")
    before_reset_seen = seen[-1]
    time.sleep(1.0)
    after_reset = wait_until(lambda: (e := scrape_energy()) is not None and e > before_reset_seen and e, what="a rise")

    time.sleep(0.5)
    last_before_kill = scrape_energy()
    killed_at = time.monotonic()
    server.kill()  # SIGKILL: the last poll may not be in the state
    time.sleep(1.0)  # the socket keeps counting while nobody watches
    server.start()
    for _ in range(15):
        scrape_energy()
        time.sleep(0.1)
    assert last_before_kill is not None
    restarted = wait_until(lambda: (e := scrape_energy()) is not None and e > last_before_kill and e,
                           what="the counter to continue after the restart")
    back_at = time.monotonic()
    # It continued from the socket's own counter: the downtime is energy, not a reset to 0.
    assert restarted - last_before_kill == pytest.approx(WATTS * (back_at - killed_at), rel=0.15)
    assert after_reset < restarted and len(seen) > 10
