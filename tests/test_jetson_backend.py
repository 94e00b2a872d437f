"""jetson backend against a fake jtop that follows the real client's API."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from let_backends.jetson import JetsonBackend
from let_core.errors import ConfigurationError
from let_core.interfaces import Settings
from let_core.tracker import EnergyTracker
from tests.fakes import jtop as fake


@pytest.fixture
def service(monkeypatch: pytest.MonkeyPatch) -> Iterator[fake.FakeService]:
    board = fake.FakeService()
    fake.reset(board)
    monkeypatch.setitem(sys.modules, "jtop", fake)
    yield board


def settings(measure_power_secs: float = 0.05) -> Settings:
    return Settings(project_name="t", output_dir=Path("/nonexistent"), user="u", hostname="h",
                    country_iso_code="DEU", country_name="Germany", carbon_intensity=380.0,
                    measure_power_secs=measure_power_secs)


def test_available_on_a_jetson_with_the_service(service: fake.FakeService) -> None:
    availability = JetsonBackend.availability(settings())
    assert availability.available and availability.reason == "NVIDIA Jetson AGX Orin Developer Kit"


def test_unavailable_without_the_service(service: fake.FakeService) -> None:
    service.active = False
    availability = JetsonBackend.availability(settings())
    assert not availability.available
    assert "jtop.service is not active" in availability.reason
    assert "sudo systemctl restart jtop.service" in availability.reason
    with pytest.raises(ConfigurationError, match="cannot reach the jtop service"):
        JetsonBackend.from_settings(settings())


def test_unavailable_off_a_jetson(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "jtop", None)  # jetson-stats not installed
    availability = JetsonBackend.availability(settings())
    assert not availability.available and "jetson-stats is not installed" in availability.reason


def test_board_power_is_integrated_with_rails_in_extras(service: fake.FakeService) -> None:
    backend = JetsonBackend.from_settings(settings(0.02))
    assert backend.sampler.interval == 0.02  # the tracker's measure_power_secs
    backend.start()
    deadline = time.monotonic() + 60
    while backend.meter.polls < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    m = backend.stop()
    assert backend._client is None  # no jtop client (and thread) is left behind after a run
    # Constant power, so the trapezoid rule is exact over the measured interval.
    assert m.energy_kwh * 3.6e6 == pytest.approx(12.0 * m.duration_s, rel=1e-9)
    assert m.extras["rails_kwh"]["VDD_CPU_CV"] * 3.6e6 == pytest.approx(3.0 * m.duration_s, rel=1e-9)
    assert m.extras["rails_kwh"]["VDD_GPU_SOC"] * 3.6e6 == pytest.approx(5.0 * m.duration_s, rel=1e-9)
    assert m.extras["total_rail"] == "VDD_IN"
    assert m.kind == "metered" and m.methodology == "jetson-stats" and m.scope == "system"
    assert m.hardware == "NVIDIA Jetson AGX Orin Developer Kit"
    assert m.duration_s > 0 and not m.error


def test_board_without_an_input_rail_sums_its_rails(service: fake.FakeService) -> None:
    service.rails = {"CPU": 2_000, "GPU": 4_000}
    service.total_rail = None
    backend = JetsonBackend.from_settings(settings(3600))
    backend.start()
    m = backend.stop()
    backend.close()
    assert m.extras["total_rail"] == "sum of rails"
    assert m.energy_kwh * 3.6e6 == pytest.approx(6.0 * m.duration_s, rel=1e-9)


def test_lost_service_keeps_what_was_measured(service: fake.FakeService) -> None:
    backend = JetsonBackend.from_settings(settings(0.02))
    backend.start()
    backend.meter.poll()
    service.broken = True
    deadline = time.monotonic() + 60
    while backend._client._error is None and time.monotonic() < deadline:
        time.sleep(0.01)
    m = backend.stop()
    assert "jtop failed mid-run" in m.error and "Lost connection with jtop server" in m.error
    assert m.energy_kwh > 0


def test_task_through_the_tracker(service: fake.FakeService) -> None:
    runs = []

    class Collector:
        name = "collector"

        def report(self, run: object) -> None:
            runs.append(run)

    with EnergyTracker(backends=["jetson"], reporters=[Collector()], measure_power_secs=3600) as t:
        with t.task("epoch 1"):
            time.sleep(0.01)
    task, run = runs
    (task_m,), (run_m,) = task.measurements, run.measurements
    assert task.task == "epoch 1" and task.parent_run_id == run.run_id
    assert task_m.energy_kwh * 3.6e6 == pytest.approx(12.0 * task_m.duration_s, rel=1e-9)
    assert 0 < task_m.energy_kwh < run_m.energy_kwh


def test_started_again_it_reconnects(service: fake.FakeService) -> None:
    backend = JetsonBackend.from_settings(settings(3600))
    for _ in range(2):
        backend.start()
        m = backend.stop()
        assert not m.error and m.energy_kwh * 3.6e6 == pytest.approx(12.0 * m.duration_s, rel=1e-9)
