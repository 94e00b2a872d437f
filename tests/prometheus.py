"""A real Prometheus (Debian's ``prometheus`` package) for the tests: started on a free loopback
port with a tmp config and tmp storage, scraping the given targets every second, queried
through its HTTP API, and always stopped (``prometheus_server`` is a context manager; the
``prometheus`` fixture of a test module wraps it).

Nothing here starts the system service: the binary runs as a child of the test.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.loopback import WAIT_S, free_port, wait_until

BINARY = "prometheus"


def binary() -> str:
    """The Prometheus binary, or a skip saying how to get it (`.ci/run` installs it)."""
    found = shutil.which(BINARY)
    if found is None:
        pytest.skip("no `prometheus` binary: apt-get install -y prometheus (.ci/run does)")
    return found


class Prometheus:
    """A running Prometheus: ``query`` for an instant vector, ``wait_for`` a value to appear."""

    def __init__(self, url: str, process: subprocess.Popen[bytes], log: Path) -> None:
        self.url = url
        self.process = process
        self.log = log

    def query(self, expr: str) -> list[tuple[dict[str, str], float]]:
        """``/api/v1/query``: each series' labels (``__name__`` included when kept) and value."""
        answer = requests.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        answer.raise_for_status()
        body = answer.json()
        assert body["status"] == "success", body
        return [(item["metric"], float(item["value"][1])) for item in body["data"]["result"]]

    def samples(self, selector: str, window: str = "5m") -> list[tuple[float, float]]:
        """The raw samples Prometheus stored for one series over ``window`` (timestamp, value)."""
        answer = requests.get(f"{self.url}/api/v1/query", params={"query": f"{selector}[{window}]"}, timeout=10)
        answer.raise_for_status()
        result = answer.json()["data"]["result"]
        assert len(result) <= 1, f"{selector} selects {len(result)} series, not one"
        return [(float(t), float(v)) for t, v in result[0]["values"]] if result else []

    def targets(self) -> list[dict[str, Any]]:
        answer = requests.get(f"{self.url}/api/v1/targets", timeout=10)
        answer.raise_for_status()
        return list(answer.json()["data"]["activeTargets"])

    def wait_for(self, expr: str, check: Any = bool, timeout: float = WAIT_S) -> list[tuple[dict[str, str], float]]:
        """The query's result once ``check(result)`` holds (bounded; the wait only ends early)."""
        last: list[Any] = []

        def ready() -> bool:
            nonlocal last
            last = self.query(expr)
            return bool(check(last))

        try:
            wait_until(ready, timeout=timeout, what=f"Prometheus to answer {expr!r} as expected")
        except AssertionError:
            raise AssertionError(f"{expr!r} last answered {last!r}; targets: {self.targets()!r}; "
                                 f"log tail: {self.log_tail()}") from None
        return last

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _config(targets: Sequence[tuple[str, ...]], scrape_interval: str) -> str:
    jobs = ""
    for job, target, *token in targets:
        jobs += f"""
  - job_name: {job}
    metrics_path: /metrics
    static_configs:
      - targets: ['{target}']
"""
        if token:  # a target behind a bearer token (the ground-truth server's /metrics)
            jobs += f"""    authorization:
      type: Bearer
      credentials: '{token[0]}'
"""
    return f"""global:
  scrape_interval: {scrape_interval}
  scrape_timeout: {scrape_interval}
  evaluation_interval: {scrape_interval}
scrape_configs:{jobs}"""


@contextlib.contextmanager
def prometheus_server(tmp: Path, targets: Sequence[tuple[str, ...]], scrape_interval: str = "1s") -> Iterator[Prometheus]:
    """Prometheus scraping ``targets`` (job name, ``host:port``[, bearer token]) until the block
    ends; killed on the way out whatever happened inside."""
    exe = binary()
    tmp.mkdir(parents=True, exist_ok=True)
    config = tmp / "prometheus.yml"
    config.write_text(_config(targets, scrape_interval))
    log = tmp / "prometheus.log"
    port = free_port()
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [exe, f"--config.file={config}", f"--storage.tsdb.path={tmp / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=1h",
             # The lookback must outlast one scrape at most: a stopped target's series vanish fast.
             "--query.lookback-delta=5s"],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    server = Prometheus(f"http://127.0.0.1:{port}", process, log)
    try:
        def ready() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"prometheus exited with {process.returncode}: {server.log_tail()}")
            try:
                return requests.get(f"{server.url}/-/ready", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        wait_until(ready, what="Prometheus to be ready")
        yield server
    finally:
        stop(process)


def stop(process: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds: the process is gone when this returns."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait()
