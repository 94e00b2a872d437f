"""The CodeCarbon backend with real CodeCarbon runs (TDP mode on this machine).

Real runs cost seconds the first time in a process (CodeCarbon probes the hardware) and
milliseconds after that (it caches the probe), so the module shares one run with a task.
"""

from __future__ import annotations

import csv
import importlib.metadata
import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from let_backends.codecarbon import EXTRA_COLUMNS, CodeCarbonBackend, explain
from let_backends.manual import ManualBackend
from let_core.errors import ConfigurationError
from let_core.records import Run
from let_core.schema import CODECARBON_COLUMNS, hardware_from_codecarbon
from let_core.tracker import EnergyTracker

CC_VERSION = importlib.metadata.version("codecarbon")
ROOT = Path(__file__).resolve().parents[1]
CORE_WRITTEN = {"timestamp", "run_id", "project_name", "experiment_id", "energy_consumed",
                "emissions", "duration"}


class Collect:
    name = "collect"

    def __init__(self) -> None:
        self.runs: list[Run] = []

    def report(self, run: Run) -> None:
        self.runs.append(run)


@pytest.fixture(scope="module")
def tracked(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One real tracked run with a task, in a clean working directory."""
    workdir = tmp_path_factory.mktemp("cwd")
    old = os.getcwd()
    os.chdir(workdir)
    collect = Collect()
    # Module-scoped, so set up before the per-test hermetic LET_HOME: its own, for the caches.
    patch = pytest.MonkeyPatch()
    patch.setenv("LET_HOME", str(tmp_path_factory.mktemp("let_home")))
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with EnergyTracker(project_name="cc-test", backends=["codecarbon"], reporters=[collect],
                               output_dir=workdir / "store", measure_power_secs=0.5) as tracker:
                busy(0.3)
                with tracker.task("phase"):
                    busy(0.6)
                busy(0.3)
            result = tracker.last_result
    finally:
        os.chdir(old)
        patch.undo()
    return {"runs": collect.runs, "result": result, "workdir": workdir,
            "warnings": [str(w.message) for w in caught]}


def busy(seconds: float) -> int:
    deadline, total = time.perf_counter() + seconds, 0
    while time.perf_counter() < deadline:
        total += sum(i * i for i in range(2_000))
    return total


def test_measurement_is_codecarbons_estimate(tracked: dict[str, Any]) -> None:
    run = next(r for r in tracked["runs"] if not r.task)
    (m,) = run.measurements
    assert m.ok, m.error
    assert m.backend == "codecarbon"
    assert m.methodology == f"CodeCarbon {CC_VERSION}"
    assert m.kind == "estimate"
    assert m.scope == "cpu+ram"  # no GPU on this machine: the estimate covers CPU and RAM
    assert m.energy_kwh > 0 and math.isfinite(m.energy_kwh)
    assert m.cpu_kwh is not None and m.gpu_kwh is not None and m.ram_kwh is not None
    assert m.cpu_kwh + m.gpu_kwh + m.ram_kwh == pytest.approx(m.energy_kwh, rel=1e-9)
    # The workload ran 1.2 s; the run's own clock also covers CodeCarbon's first start.
    assert 1.1 < m.duration_s <= run.duration_s + 0.1
    assert m.hardware == hardware_from_codecarbon(m.extras["cpu_model"], m.extras["gpu_model"])
    assert m.hardware


def test_extras_are_codecarbons_row_minus_what_the_core_writes(tracked: dict[str, Any]) -> None:
    run = next(r for r in tracked["runs"] if not r.task)
    extras = dict(run.measurements[0].extras)
    assert set(extras) <= set(CODECARBON_COLUMNS)
    assert not set(extras) & CORE_WRITTEN
    assert set(extras) == set(EXTRA_COLUMNS)
    assert extras["codecarbon_version"] == CC_VERSION
    assert extras["tracking_mode"] == "machine"
    assert extras["on_cloud"] == "N"
    assert extras["pue"] == 1.0
    assert extras["ram_power"] > 0
    assert extras["cpu_count"] == os.cpu_count()
    assert extras["ram_total_size"] > 0
    assert extras["os"] and extras["python_version"]


def test_task_is_part_of_the_run(tracked: dict[str, Any]) -> None:
    parent = next(r for r in tracked["runs"] if not r.task)
    task = next(r for r in tracked["runs"] if r.task == "phase")
    (m,) = task.measurements
    assert m.ok, m.error
    assert task.parent_run_id == parent.run_id
    assert 0 < m.energy_kwh < parent.measurements[0].energy_kwh
    assert m.cpu_kwh + m.gpu_kwh + m.ram_kwh == pytest.approx(m.energy_kwh, rel=1e-9)
    assert m.duration_s == pytest.approx(0.6, abs=0.5)
    # CodeCarbon's own start_task would have restarted the run's clock; LET's snapshots do not.
    assert parent.measurements[0].duration_s > m.duration_s + 0.4


def test_no_files_no_lock_no_noise(tracked: dict[str, Any]) -> None:
    workdir: Path = tracked["workdir"]
    assert not (workdir / "emissions.csv").exists()
    assert sorted(p.name for p in workdir.iterdir()) == ["store"] or not any(
        p.name.startswith("emissions") for p in workdir.iterdir())
    assert tracked["warnings"] == []


def test_result_dict_names_the_methodology(tracked: dict[str, Any]) -> None:
    result = tracked["result"]
    assert result["tracking_mode"] == f"CodeCarbon {CC_VERSION}"
    assert result["energy_consumed"] > 0
    assert result["emissions"] == pytest.approx(result["energy_consumed"] * 380.95 / 1000)


def test_second_tracker_reuses_the_hardware_probe(tracked: dict[str, Any], capfd: pytest.CaptureFixture[str]) -> None:
    from codecarbon.core.util import detect_cpu_model

    collect = Collect()
    for _ in range(2):
        with EnergyTracker(project_name="again", backends=["codecarbon"], reporters=[collect]):
            pass
    # py-cpuinfo's probe (a child Python sleeping a second) ran once in this process.
    assert detect_cpu_model.cache_info().misses == 1
    assert all(r.measurements[0].ok for r in collect.runs)
    out, err = capfd.readouterr()
    assert "codecarbon" not in (out + err).lower()


def test_store_row_keeps_codecarbon_columns(tmp_path: Path) -> None:
    with EnergyTracker(project_name="stored", backends=["codecarbon"], reporters=["csv"],
                       output_dir=tmp_path):
        pass
    with open(tmp_path / "emissions.csv", newline="") as handle:
        (row,) = list(csv.DictReader(handle))
    assert row["backend"] == "codecarbon"
    assert row["methodology"] == f"CodeCarbon {CC_VERSION}"
    assert row["codecarbon_version"] == CC_VERSION
    assert row["cpu_model"] and row["os"] and float(row["ram_power"]) > 0
    assert row["country_iso_code"] == "DEU"
    assert row["experiment_id"].startswith("stored___")


def test_pue_and_country_reach_codecarbon() -> None:
    collect = Collect()
    with EnergyTracker(project_name="pue", backends=["codecarbon"], reporters=[collect],
                       country_iso_code="FR", pue=1.5):
        busy(0.2)
    (m,) = collect.runs[0].measurements
    assert m.ok, m.error
    assert m.extras["pue"] == 1.5
    assert collect.runs[0].country_iso_code == "FRA"


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("kwargs, words", [
    ({"country_iso_code": "XXX"}, "lett countries"),
    ({"measure_power_secs": 0}, "measure_power_secs"),
    ({"measure_power_secs": -1}, "measure_power_secs"),
    ({"cuda_devices": ["nope"]}, "nvidia-smi -L"),
    ({"options": {"codecarbon": {"save_to_api": True}}}, "allowed"),
    ({"options": {"codecarbon": {"tracking_mode": "everything"}}}, "tracking_mode"),
    ({"options": {"codecarbon": {"force_cpu_power": "lots"}}}, "force_cpu_power"),
])
def test_bad_input_fails_at_construction(kwargs: dict[str, Any], words: str) -> None:
    with pytest.raises(ConfigurationError, match=words):
        EnergyTracker(backends=["codecarbon"], reporters=[], **kwargs)


def test_bad_input_imports_nothing_heavy() -> None:
    code = textwrap.dedent("""
        import sys
        from let_core.tracker import EnergyTracker
        try:
            EnergyTracker(backends=["codecarbon"], reporters=[], measure_power_secs=0)
        except ValueError:
            pass
        print(sorted(m for m in sys.modules if m.split(".")[0] in ("codecarbon", "pandas")))
    """)
    out = _python(code)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stderr


def test_import_is_cheap() -> None:
    code = ("import sys, let_core, lamarr_energy_tracker, let_backends.codecarbon\n"
            "from let_core.plugins import registry\n"
            "assert 'codecarbon' in registry().backends\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('codecarbon', 'pandas', 'cpuinfo', 'pynvml')))")
    out = _python(code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_codecarbon_is_first_in_auto() -> None:
    tracker = EnergyTracker(reporters=[])
    assert [b.name for b in tracker.backends][:1] == ["codecarbon"]


# ----------------------------------------------------------------------------- faults
def _python(code: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=full_env, cwd=cwd, timeout=300)


RUN_AND_REPORT = textwrap.dedent("""
    import json, warnings
    from let_core.tracker import EnergyTracker
    from let_backends.manual import ManualBackend
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with EnergyTracker(project_name="fault", reporters=["csv"],
                           backends=["codecarbon", ManualBackend(power_watts=10)]) as t:
            pass
    print(json.dumps({"warnings": [str(w.message) for w in caught],
                      "measurements": {k: v["error"] for k, v in t.last_result["measurements"].items()},
                      "energy": t.last_result["energy_consumed"]}))
""")


def test_broken_install_leaves_the_run_recorded(tmp_path: Path) -> None:
    broken = tmp_path / "site" / "codecarbon"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("raise ImportError('cannot import name Foo (simulated broken install)')\n")
    # Its data files are intact (the country lookup reads them without importing CodeCarbon).
    real = Path(importlib.util.find_spec("codecarbon").origin).parent
    shutil.copytree(real / "data" / "private_infra", broken / "data" / "private_infra")
    out = _python(RUN_AND_REPORT, env={"PYTHONPATH": str(tmp_path / "site"),
                                       "LET_HOME": str(tmp_path / "home")})
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert "pip install --force-reinstall" in report["measurements"]["codecarbon"]
    assert report["measurements"]["manual"] == ""
    assert report["energy"] > 0
    assert any("codecarbon" in w and "force-reinstall" in w for w in report["warnings"])
    with open(tmp_path / "home" / "emissions.csv", newline="") as handle:
        rows = {r["backend"]: r for r in csv.DictReader(handle)}
    assert set(rows) == {"codecarbon", "manual"}
    assert "force-reinstall" in rows["codecarbon"]["error"]


def test_stale_lock_and_codecarbon_config_cannot_stop_the_run(tmp_path: Path) -> None:
    """A stale /tmp/.codecarbon.lock of a killed process, a read-only temp dir, and a user config
    that asks CodeCarbon for the lock and for its own CSV: the run still records, nothing is written."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    (tmp / ".codecarbon.lock").write_text("")
    tmp.chmod(0o555)
    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / ".codecarbon.config").write_text(
        "[codecarbon]\nallow_multiple_runs = False\nsave_to_file = True\nlog_level = debug\n")
    try:
        out = _python(RUN_AND_REPORT, cwd=workdir,
                      env={"TMPDIR": str(tmp), "LET_HOME": str(tmp_path / "home"),
                           "CODECARBON_ALLOW_MULTIPLE_RUNS": "false",
                           "PYTHONPATH": str(ROOT)})
    finally:
        tmp.chmod(0o755)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["measurements"] == {"codecarbon": "", "manual": ""}
    assert report["warnings"] == []
    assert "codecarbon" not in out.stderr.lower()
    assert sorted(p.name for p in workdir.iterdir()) == [".codecarbon.config"]
    assert sorted(p.name for p in tmp.iterdir()) == [".codecarbon.lock"]


def test_failure_messages_say_what_to_do() -> None:
    import pynvml

    nvml = explain("stopping", pynvml.NVMLError(pynvml.NVML_ERROR_DRIVER_NOT_LOADED))
    assert "nvidia-smi" in nvml and "CUDA_VISIBLE_DEVICES" in nvml and f"CodeCarbon {CC_VERSION}" in nvml
    denied = explain("starting", PermissionError(13, "Permission denied",
                                                 "/sys/class/powercap/intel-rapl:0/energy_uj"))
    assert "/sys/class/powercap/intel-rapl:0/energy_uj" in denied and "chmod" in denied
    assert "force_cpu_power" in denied
    other = explain("starting", RuntimeError("boom"))
    assert "boom" in other and "log_level='debug'" in other


def test_stop_without_start_is_explained() -> None:
    backend = CodeCarbonBackend()
    with pytest.raises(Exception, match="without being started"):
        backend.stop()


def test_manual_backend_still_works_beside_it() -> None:
    # The core's "auto" picks CodeCarbon; an explicit object list keeps working beside it.
    tracker = EnergyTracker(backends=["codecarbon", ManualBackend(energy_kwh=1.0)], reporters=[])
    assert [b.name for b in tracker.backends] == ["codecarbon", "manual"]


# ----------------------------------------------------------------------------- lett detect
def test_let_detect_shows_what_codecarbon_would_measure(tracked: dict[str, Any]) -> None:
    from let_core import cli

    cli._load_plugin_commands()
    result = CliRunner().invoke(cli.cli, ["detect", "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    run = next(r for r in tracked["runs"] if not r.task)
    assert info["cpu_model"] == run.measurements[0].extras["cpu_model"]
    assert info["methodology"] == f"CodeCarbon {CC_VERSION}"
    assert info["cpu_mode"] in ("intel_rapl", "cpu_load", "constant")
    assert info["rapl_readable"] is (info["cpu_mode"] == "intel_rapl")
    assert info["gpu_count"] == 0 or info["gpu_model"]

    result = CliRunner().invoke(cli.cli, ["detect"])
    assert result.exit_code == 0, result.output
    assert "CPU method:" in result.output and "RAM:" in result.output


@pytest.mark.parametrize("method", ["start", "stop"])
def test_codecarbon_raising_inside_start_or_stop_is_a_recorded_failure(let_home: Path, monkeypatch: pytest.MonkeyPatch,
                                                                      method: str) -> None:
    import codecarbon

    from let_core.errors import LetWarning
    from let_core.results import load_results

    def broken(self: Any, *args: Any, **kwargs: Any) -> None:
        raise OSError(f"simulated failure in {method}")

    monkeypatch.setattr(codecarbon.OfflineEmissionsTracker, method, broken)
    with pytest.warns(LetWarning, match=f"failed to {method}"):
        with EnergyTracker(project_name="ccfail", reporters=[], measure_power_secs=0.5,
                           backends=["codecarbon", ManualBackend(energy_kwh=0.1)]) as tracker:
            pass
    result = tracker.stop()
    assert "simulated failure" in result["measurements"]["codecarbon"]["error"]
    assert result["energy_consumed"] == pytest.approx(0.1)  # the run is kept with the other backend
    row = load_results(project_name="ccfail").set_index("backend").loc["codecarbon"]
    assert "simulated failure" in row["error"] and math.isnan(row["energy_consumed"])
