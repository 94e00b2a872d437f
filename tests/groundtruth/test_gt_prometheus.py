"""A real Prometheus (Debian's) scrapes the ground-truth server's /metrics behind its token, in
front of an emulated socket: the power gauge is the socket's, the energy counter Prometheus
stored never falls and grows at that power, and no session id is among the labels."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

pytest.importorskip("prometheus_client", reason="prometheus-client is not installed: pip install '.[prometheus]'")

from let_groundtruth.emulator import EmulatedSocket  # noqa: E402
from tests.loopback import free_port, wait_until  # noqa: E402
from tests.prometheus import prometheus_server, stop  # noqa: E402

TOKEN = "prometheus-scrape-token"
WATTS = 1500.0


@pytest.fixture
def ground_truth(tmp_path: Path) -> Iterator[tuple[str, EmulatedSocket]]:
    socket = EmulatedSocket(WATTS, start_total_kwh=10.0).start()
    config = tmp_path / "gt.json"
    config.write_text(json.dumps({"box": socket.address}))
    port = free_port()
    env = {**os.environ, "LET_LOAD_PLUGINS": "", "LET_GT_TOKEN": TOKEN}
    server = subprocess.Popen([sys.executable, "-m", "let_core", "gt", "serve", "--config", str(config), "--port",
                               str(port), "--poll-interval", "0.2", "--state-dir", str(tmp_path / "state")],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        def up() -> bool:
            assert server.poll() is None, "the ground-truth server exited"
            try:
                return requests.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        wait_until(up, what="the ground-truth server")
        yield f"127.0.0.1:{port}", socket
    finally:
        stop(server)
        socket.close()


def test_prometheus_scrapes_the_ground_truth_server(ground_truth: tuple[str, EmulatedSocket], tmp_path: Path) -> None:
    target, _socket = ground_truth
    with prometheus_server(tmp_path / "prom", [("gt", target, TOKEN)]) as prom:
        power = prom.wait_for('let_gt_socket_power_watts{host="box"}')
        assert [value for _, value in power] == [WATTS]
        # The samples Prometheus stored: never falling, and growing at the socket's power (the
        # server polls every 0.2 s: its readings and the scrapes are that far apart at most).
        selector = 'let_gt_socket_energy_joules_total{host="box"}'
        # 8 s of 1 s scrapes: the readings' 0.2 s offsets make at most 5% of the rate's span.
        wait_until(lambda: (s := prom.samples(selector)) and s[-1][0] - s[0][0] >= 8,
                   what="8 s of stored energy samples")
        stored = prom.samples(selector)
        values = [v for _, v in stored]
        assert values == sorted(values)
        span = stored[-1][0] - stored[0][0]
        assert (values[-1] - values[0]) / span == pytest.approx(WATTS, rel=0.1)
        up = prom.query('up{job="gt"}')
        assert [value for _, value in up] == [1.0]
        for labels, _ in prom.query('{__name__=~"let_gt_.+"}'):
            assert set(labels) <= {"__name__", "host", "instance", "job"}, labels
