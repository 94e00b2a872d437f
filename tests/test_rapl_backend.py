"""RAPL backend against a fake powercap tree of real files."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from let_backends.rapl import ACCESS_HINT, RaplBackend, discover, select
from let_core.errors import ConfigurationError
from let_core.interfaces import Settings
from let_core.sampling import Channel
from tests.fakes.powercap import REAL_RANGE_UJ, Advancer, FakePowercap, server_tree


def settings_for(root: Path, **rapl: object) -> Settings:
    return Settings(project_name="t", output_dir=root.parent, user="u", hostname="h",
                    country_iso_code="DEU", country_name="Germany", carbon_intensity=380.0,
                    options={"rapl": {"root": str(root), **rapl}})


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_selection_counts_packages_and_dram_once(tmp_path: Path) -> None:
    tree = server_tree(tmp_path / "powercap")
    tree.add_zone("intel-rapl:2", "psys")
    selection = select(discover(tree.root))
    assert sorted(selection.cpu) == ["package-0", "package-1"]
    # The MSR zone wins over its MMIO duplicate; core sub-zones are inside the package.
    assert selection.cpu["package-0"].zone_id == "intel-rapl:0"
    assert sorted(selection.ram) == ["package-0/dram", "package-1/dram"]
    assert list(selection.psys) == ["psys:2"]


def test_known_trajectory_with_two_wraparounds_is_recovered_exactly(tmp_path: Path) -> None:
    max_range = 1_000_000  # µJ, so that a short trajectory wraps twice
    tree = FakePowercap(tmp_path / "powercap")
    tree.add_zone("intel-rapl:0", "package-0", max_range, start_uj=600_000)
    clock = FakeClock()
    selection = select(discover(tree.root))
    backend = RaplBackend(selection, sample_secs=3600, max_power_w=1.0, clock=clock,
                          hardware="test CPU")
    steps = [300_000, 350_000, 400_000, 123_457, 999_000, 5, 100_000]  # 2 272 462 µJ
    backend.start()
    for uj in steps:
        tree.add("intel-rapl:0", uj)
        clock.now += 1.0  # 1 s per step: <= 1 W, plausible for max_power_w=1
        backend.meter.poll()
    measurement = backend.stop()
    assert tree.absolute["intel-rapl:0"] // (max_range + 1) - 600_000 // (max_range + 1) == 2
    channel = backend.meter.channels["package-0"]
    assert channel.total == sum(steps)  # exact, in µJ
    assert channel.dropped == 0
    assert measurement.energy_kwh == pytest.approx(sum(steps) / 1e6 / 3.6e6, rel=1e-12)
    assert measurement.cpu_kwh == measurement.energy_kwh
    assert measurement.kind == "metered" and measurement.methodology == "RAPL"
    assert measurement.scope == "cpu" and measurement.ram_kwh is None
    assert measurement.hardware == "test CPU"
    assert measurement.duration_s == pytest.approx(len(steps))


def test_sampler_thread_sees_every_wrap_of_counters_a_thread_advances(tmp_path: Path) -> None:
    max_range, step = 1_000_000, 250_000
    tree = server_tree(tmp_path / "powercap", max_range=max_range)
    settings = settings_for(tree.root, sample_secs=0.005, max_power_w=1e12)
    backend = RaplBackend.from_settings(settings)
    zones = list(tree.absolute)

    def advance() -> None:
        for zone in zones:
            tree.add(zone, step)

    backend.start()
    # At most 3 steps (750 kJ... µJ) between two polls, less than one range: no wrap can hide.
    with Advancer(advance, lambda: backend.meter.polls) as advancer:
        deadline = time.monotonic() + 60
        while advancer.steps < 16 and time.monotonic() < deadline:
            time.sleep(0.01)
    measurement = backend.stop()
    steps = advancer.steps
    assert steps >= 16  # four wraps of every counter
    expected_uj = 2 * steps * step
    assert measurement.cpu_kwh == pytest.approx(expected_uj / 1e6 / 3.6e6, rel=1e-12)
    assert measurement.ram_kwh == pytest.approx(expected_uj / 1e6 / 3.6e6, rel=1e-12)
    assert measurement.scope == "cpu+ram"
    assert "dropped_intervals" not in measurement.extras


def test_counter_that_goes_backwards_drops_the_interval_and_marks_it(tmp_path: Path) -> None:
    tree = FakePowercap(tmp_path / "powercap")
    tree.add_zone("intel-rapl:0", "package-0", REAL_RANGE_UJ, start_uj=100_000_000_000)
    clock = FakeClock()
    backend = RaplBackend(select(discover(tree.root)), sample_secs=3600, clock=clock, hardware="x")
    backend.start()
    tree.add("intel-rapl:0", 50_000_000)  # 50 J in 1 s
    clock.now += 1
    backend.meter.poll()
    tree.set_raw("intel-rapl:0", 5_000_000)  # driver reload: the counter restarts near 0
    clock.now += 1
    backend.meter.poll()
    tree.set_raw("intel-rapl:0", 45_000_000)  # 40 J in 1 s after the reset
    clock.now += 1
    measurement = backend.stop()
    assert measurement.energy_kwh == pytest.approx(90.0 / 3.6e6, rel=1e-12)
    assert measurement.energy_kwh >= 0
    assert measurement.extras["dropped_intervals"] == {"package-0": 1}
    assert "without a plausible wrap" in measurement.extras["dropped_notes"][0]


def test_counter_without_range_never_counts_a_decrease() -> None:
    channel = Channel("gpu0", "counter", 1e-3)
    for t, value in enumerate([10, 20, 5, 15]):
        channel.feed(value, float(t))
    assert channel.total == 20 and channel.dropped == 1


def test_task_is_a_difference_of_counter_snapshots(tmp_path: Path) -> None:
    tree = FakePowercap(tmp_path / "powercap")
    tree.add_zone("intel-rapl:0", "package-0")
    clock = FakeClock()
    backend = RaplBackend(select(discover(tree.root)), sample_secs=3600, clock=clock, hardware="x")
    backend.start()
    tree.add("intel-rapl:0", 1_000_000)
    backend.task_start("epoch 1")
    tree.add("intel-rapl:0", 7_000_000)
    clock.now += 2
    task = backend.task_stop("epoch 1")
    tree.add("intel-rapl:0", 2_000_000)
    run = backend.stop()
    assert task.energy_kwh == pytest.approx(7.0 / 3.6e6, rel=1e-12)
    assert task.duration_s == pytest.approx(2.0)
    assert run.energy_kwh == pytest.approx(10.0 / 3.6e6, rel=1e-12)


def test_missing_tree_is_unavailable_with_the_reason(tmp_path: Path) -> None:
    availability = RaplBackend.availability(settings_for(tmp_path / "nowhere"))
    assert not availability.available
    assert "intel_rapl_msr" in availability.reason
    empty = tmp_path / "empty"
    empty.mkdir()
    availability = RaplBackend.availability(settings_for(empty))
    assert not availability.available and "no RAPL package zone" in availability.reason
    with pytest.raises(ConfigurationError, match="no RAPL package zone"):
        RaplBackend.from_settings(settings_for(empty))


def test_root_config_comes_from_env_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree = server_tree(tmp_path / "powercap")
    monkeypatch.setenv("LET_RAPL_ROOT", str(tree.root))
    settings = Settings(project_name="t", output_dir=tmp_path, user="u", hostname="h",
                        country_iso_code="DEU", country_name="Germany", carbon_intensity=380.0)
    assert RaplBackend.availability(settings).available


def _availability_as_nobody(settings: Settings) -> tuple[bool, str]:
    """Run the availability check in a forked child that has dropped root (root reads anything)."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns into pytest
        try:
            os.close(read_fd)
            os.setgid(65534)
            os.setuid(65534)
            availability = RaplBackend.availability(settings)
            os.write(write_fd, f"{availability.available}|{availability.reason}".encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        data = pipe.read().decode()
    os.waitpid(pid, 0)
    available, _, reason = data.partition("|")
    return available == "True", reason


def test_root_only_counters_are_unavailable_with_the_access_hint() -> None:
    # The fake tree's counters are mode 0400, as on Linux >= 5.10, in folders everyone may enter.
    base = Path(tempfile.mkdtemp(prefix="let-rapl-"))
    try:
        tree = server_tree(base / "powercap")
        for path in [base, *base.rglob("*")]:
            if path.is_dir():
                path.chmod(0o755)
        settings = settings_for(tree.root)
        if os.geteuid() == 0:
            available, reason = _availability_as_nobody(settings)
        else:
            for counter in tree.root.glob("*/energy_uj"):
                counter.chmod(0)
            availability = RaplBackend.availability(settings)
            available, reason = availability.available, availability.reason
        assert not available
        assert ACCESS_HINT in reason
    finally:
        shutil.rmtree(base, ignore_errors=True)
