"""`lett exporter`: a real Prometheus scrapes it (and node_exporter's textfile collector reads its
file); the counters it gives equal `lett results --by project`; live runs of this machine show
while they run; a damaged store or live file is an error metric, never a 500."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy  # noqa: F401 - loaded before any collector's read thread imports it: pytest.approx looks numpy up
import pytest
import requests

from let_backends.manual import ManualBackend
from let_core.tracker import EnergyTracker
from tests.loopback import free_port, wait_until
from tests.prometheus import prometheus_server, stop

prometheus_client = pytest.importorskip("prometheus_client")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
J_PER_KWH = 3.6e6


def _children() -> list[int]:
    """This test process's live child processes (zombies excepted), from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == os.getpid() and fields[0] != "Z":
            found.append(int(entry))
    return found


@pytest.fixture(autouse=True)
def no_orphans() -> Iterator[None]:
    """Every exporter, Prometheus, node_exporter and tracked process a test starts is gone when it ends."""
    before = set(_children())
    yield
    left = [pid for pid in _children() if pid not in before]
    assert not left, f"processes left running: {[Path(f'/proc/{pid}/cmdline').read_bytes()[:120] for pid in left]}"


def _env(let_home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LET_")}
    env.update(LET_HOME=str(let_home), LET_LOAD_PLUGINS="", LET_RUNTIME_DIR=str(let_home / "run"),
               PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""), PYTHONUNBUFFERED="1", **extra)
    return env


def _record(project: str, estimate_kwh: float, metered_kwh: float | None = None) -> None:
    """One stored run: an estimate, and where given a metered figure of the same machine (which
    is the one that counts)."""
    backends = [ManualBackend(energy_kwh=estimate_kwh, name="est", hardware="Xeon")]
    if metered_kwh is not None:
        backends.append(ManualBackend(energy_kwh=metered_kwh, name="socket", kind="metered", hardware="Xeon"))
    with EnergyTracker(project_name=project, backends=backends, reporters=["csv"]):
        pass


def _lett(let_home: Path, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "let_core", *args], env=_env(let_home), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _results_by_project(let_home: Path) -> dict[str, dict]:
    lines = _lett(let_home, "results", "--by", "project", "--json").splitlines()
    return {row["project"]: row for row in map(json.loads, lines)}


@contextlib.contextmanager
def _exporter(let_home: Path, *args: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """`lett exporter --port 0 ...` as its own process; its URL once it listens. Always stopped."""
    process = subprocess.Popen([sys.executable, "-m", "let_core", "exporter", "--port", "0", *args],
                               env=_env(let_home), stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                               start_new_session=True)
    try:
        assert process.stderr is not None
        for line in process.stderr:
            if "/metrics" in line:
                url = line.split()[3]
                break
        else:
            raise AssertionError(f"the exporter exited ({process.wait()}) without listening")
        # Drain its log from here on, so that a chatty exporter never blocks on a full pipe.
        threading.Thread(target=process.stderr.read, daemon=True).start()
        yield url, process
    finally:
        stop(process)


def _scrape(url: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    answer = requests.get(url, timeout=30)
    assert answer.status_code == 200, answer.text
    return _parse(answer.text)


def _parse(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    result: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            result.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return result


def _by(samples: dict[tuple[tuple[str, str], ...], float], label: str) -> dict[str, float]:
    sums: dict[str, float] = {}
    for labels, value in samples.items():
        key = dict(labels)[label]
        sums[key] = sums.get(key, 0.0) + value
    return sums


@pytest.fixture
def tracked_process(let_home: Path) -> Iterator[Any]:
    """Start `lett run` processes that stay tracked until the test ends (then they are killed)."""
    started: list[subprocess.Popen[str]] = []

    def start(project: str, watts: float) -> subprocess.Popen[str]:
        process = subprocess.Popen([sys.executable, "-c", _TRACKED_RUN.format(watts=watts, project=project)],
                                   env=_env(let_home, LET_LIVE_INTERVAL="0.2"), stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, text=True, start_new_session=True)
        started.append(process)
        return process

    try:
        yield start
    finally:
        for process in started:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
            process.wait()


# A tracked run that goes on until killed: a real EnergyTracker in its own process.
_TRACKED_RUN = """
import time
from let_backends.manual import ManualBackend
from let_core.tracker import EnergyTracker
with EnergyTracker(project_name={project!r}, backends=[ManualBackend(power_watts={watts}, hardware='GPU')],
                   reporters=['csv']):
    time.sleep(600)
"""


def test_prometheus_scrapes_the_counters_that_lett_results_counts(let_home: Path, tmp_path: Path) -> None:
    _record("vision", 0.010, metered_kwh=0.012)  # the metered figure counts, not both
    _record("vision", 0.020)
    _record("nlp", 0.005, metered_kwh=0.004)
    expected = _results_by_project(let_home)
    assert set(expected) == {"vision", "nlp"}
    with _exporter(let_home) as (url, _):
        target = url.split("//")[1].split("/")[0]
        with prometheus_server(tmp_path / "prom", [("let", target)]) as prom:
            energy = prom.wait_for("sum by (project) (let_energy_joules_total)", lambda r: len(r) == 2)
            grams = prom.query("sum by (project) (let_emissions_grams_total)")
            runs = prom.query("sum by (project) (let_runs_total)")
            up = prom.query('let_exporter_up{source="store"}')
            by_kind = prom.query('sum by (project, kind) (let_energy_joules_total)')
            # The README's Grafana panel: a run finished while Prometheus watches is a rate in watts.
            prom.wait_for('count_over_time(let_energy_joules_total{project="nlp"}[1m]) >= 2')
            _record("nlp", 0.001, metered_kwh=0.001)  # the same series grows (a new one's first value is no rate)
            prom.wait_for('sum by (project) (rate(let_energy_joules_total{project="nlp"}[5m])) > 0')
            assert prom.query('sum by (project) (rate(let_energy_joules_total{project="vision"}[5m]))')[0][1] == 0
            month = prom.query("sum by (project) (increase(let_emissions_grams_total[30d])) / 1000")
            assert {labels["project"] for labels, _ in month} == {"vision", "nlp"}
    for labels, value in energy:
        assert value == pytest.approx(expected[labels["project"]]["kwh"] * J_PER_KWH, rel=1e-9)
    for labels, value in grams:
        assert value == pytest.approx(expected[labels["project"]]["kg"] * 1000, rel=1e-9)
    assert {labels["project"]: value for labels, value in runs} == {"vision": 2, "nlp": 1}
    assert [value for _, value in up] == [1.0]
    kinds = {(labels["project"], labels["kind"]): value for labels, value in by_kind}
    assert kinds[("vision", "metered")] == pytest.approx(0.012 * J_PER_KWH)
    assert kinds[("vision", "estimate")] == pytest.approx(0.020 * J_PER_KWH)
    assert ("nlp", "estimate") not in kinds  # its estimate is not counted beside the metered figure


def test_runs_being_tracked_show_live_and_a_killed_one_drops_out(let_home: Path, tmp_path: Path,
                                                                 tracked_process: Any) -> None:
    _record("vision", 0.001)
    first = tracked_process("live-a", 40.0)
    tracked_process("live-a", 2.5)
    tracked_process("live-b", 7.0)
    with _exporter(let_home) as (url, _):
        target = url.split("//")[1].split("/")[0]
        with prometheus_server(tmp_path / "prom", [("let", target)]) as prom:
            power = prom.wait_for("sum by (project) (let_live_power_watts)", lambda r: len(r) == 2)
            assert {labels["project"]: value for labels, value in power} == {"live-a": 42.5, "live-b": 7.0}
            runs = prom.wait_for("let_live_runs", lambda r: len(r) == 2)
            assert {labels["project"]: value for labels, value in runs} == {"live-a": 2, "live-b": 1}
            prom.wait_for('let_live_energy_joules{project="live-a"} > 0')
            # No run id, pid or user among the labels: the cardinality is the machine's projects.
            series = prom.query("let_live_power_watts")
            assert all(set(labels) == {"__name__", "project", "host", "backend", "kind", "instance", "job"}
                       for labels, _ in series)
            os.killpg(first.pid, signal.SIGKILL)  # its file stays: a dead pid's, left out
            first.wait()
            prom.wait_for('sum by (project) (let_live_power_watts{project="live-a"}) == 2.5')
            prom.wait_for('let_exporter_live_files_skipped{reason="dead"} == 1')


def test_a_damaged_store_is_an_error_metric_and_the_last_totals_never_a_500(let_home: Path) -> None:
    _record("vision", 0.010)
    store = let_home / "emissions.csv"
    good = store.read_bytes()
    with _exporter(let_home) as (url, process):
        first = _scrape(url)
        assert first["let_exporter_up"][(("source", "store"),)] == 1
        joules = first["let_energy_joules_total"]
        assert sum(joules.values()) == pytest.approx(0.010 * J_PER_KWH)
        for damage in (b"not,an,emissions,file\n1,2,3,4\n", b"\x00\xff" * 100):
            store.write_bytes(damage)
            scraped = _scrape(url)
            assert scraped["let_exporter_up"][(("source", "store"),)] == 0
            assert scraped["let_energy_joules_total"] == joules  # served what it had; counters never vanish
        errors = _scrape(url)["let_exporter_store_errors_total"]
        assert list(errors) == [(("reason", "store_error"),)] and errors[(("reason", "store_error"),)] >= 2
        store.unlink()
        store.mkdir()  # a folder where the store file belongs
        assert _scrape(url)["let_exporter_up"][(("source", "store"),)] == 0
        store.rmdir()
        store.write_bytes(good)
        _record("vision", 0.030)
        back = _scrape(url)
        assert back["let_exporter_up"][(("source", "store"),)] == 1
        assert sum(back["let_energy_joules_total"].values()) == pytest.approx(0.040 * J_PER_KWH)
        assert back["let_exporter_store_warnings"][()] == 0
        with open(store, "ab") as out:
            out.write(b"a,b,c\n")  # a malformed line: the rows around it still count, with a warning
        _record("vision", 0.001)
        damaged = _scrape(url)
        assert damaged["let_exporter_up"][(("source", "store"),)] == 1
        assert damaged["let_exporter_store_warnings"][()] >= 1
        assert sum(damaged["let_energy_joules_total"].values()) == pytest.approx(0.041 * J_PER_KWH)
        assert process.poll() is None


def test_a_damaged_live_file_is_counted_and_a_missing_runtime_dir_is_no_run(let_home: Path) -> None:
    from let_core.exporter import LetCollector, registry_for

    collector = LetCollector(runtime_dir=let_home / "no-such-dir", hostname="node1", log=lambda _: None)
    text = prometheus_client.generate_latest(registry_for(collector)).decode()
    scraped = _parse(text)
    assert scraped["let_exporter_up"][(("source", "live"),)] == 1
    assert "let_live_runs" not in scraped
    live = let_home / "run" / "live"
    live.mkdir(parents=True)
    (live / "node1-123-abcdef01.json").write_text('{"format": 1, "pid": "not a pid"')  # torn / damaged
    (live / "node2-1-abcdef01.json").write_text("another node's file, never read")
    collector = LetCollector(runtime_dir=let_home / "run", hostname="node1", log=lambda _: None)
    scraped = _parse(prometheus_client.generate_latest(registry_for(collector)).decode())
    assert scraped["let_exporter_live_files_skipped"][(("reason", "unreadable"),)] == 1


def test_a_scrape_during_writes_is_consistent(let_home: Path) -> None:
    """Runs of 1 Wh each are appended while the exporter is scraped: every scrape's joules are
    its run count times 3600, and neither ever goes down."""
    _record("p", 0.001)
    done = threading.Event()

    def writer() -> None:
        try:
            for _ in range(40):
                _record("p", 0.001)
        finally:
            done.set()

    with _exporter(let_home) as (url, _):
        thread = threading.Thread(target=writer)
        thread.start()
        seen = []
        try:
            while not done.is_set() or len(seen) < 3:
                scraped = _scrape(url)
                runs = scraped["let_runs_total"][(("host", _host()), ("project", "p"))]
                joules = sum(scraped["let_energy_joules_total"].values())
                assert joules == pytest.approx(runs * 3600.0, rel=1e-9)
                seen.append(runs)
        finally:
            thread.join()
    assert seen == sorted(seen) and seen[-1] == 41


def _host() -> str:
    from let_core import config

    return config.hostname()


def test_textfile_is_written_atomically_and_node_exporter_serves_it(let_home: Path, tmp_path: Path) -> None:
    _record("vision", 0.010)
    textfile = tmp_path / "textfile"
    _lett(let_home, "exporter", "--textfile", str(textfile))
    assert sorted(p.name for p in textfile.iterdir()) == ["let.prom"]
    once = _parse((textfile / "let.prom").read_text())
    assert sum(once["let_energy_joules_total"].values()) == pytest.approx(0.010 * J_PER_KWH)

    loop = subprocess.Popen([sys.executable, "-m", "let_core", "exporter", "--textfile", str(textfile),
                             "--interval", "0.1"], env=_env(let_home), stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        _record("vision", 0.020)

        def rewritten() -> bool:
            # Read while the loop replaces it: a whole file each time, old or new, never a part.
            text = (textfile / "let.prom").read_text()
            assert text.splitlines()[-1].startswith("let_exporter_store_read_seconds "), text[-200:]
            return sum(_parse(text)["let_energy_joules_total"].values()) == pytest.approx(0.030 * J_PER_KWH)

        wait_until(rewritten, what="the textfile to show the new run")
        node_exporter = _node_exporter()
        port = free_port()
        node = subprocess.Popen([node_exporter, f"--web.listen-address=127.0.0.1:{port}",
                                 f"--collector.textfile.directory={textfile}", "--collector.disable-defaults",
                                 "--collector.textfile"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            with prometheus_server(tmp_path / "prom", [("node", f"127.0.0.1:{port}")]) as prom:
                energy = prom.wait_for("sum(let_energy_joules_total)")
                assert energy[0][1] == pytest.approx(0.030 * J_PER_KWH)
                assert prom.query("node_textfile_scrape_error") == [
                    ({"__name__": "node_textfile_scrape_error", "instance": f"127.0.0.1:{port}", "job": "node"}, 0.0)]
        finally:
            stop(node)
    finally:
        stop(loop)
    assert not [p.name for p in textfile.iterdir() if p.name != "let.prom"]  # no temporary file left


def _node_exporter() -> str:
    import shutil

    found = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")
    if found is None:
        pytest.skip("no node_exporter: apt-get install -y prometheus-node-exporter (.ci/run does)")
    return found


def test_exporter_needs_a_destination_and_says_so(let_home: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "let_core", "exporter"], env=_env(let_home),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "--port" in done.stderr and "--textfile" in done.stderr


def test_a_store_shared_by_nodes_is_exported_once_per_node(let_home: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Each node's exporter gives its own runs, so summing over instances counts every run once;
    --all-hosts (one exporter of a merged store) gives them all."""
    for host, kwh in (("node1", 0.010), ("node2", 0.020), ("node2", 0.001)):
        monkeypatch.setenv("LET_HOSTNAME", host)
        _record("sweep", kwh)
    monkeypatch.delenv("LET_HOSTNAME")
    for host, expected_runs in (("node1", 1), ("node2", 2)):
        done = subprocess.run([sys.executable, "-m", "let_core", "exporter", "--textfile", str(tmp_path / host)],
                              env=_env(let_home, LET_HOSTNAME=host), capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        scraped = _parse((tmp_path / host / "let.prom").read_text())
        assert scraped["let_runs_total"] == {(("host", host), ("project", "sweep")): expected_runs}
    _lett(let_home, "exporter", "--textfile", str(tmp_path / "all"), "--all-hosts")
    everything = _parse((tmp_path / "all" / "let.prom").read_text())
    assert _by(everything["let_energy_joules_total"], "host") == pytest.approx(
        {"node1": 0.010 * J_PER_KWH, "node2": 0.021 * J_PER_KWH})


def test_a_slow_read_serves_the_last_totals_within_the_wait_then_the_new_ones(
        let_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from let_core import exporter

    _record("p", 0.010)
    collector = exporter.LetCollector(read_wait_s=0.2, log=lambda _: None)
    registry = exporter.registry_for(collector)

    def joules() -> float:
        scraped = _parse(prometheus_client.generate_latest(registry).decode())
        return sum(scraped.get("let_energy_joules_total", {}).values())

    # The first read (which imports pandas) may itself outlast the wait: scrapes until it is done.
    wait_until(lambda: joules() == pytest.approx(0.010 * J_PER_KWH), what="the first read")
    release = threading.Event()
    real = exporter.read_totals

    def slow(*args: Any) -> Any:  # a store that takes longer to read than a scrape may wait
        release.wait(60)
        return real(*args)

    monkeypatch.setattr(exporter, "read_totals", slow)
    _record("p", 0.020)
    try:
        scraped = _parse(prometheus_client.generate_latest(registry).decode())
        assert sum(scraped["let_energy_joules_total"].values()) == pytest.approx(0.010 * J_PER_KWH)
        assert scraped["let_exporter_up"][(("source", "store"),)] == 1
    finally:
        release.set()
    wait_until(lambda: joules() == pytest.approx(0.030 * J_PER_KWH), what="the read to finish")


def test_a_port_in_use_is_a_clear_error(let_home: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "let_core", "exporter", "--port", str(port)], env=_env(let_home),
                              capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr and f"--port {port + 1}" in done.stderr


def test_attribution_exports_each_runs_share_as_lett_results_counts_it(let_home: Path, tmp_path: Path) -> None:
    with EnergyTracker(project_name="shared", attribution="process", reporters=["csv"],
                       backends=[ManualBackend(power_watts=100, hardware="Xeon")]):
        sum(range(3 * 10**6))
    _record("plain", 0.002)  # no share: its machine figure counts in both views
    machine = _parse(_textfile(let_home, tmp_path / "machine"))
    shares = _parse(_textfile(let_home, tmp_path / "shares", "--attribution"))
    lines = _lett(let_home, "results", "--by", "project", "--json", "--attribution").splitlines()
    expected = {row["project"]: row["kwh"] * J_PER_KWH for row in map(json.loads, lines)}
    assert _by(shares["let_energy_joules_total"], "project") == pytest.approx(expected)
    machine_shared = _by(machine["let_energy_joules_total"], "project")["shared"]
    assert 0 < expected["shared"] <= machine_shared  # a share, never more than the machine's figure
    assert expected["plain"] == pytest.approx(0.002 * J_PER_KWH)


def _textfile(let_home: Path, folder: Path, *args: str) -> str:
    _lett(let_home, "exporter", "--textfile", str(folder), *args)
    return (folder / "let.prom").read_text()
