"""tracker.live() and the status line of `lett run` / `lett demo`: figures so far, nothing changed."""

from __future__ import annotations

import io
import os
import pty
import select
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from let_backends.manual import ManualBackend
from let_backends.rapl import RaplBackend, discover
from let_backends.rapl import select as select_zones
from let_core import load_results
from let_core.errors import LetError
from let_core.interfaces import LiveReading
from let_core.live import LiveStatus, StatusLine, format_status
from let_core.tracker import EnergyTracker
from tests.fakes.powercap import FakePowercap

REPO = Path(__file__).resolve().parents[1]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _rapl(tmp_path: Path, clock: FakeClock | None = None) -> tuple[FakePowercap, RaplBackend]:
    tree = FakePowercap(tmp_path / "powercap")
    tree.add_zone("intel-rapl:0", "package-0")
    kwargs = {"clock": clock} if clock is not None else {}
    return tree, RaplBackend(select_zones(discover(tree.root)), sample_secs=3600, hardware="x", **kwargs)


def test_live_gives_power_and_energy_per_backend_while_the_run_goes_on(tmp_path: Path) -> None:
    clock = FakeClock()
    tree, rapl = _rapl(tmp_path, clock)
    manual = ManualBackend(power_watts=100.0)
    tracker = EnergyTracker(backends=[rapl, manual], reporters=["csv"])
    tracker.start()
    tree.add("intel-rapl:0", 30_000_000)  # 30 J in 2 s: 15 W
    clock.now += 2
    status = tracker.live()
    assert isinstance(status, LiveStatus) and tracker.running
    metered = status.of("rapl")
    assert metered.kind == "metered"
    assert metered.energy_kwh == pytest.approx(30 / 3.6e6, rel=1e-12)
    assert metered.power_w == pytest.approx(15.0)
    tree.add("intel-rapl:0", 10_000_000)  # the next reading's power is since the previous one
    clock.now += 1
    assert tracker.live().of("rapl").power_w == pytest.approx(10.0)
    estimate = tracker.live().of("manual")
    assert estimate.kind == "estimate" and estimate.power_w == 100.0 and estimate.energy_kwh > 0
    result = tracker.stop()
    assert result["measurements"]["rapl"]["energy_consumed"] == pytest.approx(40 / 3.6e6, rel=1e-12)
    with pytest.raises(LetError, match="running tracker"):
        tracker.live()


def test_a_failing_live_reading_is_shown_as_failed_and_the_run_goes_on(tmp_path: Path) -> None:
    class Broken(ManualBackend):
        def live(self) -> LiveReading:
            raise OSError("device gone")

    tracker = EnergyTracker(backends=[Broken(power_watts=5, name="broken")], reporters=["csv"])
    with tracker:
        reading = tracker.live().of("broken")
        assert "device gone" in reading.error
        assert "broken failed" in format_status(tracker.live())
    assert tracker.last_run is not None and tracker.last_run.status == "ok"


def _run_with_counter(tmp_path: Path, project: str, status_line: bool) -> float:
    """One run over a counter that a thread advances by exactly 200 steps of 0.5 J."""
    tree, rapl = _rapl(tmp_path / project)
    tracker = EnergyTracker(project_name=project, backends=[rapl], reporters=["csv"])
    stream = io.StringIO()
    line = StatusLine(tracker, stream=stream, interval=0.002, enabled=status_line)
    done = threading.Event()

    def workload() -> None:
        for _ in range(200):
            tree.add("intel-rapl:0", 500_000)
            time.sleep(0.002)
        done.set()

    with tracker, line:
        threading.Thread(target=workload).start()
        assert done.wait(60)
    if status_line:
        assert line.updates >= 5, "the status line must really have read the run while it went on"
        assert "metered: rapl" in stream.getvalue()
    else:
        assert stream.getvalue() == ""
    frame = load_results(project_name=project)
    return float(frame["energy_consumed"].iloc[0])


def test_stored_energy_is_the_same_with_and_without_the_status_line(tmp_path: Path) -> None:
    without = _run_with_counter(tmp_path, "quiet", status_line=False)
    with_line = _run_with_counter(tmp_path, "live", status_line=True)
    assert without == pytest.approx(100 / 3.6e6, rel=1e-9)
    assert with_line == pytest.approx(without, rel=0.01)


def test_codecarbon_live_reads_its_running_totals_without_disturbing_them() -> None:
    tracker = EnergyTracker(backends=["codecarbon"], reporters=["csv"], measure_power_secs=0.2)
    with tracker:
        time.sleep(1.0)
        backend = tracker.backends[0]
        scheduler_samples = backend._tracker._measure_occurrence
        first = tracker.live().of("codecarbon")
        second = tracker.live().of("codecarbon")
        # Reading twice measures nothing: CodeCarbon's sample count is untouched.
        assert backend._tracker._measure_occurrence - scheduler_samples <= 1
        assert first.kind == "estimate" and first.power_w and first.power_w > 0
        assert 0 < first.energy_kwh <= second.energy_kwh
    stored = tracker.last_result["measurements"]["codecarbon"]["energy_consumed"]  # type: ignore[index]
    assert stored >= second.energy_kwh


def test_format_fits_the_width_and_shows_both_kinds_side_by_side() -> None:
    status = LiveStatus(elapsed_s=3725, readings=(
        LiveReading("codecarbon", "estimate", 0.0021, 45.04),
        LiveReading("rapl", "metered", 0.0015, 31.2)))
    line = format_status(status, width=200)
    assert line == ("LET 1:02:05 | metered: rapl 31.2 W 1.500 Wh | "
                    "estimate: codecarbon 45.0 W 2.100 Wh")
    assert len(format_status(status, width=40)) == 40


def _let(*args: str) -> list[str]:
    return [sys.executable, "-c", "from let_core.cli import main; main()", *args]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}


def _on_a_terminal(args: list[str]) -> tuple[int, str]:
    """Run with stderr (and stdout) on a pseudo-terminal, as a user's shell would."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(args, stdout=slave, stderr=slave, stdin=subprocess.DEVNULL, env=_env(),
                            cwd=REPO)
    os.close(slave)
    chunks = []
    while True:
        ready, _, _ = select.select([master], [], [], 60)
        if not ready:
            proc.kill()
            break
        try:
            data = os.read(master, 4096)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return proc.wait(30), b"".join(chunks).decode(errors="replace")


def test_let_run_shows_a_status_line_on_a_terminal_only() -> None:
    # The three runs are independent: run side by side, each waits on its own CodeCarbon start.
    with ThreadPoolExecutor(3) as pool:
        on_tty = pool.submit(_on_a_terminal, _let("run", "--backend", "codecarbon", "--project", "tty", "--",
                                                  "sleep", "2.5"))
        quiet = pool.submit(_on_a_terminal, _let("run", "--quiet", "--backend", "codecarbon", "--project", "q",
                                                 "--", "sleep", "2.5"))
        piped_run = pool.submit(subprocess.run, _let("run", "--backend", "codecarbon", "--", "sleep", "2.5"),
                                capture_output=True, text=True, env=_env(), cwd=REPO)
        code, shown = on_tty.result()
        assert code == 0, shown
        assert "\rLET 0:0" in shown and "estimate: codecarbon" in shown and " W " in shown
        code, shown = quiet.result()
        assert code == 0 and "\rLET" not in shown
        piped = piped_run.result()
        assert piped.returncode == 0 and "\rLET" not in piped.stderr
    assert set(load_results()["project_name"]) == {"tty", "q", "default"}


def test_nvml_live_adds_counter_and_power_channels(monkeypatch: pytest.MonkeyPatch) -> None:
    from let_backends.nvml import NvmlBackend
    from let_core.interfaces import Settings
    from tests.fakes import pynvml as fake

    gpus = [fake.FakeGpu("NVIDIA A100-SXM4-40GB", "GPU-1", power_mw=300_000, energy_mj=10**9),
            fake.FakeGpu("Tesla P100-PCIE-16GB", "GPU-2", power_mw=100_000, has_energy_counter=False)]
    fake.reset(gpus)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    settings = Settings(project_name="t", output_dir=Path("/nonexistent"), user="u", hostname="h",
                        country_iso_code="DEU", country_name="Germany", carbon_intensity=380.0,
                        options={"nvml": {"sample_secs": 3600}})
    backend = NvmlBackend.from_settings(settings)
    backend.start()
    for _ in range(5):
        gpus[0].advance(1.0)  # 300 J each on the counter GPU
        backend.meter.poll()
    reading = backend.live()
    assert reading.kind == "metered" and reading.backend == "nvml"
    joules = reading.energy_kwh * 3.6e6
    assert joules >= 1500.0  # the counter's 1500 J, plus 100 W times the (short) real time
    measurement = backend.stop()
    assert measurement.energy_kwh * 3.6e6 == pytest.approx(joules, abs=100.0 * 5)
    backend.close()
