"""EnergyTracker and @track_energy with the manual backend and the real central store."""

from __future__ import annotations

import asyncio
import csv
import inspect
import math
import re
from datetime import datetime, timezone

import pytest

from let_backends.manual import ManualBackend
from let_core import EnergyTracker, load_results, track_energy
from let_core.errors import BackendUnavailable, ConfigurationError, LetError, LetWarning, PluginError
from let_core.records import Measurement


def manual(watts: float = 3600.0, **kwargs) -> ManualBackend:
    return ManualBackend(power_watts=watts, hardware="Test CPU", **kwargs)


class Collector:
    name = "collector"

    def __init__(self) -> None:
        self.runs = []

    def report(self, run) -> None:
        self.runs.append(run)


class FailingBackend:
    name = "failing"

    def __init__(self, at: str) -> None:
        self.at = at

    def start(self) -> None:
        if self.at == "start":
            raise RuntimeError("no counters here")

    def stop(self) -> Measurement:
        raise RuntimeError("device vanished")


def test_context_manager_records_one_row_and_returns_the_result(let_home):
    with EnergyTracker(project_name="paper", backends=[manual()]) as tracker:
        sum(range(1000))
    result = tracker.stop()
    for key in ("timestamp", "start_time", "duration", "energy_consumed", "emissions",
                "tracking_mode", "run_id", "measurements"):
        assert key in result
    assert isinstance(result["timestamp"], datetime) and result["timestamp"].tzinfo == timezone.utc
    assert result["start_time"] <= result["timestamp"]
    assert result["duration"] > 0
    # 3600 W for `duration` seconds is `duration` Wh.
    assert result["energy_consumed"] == pytest.approx(result["measurements"]["manual"]["duration"] / 1000)
    assert result["emissions"] == pytest.approx(result["energy_consumed"] * 380.95 / 1000)
    frame = load_results(project_name="paper")
    assert len(frame) == 1
    row = frame.iloc[0]
    assert row["run_id"] == result["run_id"]
    assert row["backend"] == "manual" and row["kind"] == "estimate" and row["run_status"] == "ok"
    assert row["experiment_id"] == f"paper___{tracker.user}___{tracker.hostname}"
    assert row["energy_consumed"] == pytest.approx(result["energy_consumed"])


def test_stop_is_idempotent_and_a_tracker_can_run_again(let_home):
    tracker = EnergyTracker(project_name="p", backends=[manual()], reporters=["csv"])
    tracker.start()
    first = tracker.stop()
    assert tracker.stop() is first
    tracker.start()
    second = tracker.stop()
    assert second["run_id"] != first["run_id"]
    assert sorted(load_results()["run_id"]) == sorted([first["run_id"], second["run_id"]])


def test_run_ids_are_random_version_4_uuids():
    import uuid

    from let_core.tracker import new_run_id

    ids = [new_run_id() for _ in range(1000)]
    assert len(set(ids)) == len(ids)
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text and parsed.version == 4 and parsed.variant == uuid.RFC_4122
    # every bit outside the version and variant fields varies
    ored = anded = int(uuid.UUID(ids[0]))
    for text in ids[1:]:
        ored |= int(uuid.UUID(text))
        anded &= int(uuid.UUID(text))
    fixed = (0xF000 << 64) | (0xC000 << 48)
    assert ored | fixed == (1 << 128) - 1 and anded & ~fixed == 0


def test_stop_before_start_and_double_start_are_clear_errors():
    tracker = EnergyTracker(backends=[manual()], reporters=[])
    with pytest.raises(LetError, match="never started"):
        tracker.stop()
    tracker.start()
    with pytest.raises(LetError, match="already running"):
        tracker.start()
    tracker.stop()


def test_exception_in_block_is_recorded_as_failed_and_reraised(let_home):
    with pytest.raises(ZeroDivisionError):
        with EnergyTracker(project_name="p", backends=[manual()], reporters=["csv"]):
            1 / 0
    row = load_results().iloc[0]
    assert row["run_status"] == "failed"
    assert "ZeroDivisionError" in row["error"]
    assert row["energy_consumed"] > 0  # energy spent on a failed run still counts


@pytest.mark.parametrize("at", ["start", "stop"])
def test_failing_backend_is_a_warning_and_the_run_is_kept(let_home, at):
    with pytest.warns(LetWarning, match="failing"):
        with EnergyTracker(project_name="p", backends=[FailingBackend(at), manual()],
                           reporters=["csv"]) as tracker:
            pass
    result = tracker.stop()
    assert math.isnan(result["measurements"]["failing"]["energy_consumed"])
    assert "failed to " + at in result["measurements"]["failing"]["error"]
    assert result["energy_consumed"] > 0
    frame = load_results()
    assert set(frame["backend"]) == {"failing", "manual"}
    failing = frame[frame["backend"] == "failing"].iloc[0]
    assert "failed to " + at in failing["error"]


def test_failing_reporter_never_stops_the_store_or_the_result(let_home):
    class Broken:
        name = "broken"
        order = -1  # runs before the store

        def report(self, run):
            raise OSError("disk on fire")

    with pytest.warns(LetWarning, match="broken"):
        with EnergyTracker(backends=[manual()], reporters=[Broken(), "csv"]) as tracker:
            pass
    assert tracker.stop()["energy_consumed"] > 0
    assert len(load_results()) == 1


def test_unwritable_store_saves_a_rescue_file(tmp_path):
    blocked = tmp_path / "file-not-dir"
    blocked.write_text("x")
    with pytest.warns(LetWarning, match="saved to .*rescue-.*lett doctor --repair") as caught:
        with EnergyTracker(output_dir=blocked / "store", backends=[manual()], reporters=["csv"]) as tracker:
            pass
    assert tracker.stop()["energy_consumed"] > 0
    rescue = re.search(r"saved to (\S+\.csv)", str(caught[0].message)).group(1)
    assert [row["run_id"] for row in csv.DictReader(open(rescue))] == [tracker.stop()["run_id"]]


def test_names_and_objects_mix_and_unknown_names_fail_early(let_home):
    with EnergyTracker(backends=["manual", manual(kind="metered", methodology="wall meter", name="wall")],
                       options={"manual": {"energy_kwh": 0.5}}, reporters=["csv"]) as tracker:
        pass
    result = tracker.stop()
    assert result["measurements"]["manual"]["energy_consumed"] == 0.5
    assert result["measurements"]["wall"]["kind"] == "metered"
    assert result["energy_consumed"] == result["measurements"]["wall"]["energy_consumed"]  # metered leads
    assert sorted(load_results()["backend"]) == ["manual", "wall"]
    with pytest.raises(PluginError, match="unknown backend 'nope'.*lett plugins"):
        EnergyTracker(backends=["nope"])
    with pytest.raises(BackendUnavailable, match="needs a figure"):
        EnergyTracker(backends=["manual"])
    with pytest.raises(ConfigurationError, match="start\\(\\) and stop\\(\\)"):
        EnergyTracker(backends=[42])


def test_duplicate_backends_are_rejected():
    with pytest.raises(ConfigurationError, match="more than once"):
        EnergyTracker(backends=[manual(), manual()])


def test_backends_env_var_overrides_auto(monkeypatch):
    monkeypatch.setenv("LET_BACKENDS", "manual")
    with pytest.raises(BackendUnavailable):
        EnergyTracker()  # "manual" by name needs its figure: proves LET_BACKENDS was used


@pytest.mark.parametrize("kwargs, message", [
    ({"measure_power_secs": 0}, "measure_power_secs"),
    ({"measure_power_secs": -1}, "measure_power_secs"),
    ({"measure_power_secs": "soon"}, "measure_power_secs"),
    ({"country_iso_code": "XXX"}, "unknown country code 'XXX'"),
    ({"cuda_devices": ["nope"]}, "cuda_devices entry 'nope'"),
    ({"project_name": ""}, "project_name"),
    ({"project_name": "a___b"}, "___"),
    ({"carbon_intensity": -3}, "carbon_intensity"),
    ({"carbon_intensity": float("nan")}, "carbon_intensity"),
    ({"pue": 0.5}, "pue"),
    ({"log_level": "loud"}, "log_level"),
])
def test_bad_settings_fail_at_construction(kwargs, message):
    with pytest.raises(ConfigurationError, match=message):
        EnergyTracker(backends=[manual()], reporters=[], **kwargs)


@pytest.mark.parametrize("name, message", [
    ("paper\rv2", "control character"),
    ("paper\x00", "control character"),
    ("paper\x1b[31m", "control character"),
    ("paper\tv2", "control character"),
    ("p" * 201, "201 characters long, more than the 200"),
])
def test_names_the_store_would_alter_are_refused_at_construction(name, message, monkeypatch, let_home):
    # Stored altered (or unfindable by an exact filter), such a name would lose its runs.
    with pytest.raises(ConfigurationError, match=message):
        EnergyTracker(project_name=name, backends=[manual()], reporters=[])
    if "\x00" not in name:  # the environment cannot hold NUL
        monkeypatch.setenv("LET_HOSTNAME", name)
        with pytest.raises(ConfigurationError, match="host name .*LET_HOSTNAME"):
            EnergyTracker(project_name="fine", backends=[manual()], reporters=[])
        monkeypatch.delenv("LET_HOSTNAME")
    monkeypatch.setattr("getpass.getuser", lambda: name)
    with pytest.raises(ConfigurationError, match="user name"):
        EnergyTracker(project_name="fine", backends=[manual()], reporters=[])


def test_longest_allowed_name_is_stored_and_found_unchanged(let_home):
    name = "p" * 200
    with EnergyTracker(project_name=name, backends=[manual()], reporters=[]):
        pass
    assert len(load_results(let_home, project_name=name)) == 1


def test_carbon_intensity_override_and_alpha2_country(let_home):
    with EnergyTracker(backends=[manual()], reporters=[], carbon_intensity=100) as t:
        pass
    assert t.stop()["emissions"] == pytest.approx(t.stop()["energy_consumed"] * 0.1)
    assert EnergyTracker(backends=[manual()], reporters=[], country_iso_code="fr").settings.country_iso_code == "FRA"


def test_manual_backend_energy_and_bad_figures():
    backend = ManualBackend(energy_kwh=2.5, hardware="NVIDIA GTX 1080 GPU")
    backend.start()
    assert backend.stop().energy_kwh == 2.5
    for bad in (-1, float("nan"), "lots"):
        with pytest.raises(ConfigurationError):
            ManualBackend(energy_kwh=bad)
    with pytest.raises(ConfigurationError, match="exactly one"):
        ManualBackend(energy_kwh=1, power_watts=2)


def test_decorator_plain_keeps_signature_and_value(let_home):
    def plain(epochs: int, lr: float = 0.1) -> str:
        """Train."""
        return f"{epochs}:{lr}"

    train = track_energy(plain)
    assert train.__name__ == "plain" and train.__doc__ == "Train."
    assert inspect.signature(train) == inspect.signature(plain)
    assert train(3) == "3:0.1"
    frame = load_results()  # bare decorator: project "default", every "auto" backend
    assert len(frame) >= 1 and set(frame["project_name"]) == {"default"} and frame["run_id"].nunique() == 1


def test_decorator_with_options_records_each_call_and_metrics(let_home, tmp_path):
    collector = Collector()

    @track_energy(project_name="deco", backends=[manual()], reporters=["csv", collector],
                  output_dir=tmp_path / "store", metrics=lambda acc: {"accuracy": acc})
    def evaluate(x: float) -> float:
        return x

    assert evaluate(0.5) == 0.5
    assert evaluate(0.75) == 0.75
    assert [r.metrics["accuracy"] for r in collector.runs] == [0.5, 0.75]
    frame = load_results(tmp_path / "store", project_name="deco")
    assert len(frame) == 2 and frame["run_id"].nunique() == 2


def test_decorator_records_a_raising_call_as_failed(let_home):
    @track_energy(project_name="boom", backends=[manual()], reporters=["csv"])
    def explode() -> None:
        raise ValueError("bad batch")

    with pytest.raises(ValueError, match="bad batch"):
        explode()
    assert load_results(project_name="boom").iloc[0]["run_status"] == "failed"


def test_decorator_on_async_functions(let_home):
    @track_energy(project_name="async", backends=[manual()], reporters=["csv"])
    async def fetch(n: int) -> int:
        await asyncio.sleep(0.01)
        return n * 2

    assert inspect.iscoroutinefunction(fetch)
    assert asyncio.run(fetch(21)) == 42
    assert len(load_results(project_name="async")) == 1


def test_decorator_rejects_unknown_options_at_decoration():
    with pytest.raises(ConfigurationError, match="track_energy"):
        track_energy(projet_name="typo")


def test_tasks_are_linked_rows_that_the_statement_does_not_double_count(let_home):
    from let_core.statement import paper_statement

    with EnergyTracker(project_name="t", backends=[manual()]) as tracker:
        with tracker.task("epoch 1"):
            pass
        with tracker.task("epoch 2"):
            pass
    frame = load_results(project_name="t")
    tasks = frame[frame["task"] != ""]
    assert list(tasks["task"]) == ["epoch 1", "epoch 2"]
    assert set(tasks["parent_run_id"]) == {tracker.run_id}
    run_row = frame[frame["task"] == ""].iloc[0]
    text = paper_statement(project_name="t")
    from let_core.statement import format_energy

    assert f"estimated to {format_energy(run_row['energy_consumed'])}." in text


def test_metrics_and_params_are_validated_and_stored(let_home):
    with EnergyTracker(project_name="m", backends=[manual()], reporters=["csv"]) as tracker:
        tracker.log_metrics({"accuracy": 0.93})
        tracker.log_params({"model": "resnet18", "n_samples": 1000})
        with pytest.raises(ConfigurationError):
            tracker.log_metrics({"accuracy": "high"})
    row = load_results(project_name="m").iloc[0]
    assert '"accuracy": 0.93' in str(row["metrics"])
    assert '"model": "resnet18"' in str(row["params"])


def test_job_identifiers_are_recorded(let_home, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setenv("RANK", "3")
    with EnergyTracker(backends=[manual()], reporters=["csv"]):
        pass
    row = load_results().iloc[0]
    assert (row["job_id"], row["rank"]) == ("4242", "3")


def test_close_releases_backends_the_tracker_built_and_spares_the_callers(let_home, monkeypatch):
    closed = []

    class Closing(ManualBackend):
        def close(self) -> None:
            closed.append(self.name)

    # The registered "manual" plugin builds a Closing backend for this test.
    monkeypatch.setattr(ManualBackend, "from_settings",
                        classmethod(lambda cls, settings: Closing(energy_kwh=1.0, name="manual")))
    mine = Closing(energy_kwh=1.0, name="mine")
    tracker = EnergyTracker(backends=["manual", mine], options={"manual": {"energy_kwh": 1}}, reporters=[])
    tracker.start()
    tracker.close()
    assert tracker.last_result is not None  # the running run was stopped and kept
    assert closed == ["manual"]
    tracker.close()
    assert closed == ["manual"]  # once only


def test_task_error_paths(let_home):
    tracker = EnergyTracker(project_name="te", reporters=[], backends=[manual()])
    with pytest.raises(LetError, match="needs a running tracker"):
        with tracker.task("early"):
            pass
    with tracker:
        with pytest.raises(ConfigurationError, match="non-empty name"):
            with tracker.task(" "):
                pass
        with tracker.task("outer"):
            with pytest.raises(ConfigurationError, match="already running"):
                with tracker.task("outer"):
                    pass
        with pytest.raises(ZeroDivisionError):
            with tracker.task("crashing"):
                1 / 0
    frame = load_results(project_name="te")
    crashed = frame[frame["task"] == "crashing"].iloc[0]
    assert crashed["run_status"] == "failed" and "ZeroDivisionError" in crashed["error"]
    assert frame[frame["task"] == "outer"].iloc[0]["run_status"] == "ok"
    assert set(frame[frame["task"] == ""]["run_status"]) == {"ok"}  # the run itself went on


class _TaskBreaks:
    name = "breaks"

    def __init__(self, where: str) -> None:
        self.where = where

    def start(self) -> None:
        pass

    def stop(self) -> Measurement:
        return Measurement(backend=self.name, methodology="B", kind="estimate", energy_kwh=0.1, duration_s=1.0)

    def task_start(self, name: str) -> None:
        if self.where == "start":
            raise RuntimeError("counter unreadable")

    def task_stop(self, name: str) -> Measurement:
        if self.where == "stop":
            raise RuntimeError("counter gone")
        return Measurement(backend=self.name, methodology="B", kind="estimate", energy_kwh=-1.0, duration_s=1.0)


@pytest.mark.parametrize("where, message", [("start", "task failed to start: RuntimeError: counter unreadable"),
                                            ("stop", "task failed to stop: RuntimeError: counter gone"),
                                            ("never", "invalid measurement")])
def test_a_backend_failing_in_a_task_is_recorded_not_raised(let_home, where, message):
    import warnings

    with EnergyTracker(project_name="tb", reporters=[], backends=[_TaskBreaks(where)]) as tracker:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", LetWarning)
            with tracker.task("epoch"):
                pass
    task = load_results(project_name="tb").set_index("task").loc["epoch"]
    assert message in task["error"]
