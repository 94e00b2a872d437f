"""The live files a running tracker publishes in the runtime dir (what `lett exporter` reads):
there while the run goes on, refreshed, gone when it stops; a failure to publish never costs
the run; a reader skips what is damaged, stale, another node's or a dead process's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from let_backends.manual import ManualBackend
from let_core import config
from let_core.errors import ConfigurationError, LetWarning
from let_core.live import read_published
from let_core.livedir import live_dir
from let_core.livefile import LIVE_FORMAT
from let_core.tracker import EnergyTracker
from tests.loopback import wait_until


@pytest.fixture
def runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LET_RUNTIME_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("LET_LIVE_INTERVAL", "0.1")
    return tmp_path / "run"


def _tracker(watts: float = 30.0) -> EnergyTracker:
    return EnergyTracker(project_name="p", backends=[ManualBackend(power_watts=watts, hardware="Xeon")],
                         reporters=["csv"])


def test_a_running_tracker_publishes_refreshed_figures_and_removes_them_at_stop(runtime: Path) -> None:
    tracker = _tracker().start()
    try:
        scan = wait_until(lambda: (found := read_published(runtime, tracker.hostname)).runs and found,
                          what="the first live file")
        assert [(r.project, r.pid, r.run_id) for r in scan.runs] == [("p", os.getpid(), tracker.run_id)]
        first = scan.runs[0]
        assert first.readings[0].power_w == 30.0 and first.readings[0].kind == "estimate"
        later = wait_until(lambda: [r for r in read_published(runtime, tracker.hostname).runs
                                    if r.updated > first.updated and r.readings[0].energy_kwh > first.readings[0].energy_kwh],
                           what="a refreshed live file")
        assert later[0].started == first.started
    finally:
        result = tracker.stop(print_summary=False)
    assert read_published(runtime, tracker.hostname).runs == ()
    assert os.listdir(live_dir(runtime)) == []  # neither the file nor a temporary one stays
    assert result["measurements"]["manual"]["energy_consumed"] > 0


@pytest.mark.parametrize("idle_looks", [0, 60], ids=["thread asleep for good", "thread looking every second"])
def test_a_tracker_started_after_others_stopped_publishes(runtime: Path, monkeypatch: pytest.MonkeyPatch,
                                                          idle_looks: int) -> None:
    """The publishing thread, with nothing to publish, looks again a second later (so a start
    needs no wake-up call) and, after a minute of that, sleeps until a start wakes it: in
    either state a new tracker is published."""
    from let_core import livedir

    monkeypatch.setattr(livedir, "IDLE_LOOKS", idle_looks)
    _tracker().start().stop(print_summary=False)
    time.sleep(0.3)  # past the stopped tracker's first due time: the thread has found the schedule empty
    tracker = _tracker().start()
    try:
        wait_until(lambda: read_published(runtime, tracker.hostname).runs, what="the second tracker's live file")
    finally:
        tracker.stop(print_summary=False)


def test_no_publishing_when_turned_off_and_a_bad_interval_fails_before_anything_starts(
        runtime: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LET_LIVE_INTERVAL", "0")
    with _tracker():
        assert not live_dir(runtime).exists()
    monkeypatch.setenv("LET_LIVE_INTERVAL", "soon")
    tracker = _tracker()
    with pytest.raises(ConfigurationError, match="LET_LIVE_INTERVAL"):
        tracker.start()
    assert not tracker.running


def test_an_unwritable_runtime_dir_is_a_warning_and_the_run_is_recorded(runtime: Path, let_home: Path) -> None:
    runtime.parent.mkdir(parents=True, exist_ok=True)
    runtime.write_text("a file where the runtime dir belongs")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with _tracker() as tracker:
            time.sleep(0.3)
    assert any(issubclass(w.category, LetWarning) and "cannot publish" in str(w.message) for w in caught)
    assert tracker.last_run is not None
    assert tracker.last_run.run_id in (let_home / "emissions.csv").read_text()


def _write(folder: Path, name: str, **fields: object) -> None:
    data = {"format": LIVE_FORMAT, "pid": os.getpid(), "hostname": "node1", "project": "p", "user": "u",
            "run_id": "r", "started": time.time(), "updated": time.time(), "interval_s": 1.0,
            "readings": [{"backend": "rapl", "kind": "metered", "energy_kwh": 0.001, "power_w": 12.0, "error": ""}]}
    data.update(fields)
    (folder / name).write_text(json.dumps(data))


def test_the_reader_skips_dead_stale_damaged_and_other_nodes_files(tmp_path: Path) -> None:
    folder = live_dir(tmp_path)
    folder.mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _write(folder, "node1-1-aaaa.json")
    _write(folder, "node1-2-bbbb.json", pid=dead.pid)
    _write(folder, "node1-3-cccc.json", updated=time.time() - 3600)
    _write(folder, "node1-4-dddd.json", format=LIVE_FORMAT + 1)
    (folder / "node1-5-eeee.json").write_bytes(b'{"format": 1, "pid": 12')  # torn
    _write(folder, "node2-6-ffff.json", hostname="node2")
    _write(folder, ".node1-7-gggg.json.123.tmp")  # a writer's temporary file
    scan = read_published(tmp_path, "node1")
    assert [r.run_id for r in scan.runs] == ["r"] and scan.runs[0].readings[0].power_w == 12.0
    assert (scan.dead, scan.stale, scan.unreadable) == (1, 1, 2)
    assert scan.dead_runs[0].pid == dead.pid and scan.dead_runs[0].readings[0].energy_kwh == 0.001
    assert read_published(tmp_path / "missing", "node1").runs == ()
    assert len(os.listdir(folder)) == 7  # a reader removes nothing: a dead leader's figure stays readable


def test_live_interval_is_read_in_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LET_LIVE_INTERVAL", raising=False)
    assert config.live_interval() == config.DEFAULT_LIVE_INTERVAL
    monkeypatch.setenv("LET_LIVE_INTERVAL", "0.001")
    assert config.live_interval() == 0.1
    monkeypatch.setenv("LET_LIVE_INTERVAL", "-1")
    with pytest.raises(ConfigurationError):
        config.live_interval()


def test_the_publisher_reading_leaves_each_readers_power_its_own(runtime: Path, tmp_path: Path) -> None:
    """A counter backend's live power is since the caller's previous reading: the publisher's
    thread reading in between changes neither the user's figure nor the status line's."""
    from let_backends.rapl import RaplBackend, discover
    from let_backends.rapl import select as select_zones
    from tests.fakes.powercap import FakePowercap

    class Clock:
        now = 1000.0

        def __call__(self) -> float:
            return self.now

    clock = Clock()
    tree = FakePowercap(tmp_path / "powercap")
    tree.add_zone("intel-rapl:0", "package-0")
    rapl = RaplBackend(select_zones(discover(tree.root)), sample_secs=3600, hardware="x", clock=clock)
    tracker = EnergyTracker(backends=[rapl], reporters=["csv"]).start()
    try:
        tree.add("intel-rapl:0", 30_000_000)  # 30 J in 2 s
        clock.now += 2
        assert tracker.live().of("rapl").power_w == pytest.approx(15.0)
        tree.add("intel-rapl:0", 10_000_000)  # 10 J in the next second
        clock.now += 1

        def published_40_joules() -> bool:
            runs = read_published(runtime, tracker.hostname).runs
            return bool(runs) and runs[0].readings[0].energy_kwh == pytest.approx(40 / 3.6e6)

        wait_until(published_40_joules, what="the publisher to read the counter after the user")
        assert tracker.live().of("rapl").power_w == pytest.approx(10.0)
    finally:
        tracker.stop(print_summary=False)
