"""NVML backend against a fake pynvml that follows the real module's API."""

from __future__ import annotations

import inspect
import sys
from pathlib import Path
from typing import Any

import pytest

from let_backends.nvml import ENERGY, POWER, NvmlBackend
from let_core.errors import ConfigurationError
from let_core.interfaces import Settings
from let_core.tracker import EnergyTracker
from tests.fakes import pynvml as fake
from tests.fakes.powercap import server_tree

A100 = "GPU-11111111-2222-3333-4444-555555555555"
P100 = "GPU-66666666-7777-8888-9999-000000000000"


@pytest.fixture
def gpus(monkeypatch: pytest.MonkeyPatch) -> list[fake.FakeGpu]:
    devices = [fake.FakeGpu("NVIDIA A100-SXM4-40GB", A100, power_mw=300_000, energy_mj=10**9),
               fake.FakeGpu("Tesla P100-PCIE-16GB", P100, power_mw=100_000, has_energy_counter=False)]
    fake.reset(devices)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    return devices


def settings(cuda_devices: tuple[str, ...] | None = None, **nvml: Any) -> Settings:
    return Settings(project_name="t", output_dir=Path("/nonexistent"), user="u", hostname="h",
                    country_iso_code="DEU", country_name="Germany", carbon_intensity=380.0,
                    cuda_devices=cuda_devices, options={"nvml": {"sample_secs": 3600, **nvml}})


def test_fake_follows_the_real_pynvml_api() -> None:
    real = pytest.importorskip("pynvml", reason="nvidia-ml-py is not installed: pip install '.[nvml]'")
    assert real is not fake
    public = [n for n in vars(fake) if n.startswith(("nvml", "NVML"))]
    for name in public:
        assert hasattr(real, name), f"fake pynvml has {name}, the real one does not"
        ours = getattr(fake, name)
        if inspect.isfunction(ours):
            theirs = inspect.signature(getattr(real, name))
            assert list(inspect.signature(ours).parameters) == list(theirs.parameters), name
        elif isinstance(ours, int):
            assert getattr(real, name) == ours, name
    for name in ("NVMLError_NotSupported", "NVMLError_GpuIsLost", "NVMLError_InvalidArgument",
                 "NVMLError_NotFound", "NVMLError_LibraryNotFound"):
        assert issubclass(getattr(real, name), real.NVMLError)
        assert issubclass(getattr(fake, name), fake.NVMLError)
    # The real constructor maps a code to its subclass; the fake must too.
    assert type(real.NVMLError(real.NVML_ERROR_GPU_IS_LOST)).__name__ == "NVMLError_GpuIsLost"
    assert type(fake.NVMLError(fake.NVML_ERROR_GPU_IS_LOST)).__name__ == "NVMLError_GpuIsLost"


def test_energy_counter_and_power_only_gpus(gpus: list[fake.FakeGpu]) -> None:
    backend = NvmlBackend.from_settings(settings())
    assert [g.mode for g in backend.gpus.values()] == [ENERGY, POWER]
    backend.start()
    for _ in range(5):
        gpus[0].advance(1.0)  # 300 J each
        backend.meter.poll()
    m = backend.stop()
    info = m.extras["gpus"]
    assert info["gpu0"]["kwh"] * 3.6e6 == pytest.approx(1500.0, rel=1e-12)
    # Constant 100 W integrated over exactly the measured interval.
    assert info["gpu1"]["kwh"] * 3.6e6 == pytest.approx(100.0 * m.duration_s, rel=1e-9)
    assert m.gpu_kwh == m.energy_kwh == pytest.approx(info["gpu0"]["kwh"] + info["gpu1"]["kwh"])
    assert m.kind == "metered" and m.methodology == "NVML" and m.scope == "gpu"
    assert m.hardware == "NVIDIA A100-SXM4-40GB, Tesla P100-PCIE-16GB"
    assert not m.error
    backend.close()


def test_select_by_index_and_uuid(gpus: list[fake.FakeGpu]) -> None:
    by_index = NvmlBackend.from_settings(settings(("1",)))
    assert [g.uuid for g in by_index.gpus.values()] == [P100]
    by_uuid = NvmlBackend.from_settings(settings((A100,)))
    assert [g.name for g in by_uuid.gpus.values()] == ["NVIDIA A100-SXM4-40GB"]
    with pytest.raises(ConfigurationError, match="no GPU with UUID"):
        NvmlBackend.from_settings(settings(("GPU-deadbeef",)))


def test_gpu_index_that_does_not_exist_fails_before_the_experiment(gpus: list[fake.FakeGpu]) -> None:
    ran = []
    with pytest.raises(ConfigurationError, match=r"GPU index 2 does not exist: NVML sees 2 GPU"):
        with EnergyTracker(backends=["nvml"], reporters=[], cuda_devices=[0, 2]):
            ran.append(True)
    assert not ran


def test_gpu_that_disappears_mid_run_keeps_what_was_measured(gpus: list[fake.FakeGpu]) -> None:
    gpus.append(fake.FakeGpu("NVIDIA A100-SXM4-40GB", "GPU-aaaaaaaa-0000-0000-0000-000000000000"))
    fake.reset(gpus)
    backend = NvmlBackend.from_settings(settings(("0", "2")))
    backend.start()
    gpus[0].advance(1.0)
    gpus[2].advance(1.0)
    backend.meter.poll()
    gpus[2].lost = True  # fell off the bus
    gpus[0].advance(1.0)
    gpus[2].advance(1.0)  # never read again
    m = backend.stop()
    assert m.extras["gpus"]["gpu0"]["kwh"] * 3.6e6 == pytest.approx(600.0, rel=1e-12)
    assert m.extras["gpus"]["gpu2"]["kwh"] * 3.6e6 == pytest.approx(250.0, rel=1e-12)
    assert m.energy_kwh * 3.6e6 == pytest.approx(850.0, rel=1e-12)
    assert "GPU 2 (NVIDIA A100-SXM4-40GB) failed mid-run: NVMLError_GpuIsLost: GPU is lost" in m.error
    assert m.extras["failed_channels"] == {"gpu2": "NVMLError_GpuIsLost: GPU is lost"}


def test_energy_counter_reset_is_dropped_never_negative(gpus: list[fake.FakeGpu]) -> None:
    backend = NvmlBackend.from_settings(settings(("0",)))
    backend.start()
    gpus[0].advance(1.0)
    backend.meter.poll()
    gpus[0].energy_mj = 1000  # driver reload: counter restarts
    backend.meter.poll()
    gpus[0].energy_mj += 2000
    m = backend.stop()
    assert m.energy_kwh * 3.6e6 == pytest.approx(302.0, rel=1e-12)
    assert m.extras["dropped_intervals"] == {"gpu0": 1}


def test_no_driver_is_unavailable_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    fake.reset([], driver_loaded=False)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    availability = NvmlBackend.availability(settings())
    assert not availability.available
    assert "NVML Shared Library Not Found" in availability.reason and "driver" in availability.reason
    fake.reset([])
    assert "sees no GPU" in NvmlBackend.availability(settings()).reason


def test_without_pynvml_it_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml raises ImportError
    availability = NvmlBackend.availability(settings())
    assert not availability.available and "nvidia-ml-py" in availability.reason


class Collector:
    name = "collector"

    def __init__(self) -> None:
        self.runs: list[Any] = []

    def report(self, run: Any) -> None:
        self.runs.append(run)


def test_rapl_and_nvml_end_to_end_with_a_task(gpus: list[fake.FakeGpu], tmp_path: Path) -> None:
    tree = server_tree(tmp_path / "powercap")
    collector = Collector()
    tracker = EnergyTracker(project_name="native", backends=["rapl", "nvml"], reporters=[collector],
                            measure_power_secs=0.05, cuda_devices=["0"],
                            options={"rapl": {"root": str(tree.root)}})
    with tracker:
        tree.add("intel-rapl:0", 3_000_000)
        gpus[0].advance(0.01)  # 3 J
        with tracker.task("epoch 1"):
            tree.add("intel-rapl:0", 7_000_000)
            tree.add("intel-rapl:0:1", 1_000_000)
            gpus[0].advance(0.02)  # 6 J
        tree.add("intel-rapl:1", 2_000_000)
    task_run, run = collector.runs
    assert task_run.task == "epoch 1" and task_run.parent_run_id == run.run_id
    task = {m.backend: m for m in task_run.measurements}
    assert task["rapl"].cpu_kwh * 3.6e6 == pytest.approx(7.0, rel=1e-12)
    assert task["rapl"].ram_kwh * 3.6e6 == pytest.approx(1.0, rel=1e-12)
    assert task["nvml"].gpu_kwh * 3.6e6 == pytest.approx(6.0, rel=1e-12)
    whole = {m.backend: m for m in run.measurements}
    assert whole["rapl"].energy_kwh * 3.6e6 == pytest.approx(13.0, rel=1e-12)
    assert whole["nvml"].energy_kwh * 3.6e6 == pytest.approx(9.0, rel=1e-12)
    result = tracker.last_result
    assert result is not None
    # cpu+ram and gpu do not overlap: the run's energy is their sum.
    assert result["energy_consumed"] * 3.6e6 == pytest.approx(22.0, rel=1e-12)
    assert result["tracking_mode"] == "RAPL + NVML"


# ------------------------------------------------------------------ the process's share of each GPU
def test_fake_utilisation_sample_has_the_real_fields() -> None:
    real = pytest.importorskip("pynvml", reason="nvidia-ml-py is not installed: pip install '.[nvml]'")
    ours = [name for name, _ in fake.c_nvmlProcessUtilizationSample_t._fields_]
    assert ours == [name for name, _ in real.c_nvmlProcessUtilizationSample_t._fields_]


def test_gpu_share_by_process_utilisation_else_whole_and_said(gpus: list[fake.FakeGpu], let_home: Path) -> None:
    import os

    from let_core.results import frame_totals, load_results

    gpus[1].has_energy_counter = True  # (power-only GPUs are split the same way)
    gpus[1].process_utilization = False  # as under some vGPU drivers: NVML_ERROR_NOT_SUPPORTED
    other = os.getppid()  # another user's process on the same GPU
    gpus[0].processes = {os.getpid(): 60, other: 20}
    gpus[1].processes = {os.getpid(): 10, other: 90}
    tracker = EnergyTracker(project_name="gpu", backends=["nvml"], reporters=[], attribution="process",
                            options={"nvml": {"sample_secs": 3600}})
    with tracker:
        nvml = tracker.backends[0]
        for _ in range(4):
            for gpu in gpus:
                gpu.advance(1.0)
            nvml.meter.poll()  # type: ignore[attr-defined]
        gpus[0].processes = {other: 40}  # the tree stops; the other process goes on
        gpus[0].advance(1.0)
        nvml.meter.poll()  # type: ignore[attr-defined]
    by_name = {m.backend: m for m in tracker.last_run.measurements}
    machine, share = by_name["nvml"], by_name["nvml/process"]
    assert machine.kind == "metered" and machine.energy_kwh > 0
    per_gpu = {label: info["kwh"] for label, info in machine.extras["gpus"].items()}
    # GPU 0: the tree's 4 x 60 of every process's 4 x 80 + 40; GPU 1: whole, and the row says why.
    assert share.extras["gpu_shares"] == {"gpu0": pytest.approx(240 / 360), "gpu1": 1.0}
    assert share.energy_kwh == pytest.approx(per_gpu["gpu0"] * 240 / 360 + per_gpu["gpu1"])
    assert "whole GPU" in share.extras["gpu_share"] and "GPU 1" in share.extras["gpu_share"]
    assert "Not Supported" in share.extras["gpu_share"]
    assert share.kind == "attributed" and not share.error
    rows = load_results(let_home)
    assert frame_totals(rows).energy_kwh == pytest.approx(machine.energy_kwh)
    assert frame_totals(rows, attributed=True).energy_kwh == pytest.approx(share.energy_kwh)


def test_gpu_no_process_used_gets_no_share(gpus: list[fake.FakeGpu]) -> None:
    tracker = EnergyTracker(backends=["nvml"], reporters=[], attribution="process", cuda_devices=[0],
                            options={"nvml": {"sample_secs": 3600}})
    with tracker:
        gpus[0].advance(2.0)  # idle: the driver samples no process (NVML_ERROR_NOT_FOUND)
        tracker.backends[0].meter.poll()  # type: ignore[attr-defined]
    share = {m.backend: m for m in tracker.last_run.measurements}["nvml/process"]
    assert share.energy_kwh == 0.0 and "no process used the GPU" in share.extras["gpu_share"]


def test_machine_figures_gpu_part_is_split_as_nvml_split_it(gpus: list[fake.FakeGpu]) -> None:
    import os

    from let_core.attribution import ProcessShare
    from let_core.records import Measurement

    backend = NvmlBackend.from_settings(settings(("0",)))
    share = ProcessShare(3600)
    share.follow([backend])
    share.start()
    backend.start()
    gpus[0].processes = {os.getpid(): 30, os.getppid(): 70}
    gpus[0].advance(1.0)
    backend.meter.poll()
    gpu = backend.stop()
    backend.close()
    machine = Measurement(backend="codecarbon", methodology="CodeCarbon", kind="estimate", energy_kwh=0.6,
                          duration_s=1.0, cpu_kwh=0.2, gpu_kwh=0.3, ram_kwh=0.1)
    rows = {m.backend: m for m in share.stop([machine, gpu])}
    cpu_share, ram_share = rows["codecarbon/process"].extras["cpu_share"], rows["codecarbon/process"].extras["ram_share"]
    assert rows["codecarbon/process"].gpu_kwh == pytest.approx(0.3 * 0.3)
    assert rows["codecarbon/process"].energy_kwh == pytest.approx(0.2 * cpu_share + 0.3 * 0.3 + 0.1 * ram_share, abs=1e-6)
    assert rows["nvml/process"].energy_kwh == pytest.approx(gpu.energy_kwh * 0.3)
