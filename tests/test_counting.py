"""One counting truth: the totals cache (row by row) and the frame path (vectorised) agree on
random stores of every scope and coverage shape (the readers against an independent reference:
test_counting_property.py); and each defect of issue 9 stays fixed."""

from __future__ import annotations

import json
import math
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from let_backends.manual import ManualBackend
from let_core import dataset as dataset_module
from let_core._version import __version__
from let_core.cli import cli
from let_core.dataset import locate, write_run
from let_core.errors import ConfigurationError, LetError, LetWarning
from let_core.records import Measurement, Run
from let_core.results import aggregate, cached_totals, frame_totals, load_results
from let_core.results.cache import cache_path, read_saved
from let_core.results.counting import _FIELDS, AGGREGATE_COLUMNS, TOTALS_COLUMNS, Totals
from let_core.statement import custom_paper_statement, paper_statement, statement_from_totals
from let_core.store import STORE_FILE, Store
from let_core.tracker import EnergyTracker
from tests.launches import launched_together

START = datetime(2026, 1, 1, tzinfo=timezone.utc)

# Energies and durations are dyadic fractions and the intensity is 1000 g/kWh, so every sum is
# exact in binary floating point whatever the order: the paths must agree to the last bit.
energies = st.one_of(st.integers(0, 64).map(lambda n: n / 16), st.just(math.nan), st.just(-0.5))
scopes = st.sampled_from(["system", "cpu+ram", "cpu+gpu+ram", "gpu", "cpu", "ram"])
measurement = st.builds(
    lambda backend, kind, scope, energy, coverage, duration, failed: Measurement(
        backend=backend, methodology=f"M-{backend}", kind=kind, energy_kwh=energy, duration_s=duration,
        scope=scope, hardware=f"H-{backend}-{scope}", error="boom" if failed else "",
        coverage=coverage if kind == "metered" else None),
    backend=st.sampled_from(["a", "b", "c", "d"]), kind=st.sampled_from(["estimate", "metered"]),
    scope=scopes, energy=energies, coverage=st.sampled_from([None, 1.0, 0.75, 0.5, 0.25]),
    duration=st.integers(1, 80).map(lambda n: n / 8), failed=st.booleans())
run = st.fixed_dictionaries({
    "project": st.sampled_from(["p", "q", "r\x1fs"]), "user": st.sampled_from(["u", "v"]),
    "host": st.sampled_from(["h1", "h2"]), "job": st.sampled_from(["", "", "j1", "j2"]),
    "status": st.sampled_from(["ok", "ok", "failed"]),
    "measurements": st.lists(measurement, min_size=1, max_size=4, unique_by=lambda m: m.backend),
    "tasks": st.integers(0, 2),
})


def _rows(spec: dict, index: int) -> list[dict]:
    start = START + timedelta(minutes=index)
    environment = {"job_id": spec["job"], "rank": str(index % 3)} if spec["job"] else {}
    common = dict(project_name=spec["project"], user=spec["user"], hostname=spec["host"], start_time=start,
                  end_time=start + timedelta(seconds=10), status=spec["status"], country_iso_code="DEU",
                  country_name="Germany", carbon_intensity=1000.0, environment=environment)
    parent = Run(run_id=f"run-{index:05d}", measurements=tuple(spec["measurements"]), **common)
    rows = parent.rows(__version__)
    for task in range(spec["tasks"]):  # parts of a run never add to it
        rows += Run(run_id=f"task-{index:05d}-{task}", measurements=tuple(spec["measurements"]),
                    task=f"epoch{task}", parent_run_id=parent.run_id, **common).rows(__version__)
    return rows


def _same(a: Totals, b: Totals) -> None:
    for name in _FIELDS:
        assert getattr(a, name) == getattr(b, name), name


# 15 stores of up to 20 runs: each run draws from few choices (4 backends, 6 scopes, 2 kinds), so
# they hold every combination many times over; each example writes one Parquet file per run.
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(runs=st.lists(run, min_size=1, max_size=20))
def test_parquet_dataset_counts_as_the_store(runs: list[dict], tmp_path_factory: pytest.TempPathFactory) -> None:
    """The same runs in the Parquet dataset (one file per run, each with its own dictionaries
    of names and kinds, which the reader's codes must unify) count exactly as in the CSV store:
    whole, filtered by the scanner, and both sources together (deduplicated)."""
    folder = tmp_path_factory.mktemp("store")
    store, location = Store(folder), locate(folder / "dataset")
    for index, spec in enumerate(runs):
        store.append(_rows(spec, index))
    # The rows as the store holds them (it escapes control characters in names), run by run.
    stored = load_results(folder, dataset=str(folder / "none"), latest_only=False)
    for run_id in dict.fromkeys(stored["run_id"]):
        write_run(location, stored[stored["run_id"] == run_id].to_dict("records"))
    only_dataset = folder / "no-store"
    dataset = str(folder / "dataset")
    streamed = cached_totals(folder)
    _same(frame_totals(load_results(only_dataset, dataset=dataset, columns=TOTALS_COLUMNS)), streamed)
    _same(frame_totals(load_results(only_dataset, dataset=dataset)), streamed)  # every column read
    _same(frame_totals(load_results(folder, dataset=dataset, columns=TOTALS_COLUMNS)), streamed)  # both
    with pytest.MonkeyPatch.context() as patch:  # many one-run files: read the plain way
        patch.setattr(dataset_module, "SMALL_FILES_PLAIN", 0)
        _same(frame_totals(load_results(only_dataset, dataset=dataset, columns=TOTALS_COLUMNS)), streamed)
    filters = [(project, None) for project in sorted(set(stored["project_name"]))] + [(None, "v"), ("q", "u")]
    for project, user in filters:
        _same(frame_totals(load_results(only_dataset, project, user, dataset=dataset, columns=TOTALS_COLUMNS)),
              cached_totals(folder, project_name=project, user=user))
    frame = load_results(only_dataset, dataset=dataset, columns=AGGREGATE_COLUMNS)
    by_host = aggregate(frame, "host")
    assert by_host["kwh"].sum() == streamed.energy_kwh and by_host["runs"].sum() == streamed.runs
    if not streamed.empty:
        assert paper_statement(only_dataset, dataset=dataset) == paper_statement(folder, dataset=str(folder / "none"))


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(runs=st.lists(run, min_size=1, max_size=20))
def test_cache_after_every_append_counts_exactly(runs: list[dict], tmp_path_factory: pytest.TempPathFactory) -> None:
    """After every append the cached totals are the frame totals, and the cache file never
    covers bytes the store does not hold."""
    folder = tmp_path_factory.mktemp("store")
    store = Store(folder)
    for index, spec in enumerate(runs):
        store.append(_rows(spec, index))
        _same(cached_totals(folder), frame_totals(load_results(folder, dataset=str(folder / "none"))))
        covered = read_saved(cache_path(store))[0]["offset"]
        assert covered <= store.path.stat().st_size


def test_blank_energy_warning_is_given_once_though_small_tails_are_not_saved(let_home: Path) -> None:
    import warnings as warnings_module

    _track("w", backends=[ManualBackend(energy_kwh=0.5)])
    assert cached_totals().energy_kwh == 0.5  # the cache now covers the first run
    blank = dict(_rows({"project": "w", "user": "u", "host": "h", "job": "", "status": "ok", "tasks": 0,
                        "measurements": [Measurement(backend="a", methodology="M", kind="estimate",
                                                     energy_kwh=0.25, duration_s=1.0)]}, 1)[0])
    blank["energy_consumed"] = ""
    Store().append([blank])
    with pytest.warns(LetWarning, match="no usable energy_consumed"):
        assert cached_totals().energy_kwh == 0.5
    with warnings_module.catch_warnings():
        warnings_module.simplefilter("error")
        assert cached_totals().energy_kwh == 0.5  # counted from the cache: no second warning


# ----------------------------------------------------------------------------- issue 9, one by one
def _track(project: str = "p", reporters=("csv",), **kwargs) -> dict:
    with EnergyTracker(project_name=project, reporters=list(reporters), **kwargs) as tracker:
        pass
    return tracker.stop()


def test_store_is_written_whatever_the_reporters(let_home: Path, capsys: pytest.CaptureFixture) -> None:
    _track(reporters=[], backends=[ManualBackend(energy_kwh=0.5)])
    _track(reporters=["statement"], backends=[ManualBackend(energy_kwh=0.25)])
    assert len(load_results()) == 2
    out = capsys.readouterr().out
    assert "is estimated to 0.750 kWh" in out  # the statement reporter saw both runs


def test_reporters_do_not_depend_on_their_order(let_home: Path, capsys: pytest.CaptureFixture) -> None:
    from let_reporters.statement import StatementReporter

    class Early(StatementReporter):
        order = -10  # before everything, "csv" included

    settings = EnergyTracker(project_name="o", backends=[ManualBackend(energy_kwh=0.5)]).settings
    _track("o", reporters=[Early(settings)], backends=[ManualBackend(energy_kwh=0.5)])
    assert "is estimated to 0.500 kWh" in capsys.readouterr().out


def test_print_summary_false_silences_printing_reporters_by_attribute(let_home: Path, capsys) -> None:
    class Quiet:
        name = "my-printer"  # not called "statement"
        prints = True

        def report(self, run: Run) -> None:
            print("PRINTED")

    tracker = EnergyTracker(project_name="q", reporters=[Quiet()], backends=[ManualBackend(energy_kwh=0.1)])
    tracker.start()
    tracker.stop(print_summary=False)
    assert "PRINTED" not in capsys.readouterr().out
    assert len(load_results()) == 1


def test_ranks_measured_both_ways_agree_on_every_path(let_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLURM_JOB_ID", "99")
    for rank in range(4):
        monkeypatch.setenv("RANK", str(rank))
        _track("job", backends=[ManualBackend(energy_kwh=1.0, name="cc", hardware="Xeon"),
                                ManualBackend(energy_kwh=1.5, kind="metered", name="socket", hardware="box",
                                              methodology="Tasmota smart socket")])
    launched_together(let_home / STORE_FILE, "99")
    cached, framed = cached_totals(project_name="job"), frame_totals(load_results(project_name="job"))
    _same(cached, framed)
    assert cached.energy_kwh == pytest.approx(1.5) and cached.paired_runs == 4
    assert statement_from_totals(cached) == statement_from_totals(framed)
    assert "the 4 runs measured both ways" in statement_from_totals(cached)


def test_statement_reads_the_dataset_like_load_results(let_home: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    dataset = tmp_path / "shared"
    monkeypatch.setenv("LET_DATASET", str(dataset))
    _track("ds", reporters=["parquet"], backends=[ManualBackend(energy_kwh=0.2)])
    Store().path.unlink()  # only the dataset holds the run now
    assert len(load_results(project_name="ds")) == 1
    assert "estimated to 0.200 kWh" in paper_statement(project_name="ds")
    monkeypatch.delenv("LET_DATASET")
    assert "estimated to 0.200 kWh" in paper_statement(project_name="ds", dataset=str(dataset))
    assert "estimated to 0.200 kWh" in paper_statement(f"file://{let_home}", project_name="ds",
                                                       dataset=str(dataset))
    result = CliRunner().invoke(cli, ["statement", "--project", "ds", "--dataset", str(dataset)])
    assert result.exit_code == 0 and "0.200 kWh" in result.output
    missing = CliRunner().invoke(cli, ["statement", "--project", "nope"])
    assert missing.exit_code == 1 and str(let_home / STORE_FILE) in missing.output


def _numbers(text: str) -> tuple[float, float, float]:
    """Energy (kWh), emissions (g) and intensity as printed in the first sentence."""
    scale = {"mWh": 1e-6, "Wh": 1e-3, "kWh": 1.0, "MWh": 1e3, "GWh": 1e6, "mg": 1e-3, "g": 1.0, "kg": 1e3,
             "t": 1e6}
    energy = re.search(r"(?:estimated to|measured as|amounts to) ([\d.]+) (\w+)", text)
    mass = re.search(r"emissions of ([\d.]+) (\w+) of CO2", text)
    intensity = re.search(r"carbon intensity of ([\d.]+) gCO2/kWh", text)
    assert energy and mass and intensity, text
    return (float(energy[1]) * scale[energy[2]], float(mass[1]) * scale[mass[2]], float(intensity[1]))


@pytest.mark.parametrize("kwh", [1000.0, 0.012, 0.0001, 1.22e-06, 3.2, 0.135])
def test_statement_numbers_recompute(let_home: Path, kwh: float) -> None:
    _track(f"n{kwh}", backends=[ManualBackend(energy_kwh=kwh)])
    text = paper_statement(project_name=f"n{kwh}")
    assert "e-" not in text and "e+" not in text
    energy, grams, intensity = _numbers(text)
    assert intensity == 381  # Germany's 380.95, printed as used, rounded like the figures
    assert grams == pytest.approx(energy * intensity, rel=4e-3)  # within the printed roundings
    assert energy == pytest.approx(kwh, rel=5e-3)


def test_units_keep_three_significant_digits() -> None:
    from let_core.statement import format_emissions, format_energy

    assert format_energy(0.0001) == "0.100 Wh"
    assert format_energy(1.22e-06) == "1.220 mWh"
    assert format_energy(3.2) == "3.200 kWh" and format_energy(0.135) == "0.135 kWh"
    assert format_energy(1000) == "1.000 MWh"
    assert format_emissions(1216) == "1.216 kg" and format_emissions(0.038) == "38.000 mg"
    assert custom_paper_statement("the CO2 Impact Calculator", "NVIDIA GTX 1080 GPU", 3.2,
                                  carbon_intensity=380).count("1.216 kg") == 1


def test_gpu_figure_beside_a_cpu_estimate_is_added_and_both_named(let_home: Path) -> None:
    result = _track("gpu", backends=["codecarbon", ManualBackend(power_watts=250, hardware="NVIDIA GTX 1080 GPU")],
                    measure_power_secs=0.5)
    cc, gpu = result["measurements"]["codecarbon"], result["measurements"]["manual"]
    assert cc["scope"] == "cpu+ram" and gpu["scope"] == "gpu"  # no GPU here: CodeCarbon covers CPU+RAM
    assert result["energy_consumed"] == pytest.approx(cc["energy_consumed"] + gpu["energy_consumed"])
    text = paper_statement(project_name="gpu")
    assert "NVIDIA GTX 1080 GPU" in text and cc["hardware"] in text
    assert "the Machine Learning CO2 Impact Calculator" in text and "ml_co2_impact" in text
    assert "codecarbon" in text


def test_wording_follows_the_kind_and_articles_fit(let_home: Path) -> None:
    _track("known", backends=[ManualBackend(energy_kwh=0.3, hardware="my workstation")])
    text = paper_statement(project_name="known")
    assert "Using a known energy figure" in text and "on my workstation" in text
    assert "ml_co2_impact" not in text  # nothing to cite for a figure someone knew
    meter = custom_paper_statement("a Voltcraft wattmeter", "8x A100", 2.0)
    assert "was measured as 2.000 kWh" in meter and "on 8x A100" in meter
    assert "estimated" not in meter and "underestimations" not in meter
    forced = custom_paper_statement("a Voltcraft wattmeter", "an old laptop", 2.0, kind="estimate")
    assert "is estimated to" in forced and "on an old laptop" in forced
    assert "on an Intel" in custom_paper_statement("x", "Intel Xeon", 1.0)


def test_metrics_after_stop_are_an_error_not_lost(let_home: Path) -> None:
    tracker = EnergyTracker(project_name="m", reporters=[], backends=[ManualBackend(energy_kwh=0.1)])
    tracker.start()
    tracker.stop()
    with pytest.raises(LetError, match="after stop"):
        tracker.log_metrics({"acc": 0.9})
    with pytest.raises(LetError, match="after stop"):
        tracker.log_params({"model": "x"})
    tracker.start()  # a new run accepts them again
    tracker.log_metrics({"acc": 0.9})
    tracker.stop()
    assert load_results()["metrics.acc"].dropna().tolist() == [0.9]


class _Bad:
    """A third-party backend returning whatever it is given."""

    def __init__(self, value, name: str = "bad") -> None:
        self.value, self.name = value, name

    def start(self) -> None:
        pass

    def stop(self) -> Measurement:
        return Measurement(backend=self.name, methodology="Bad 1.0", kind="estimate", energy_kwh=self.value,
                           duration_s=1.0)


@pytest.mark.parametrize("value", [-5.0, math.nan, math.inf, 1e308, "3.2"])
def test_measurements_are_validated_by_the_core(let_home: Path, value) -> None:
    with pytest.warns(LetWarning, match="invalid measurement"):
        result = _track("v", reporters=[], backends=[_Bad(value), ManualBackend(energy_kwh=0.1)])
    assert "invalid measurement" in result["measurements"]["bad"]["error"]
    assert result["energy_consumed"] == pytest.approx(0.1)
    stored = load_results(project_name="v")
    assert stored.set_index("backend").loc["bad", "error"].startswith("invalid measurement")
    assert cached_totals(project_name="v").energy_kwh == pytest.approx(0.1)


class _Partial(_Bad):
    def __init__(self, coverage: float) -> None:
        super().__init__(0.3, "socket")
        self.coverage = coverage

    def stop(self) -> Measurement:
        return Measurement(backend="socket", methodology="Tasmota smart socket", kind="metered", energy_kwh=0.3,
                           duration_s=6.0, scope="system", hardware="ws28", coverage=self.coverage,
                           gap_count=1, gap_seconds=6.0 * (1 - self.coverage))


def test_partial_coverage_is_said_and_low_coverage_is_not_called_metered(let_home: Path) -> None:
    with pytest.warns(LetWarning, match="metered only 67% of the run"):
        _track("cov", reporters=[], backends=[ManualBackend(energy_kwh=0.2, name="cc"), _Partial(0.67)])
    text = paper_statement(project_name="cov")
    assert "was measured as 0.300 kWh (metered for 67% of the run, the rest interpolated)" in text
    with pytest.warns(LetWarning, match="not presented as metered"):
        _track("low", reporters=[], backends=[ManualBackend(energy_kwh=0.2, name="cc"), _Partial(0.3)])
    low = paper_statement(project_name="low")
    assert "is estimated to 0.200 kWh" in low and "measured as" not in low
    assert "covered less than half of the run" in low
    table = CliRunner().invoke(cli, ["results", "--project", "cov"])
    assert table.exit_code == 0, table.exception
    table = table.output
    assert "67%" in table


def test_checkpoint_rows_count_once_with_the_last(let_home: Path, tmp_path: Path) -> None:
    header = "timestamp,project_name,run_id,duration,emissions,energy_consumed,codecarbon_version\n"
    rows = "".join(f"2024-05-0{i}T10:00:00,codecarbon,r1,{i * 60},{i * 0.001},{i * 0.01},2.3.4\n"
                   for i in range(1, 5))
    (tmp_path / "cc.csv").write_text(header + rows + "2024-05-09T10:00:00,codecarbon,r2,30,0.0005,0.005,2.3.4\n")
    report = CliRunner().invoke(cli, ["merge", str(tmp_path / "cc.csv"), "--into", str(let_home)])
    assert "2 added" in report.output and "3 earlier checkpoint row(s)" in report.output
    again = CliRunner().invoke(cli, ["merge", str(tmp_path / "cc.csv"), "--into", str(let_home)])
    assert "0 added, 2 already in the store" in again.output
    assert cached_totals().energy_kwh == pytest.approx(0.045)
    Store().append([{"run_id": "r1", "backend": "codecarbon", "kind": "estimate", "energy_consumed": 0.02,
                     "duration": 120, "project_name": "codecarbon"}])  # an older checkpoint, stored later
    assert sorted(load_results()["energy_consumed"]) == pytest.approx([0.005, 0.04])
    assert len(load_results(latest_only=False)) == 3


def test_results_by_backend_total_is_the_counted_total(let_home: Path) -> None:
    _track("b", backends=[ManualBackend(energy_kwh=1.0, name="cc"),
                          ManualBackend(energy_kwh=1.3, kind="metered", name="socket")])
    output = CliRunner().invoke(cli, ["results", "--by", "backend"]).output
    total = [line for line in output.splitlines() if line.startswith("total")][0]
    assert "total (each run once)" in total and "1.300 kWh" in total and "2.300 kWh" not in output
    assert "overlap" in output


def test_cache_proves_it_belongs_to_the_file(let_home: Path, tmp_path: Path) -> None:
    for _ in range(2):
        _track("c", backends=[ManualBackend(energy_kwh=5.0)])
    assert cached_totals().energy_kwh == 10.0
    cache = cache_path(Store())
    assert cache.parent == let_home / "cache" and cache.exists()
    path = Store().path
    backup = path.read_bytes()
    # Deleted and recreated (ext4 reuses the inode): the same size, other runs.
    path.unlink()
    path.write_bytes(backup.replace(b"5.0", b"1.0"))
    assert cached_totals().energy_kwh == 2.0
    # A backup restored in place: fewer bytes than the cache covered.
    _track("c", backends=[ManualBackend(energy_kwh=1.0)])
    assert cached_totals().energy_kwh == 3.0
    path.write_bytes(backup)
    assert cached_totals().energy_kwh == 10.0
    # A cache with the wrong types, or not JSON at all, is rebuilt, never a TypeError.
    data, index = read_saved(cache)
    data["groups"][0][1]["sums"]["energy_kwh"] = "lots"
    cache.write_bytes(json.dumps(data).encode() + b"\n" + index)
    assert cached_totals().energy_kwh == 10.0
    data, index = read_saved(cache)  # (rebuilt) an index cut short, or of another cache
    for damaged in (index[:-1], index[::-1] + b"\0\0\0\0"):
        cache.write_bytes(json.dumps(data).encode() + b"\n" + damaged)
        assert cached_totals().energy_kwh == 10.0
    cache.write_text("[1, 2")
    assert cached_totals().energy_kwh == 10.0


def test_nothing_but_emissions_csv_in_a_users_output_dir(let_home: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    _track("o", output_dir=str(out), reporters=["statement"], backends=[ManualBackend(energy_kwh=0.1)])
    paper_statement(out)
    assert sorted(p.name for p in out.iterdir()) == [STORE_FILE]


def test_times_are_timezone_aware(let_home: Path) -> None:
    _track("t", backends=[ManualBackend(energy_kwh=0.1)])
    frame = load_results()
    for column in ("timestamp", "start_time"):
        assert str(frame[column].dt.tz) == "UTC"
    assert str(load_results(project_name="none")["timestamp"].dtype) == "datetime64[ns, UTC]"


def test_country_and_intensity_from_the_environment(let_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LET_COUNTRY", "FRA")
    tracker = EnergyTracker(project_name="env", reporters=[], backends=[ManualBackend(energy_kwh=0.1)])
    assert tracker.settings.country_iso_code == "FRA"
    monkeypatch.setenv("LET_CARBON_INTENSITY", "123.5")
    assert EnergyTracker(project_name="env", reporters=[],
                         backends=[ManualBackend(energy_kwh=0.1)]).settings.carbon_intensity == 123.5
    assert EnergyTracker(project_name="env", reporters=[], carbon_intensity=50,
                         backends=[ManualBackend(energy_kwh=0.1)]).settings.carbon_intensity == 50
    monkeypatch.setenv("LET_CARBON_INTENSITY", "a lot")
    with pytest.raises(ConfigurationError, match="LET_CARBON_INTENSITY"):
        EnergyTracker(project_name="env", reporters=[], backends=[ManualBackend(energy_kwh=0.1)])


def test_third_party_backend_declares_its_phrase_and_citation(let_home: Path) -> None:
    from let_core.plugins import registry
    from let_core.statement import bibtex, cited_keys

    class Wattson:
        name = "wattson"
        auto = False
        description = "a lab power meter"
        statement_phrases = {"Wattson 2": "Wattson power meters at the wall"}
        citations = {"wattson": "@misc{wattson, title = {Wattson}}"}

    registry().backends["wattson"] = type(registry().backends["manual"])(
        name="wattson", kind="backend", factory=Wattson, plugin="test", source="test")
    try:
        _track("w", backends=[ManualBackend(energy_kwh=0.4, kind="metered", methodology="Wattson 2",
                                            name="wattson", hardware="rig")])
        text = paper_statement(project_name="w")
        assert text.startswith("Using Wattson power meters at the wall,")
        assert "wattson" in cited_keys(text) and "@misc{wattson" in bibtex(cited_keys(text))
    finally:
        del registry().backends["wattson"]


def test_a_fifo_where_the_cache_should_be_is_no_cache_and_no_hang(let_home: Path) -> None:
    import os
    import stat

    for _ in range(3):
        _track("f", backends=[ManualBackend(energy_kwh=0.1)])
    assert cached_totals().energy_kwh == pytest.approx(0.3)
    path = cache_path(Store())
    path.unlink()
    os.mkfifo(path)  # opened for reading, it would block every statement until a writer came
    assert cached_totals().energy_kwh == pytest.approx(0.3)
    assert stat.S_ISREG(os.lstat(path).st_mode)  # replaced by a cache file
    with EnergyTracker(project_name="f", backends=[ManualBackend(energy_kwh=0.1)], reporters=["statement"]):
        pass
