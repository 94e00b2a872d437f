"""The property of issue 19: on generated stores every reader prints the same numbers as an
independent reference written here in plain Python (no LET code): the statement at stop (the
totals cache, called after every append), the cold statement (frame), `let results --by
project|job`.

Stores hold interleaved CodeCarbon checkpoints, CodeCarbon task rows, jobs with ranks of one
launch and with sequential runs of one allocation, runs metered and estimated, failed runs,
edits of stored energies between appends (the file rewritten: a truncate-and-regrow), stray
quotes put into a stored line by hand (the line is lost, never the lines after it), and rows an
older CodeCarbon appended, short of the header's trailing fields (rows all the same).
"""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from let_core._version import __version__
from let_core.cli import cli
from let_core.errors import StoreError
from let_core.records import Measurement, Run
from let_core.results import cached_totals, frame_totals, load_results
from let_core.results.counting import TOTALS_COLUMNS
from let_core.store import Store

START = datetime(2026, 1, 1, tzinfo=timezone.utc)
energy = st.integers(0, 32).map(lambda n: n / 16)  # dyadic: sums are exact in any order

let_run = st.fixed_dictionaries({
    "type": st.just("let"), "project": st.sampled_from(["p", "q"]), "estimate": energy,
    "metered": st.one_of(st.none(), energy), "failed": st.booleans(),
    "job": st.sampled_from([None, None, ("j1", 0), ("j1", 0), ("j1", 1), ("j2", 0)]),
})
codecarbon_run = st.fixed_dictionaries({
    "type": st.just("codecarbon"), "project": st.sampled_from(["p", "q"]),
    "checkpoints": st.lists(energy, min_size=1, max_size=3), "tasks": st.integers(0, 2),
})
edit = st.fixed_dictionaries({"type": st.just("edit"), "which": st.integers(0, 50), "energy": energy})
# A hand edit that opens a quote at the start of one stored line's field and never closes it.
stray_quote = st.fixed_dictionaries({"type": st.just("quote"), "which": st.integers(0, 50),
                                     "field": st.sampled_from(["hardware", "methodology", "user"])})
# A CodeCarbon run appended by a tool that writes only the fields it knows (no trailing blanks).
short_run = st.fixed_dictionaries({"type": st.just("short"), "project": st.sampled_from(["p", "q"]),
                                   "checkpoints": st.lists(energy, min_size=1, max_size=3)})
events = st.lists(st.one_of(let_run, let_run, codecarbon_run, edit, stray_quote, short_run), min_size=1, max_size=14)


def _reference(runs: list[dict]) -> tuple[dict[str, float], dict[str, float]]:
    """kWh per project and per job ("" for runs outside jobs), from the generated runs alone."""
    per_project: dict[str, float] = {}
    per_job: dict[str, float] = {}
    launches: dict[tuple, float] = {}
    for spec in runs:
        if spec.get("damaged"):
            continue  # its line holds a quote that never closes: not a row (and only it is lost)
        if spec["type"] == "short":
            value = max(spec["checkpoints"])
            per_project[spec["project"]] = per_project.get(spec["project"], 0.0) + value
            per_job[""] = per_job.get("", 0.0) + value
            continue
        if spec["type"] == "codecarbon":
            # each task's (or the run's) latest stored checkpoint: checkpoints are cumulative
            value = sum(max(stored) for stored in spec["stored"] if stored)
            per_project[spec["project"]] = per_project.get(spec["project"], 0.0) + value
            per_job[""] = per_job.get("", 0.0) + value
            continue
        if spec["failed"] or spec.get("refused"):
            continue
        value = spec["metered"] if spec["metered"] is not None else spec["estimate"]
        if spec["job"] is None:
            per_project[spec["project"]] = per_project.get(spec["project"], 0.0) + value
            per_job[""] = per_job.get("", 0.0) + value
        else:  # ranks of one launch: the launch counts its largest figure
            key = (spec["project"], spec["job"][0], spec["job"][1])
            launches[key] = max(launches.get(key, 0.0), value)
    for (project, job, _), value in launches.items():
        per_project[project] = per_project.get(project, 0.0) + value
        per_job[job] = per_job.get(job, 0.0) + value
    return per_project, per_job


def _let_rows(spec: dict, index: int) -> list[dict]:
    if spec["job"] is None:
        start = START + timedelta(hours=index)
        environment: dict[str, str] = {}
    else:  # ranks of one launch share its interval; launches of one allocation follow each other
        job, launch = spec["job"]
        start = START + timedelta(days=1 + launch, hours=int(job[1:]))
        environment = {"job_id": job, "rank": str(index)}
    measurements = [Measurement(backend="cc", methodology="CodeCarbon", kind="estimate",
                                energy_kwh=spec["estimate"], duration_s=60, scope="system", hardware="CPU")]
    if spec["metered"] is not None:
        measurements.append(Measurement(backend="socket", methodology="Tasmota smart socket", kind="metered",
                                        energy_kwh=spec["metered"], duration_s=60, scope="system",
                                        hardware="CPU", coverage=1.0))
    if spec["failed"]:
        measurements = [Measurement.failed("cc", "boom", methodology="CodeCarbon")]
    run = Run(run_id=f"run-{index:04d}", project_name=spec["project"], user="u", hostname="h",
              start_time=start, end_time=start + timedelta(seconds=60), status="failed" if spec["failed"] else "ok",
              measurements=tuple(measurements), country_iso_code="DEU", country_name="Germany",
              carbon_intensity=1000.0, environment=environment)
    return run.rows(__version__)


def _codecarbon_rows(spec: dict, index: int) -> list[tuple[list[float], list[dict]]]:
    """Per task (or for the run): where its stored values go, and its cumulative checkpoint
    rows, to be interleaved."""
    tasks = [f"task{t}" for t in range(spec["tasks"])] or [""]
    spec["stored"] = []
    result = []
    for offset, task in enumerate(tasks):
        values = sorted(v + offset for v in spec["checkpoints"])
        spec["stored"].append([])
        result.append((spec["stored"][-1], [
            {"timestamp": (START + timedelta(hours=index, seconds=10 * k)).isoformat(),
             "project_name": "codecarbon", "run_id": f"cc-{index:04d}",
             "experiment_id": f"{spec['project']}___u___h", "duration": 10.0 * (k + 1),
             "emissions": value, "energy_consumed": value, "codecarbon_version": "2.3.4",
             "country_iso_code": "DEU", "task_name": task}
            for k, value in enumerate(values)]))
    return result


def _append(store: Store, rows: list[dict]) -> bool:
    """Append; False where the store refused it. A store holding a damaged line is not
    migrated to a wider header (those lines would be lost): the run goes to a rescue file, and
    the error says where and what to do."""
    try:
        store.append(rows)
    except StoreError as exc:
        assert "lett doctor --repair" in str(exc) and "saved to" in str(exc), exc
        rescued = Path(str(exc).split("saved to ", 1)[1].split(";", 1)[0])
        assert rescued.is_file()
        return False
    return True


def _editable(runs: list[dict]) -> list[dict]:
    """Stored LET estimates (one row each: not a job's, not failed, not measured, not damaged)."""
    return [r for r in runs if r["type"] == "let" and not r["failed"] and r["metered"] is None
            and r["job"] is None and not r.get("damaged")]


def _rewrite_line(path: Path, run_id: str, change) -> None:
    """Rewrite the one stored line of ``run_id``, by hand as it were: the file is read line by
    line (a line damaged before must not take the others with it) and written back whole."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    header = next(csv.reader([lines[0]]))
    for number, line in enumerate(lines[1:], start=1):
        fields = next(csv.reader([line]))
        if len(fields) == len(header) and fields[header.index("run_id")] == run_id:
            lines[number] = change(header, fields)
    path.write_text("".join(lines), encoding="utf-8")


def _line(fields: list[str]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(fields)
    return out.getvalue()


def _edit(path: Path, spec: dict, runs: list[dict]) -> None:
    """Rewrite one stored LET estimate's energy in the file."""
    editable = _editable(runs)
    if not editable:
        return
    target = editable[spec["which"] % len(editable)]

    def change(header: list[str], fields: list[str]) -> str:
        for column in ("energy_consumed", "emissions"):
            fields[header.index(column)] = repr(spec["energy"])
        return _line(fields)

    _rewrite_line(path, target["run_id"], change)
    target["estimate"] = spec["energy"]


def _stray_quote(path: Path, spec: dict, runs: list[dict]) -> None:
    """Open a quote at the start of one field of a stored LET estimate's line, never closed."""
    editable = _editable(runs)
    if not editable:
        return
    target = editable[spec["which"] % len(editable)]

    def change(header: list[str], fields: list[str]) -> str:
        # Fields that need no quoting, joined by hand: a csv writer would escape the quote.
        assert not any(c in f for f in fields for c in ',"\n\r'), "generated fields need no quoting"
        fields[header.index(spec["field"])] = '"' + fields[header.index(spec["field"])]
        return ",".join(fields) + "\n"

    _rewrite_line(path, target["run_id"], change)
    target["damaged"] = True


def _append_short(path: Path, spec: dict, index: int) -> None:
    """Checkpoint rows of a CodeCarbon run, each line ending after its last non-empty field."""
    header = next(csv.reader([path.read_text(encoding="utf-8").split("\n", 1)[0]]))
    with open(path, "a", encoding="utf-8") as handle:
        for k, value in enumerate(sorted(spec["checkpoints"])):
            row = {"timestamp": (START + timedelta(hours=index, seconds=10 * k)).isoformat(),
                   "project_name": "codecarbon", "run_id": f"short-{index:04d}",
                   "experiment_id": f"{spec['project']}___u___h", "duration": str(10.0 * (k + 1)),
                   "emissions": str(value), "energy_consumed": str(value), "codecarbon_version": "2.2.0",
                   "country_iso_code": "DEU"}
            fields = [row.get(column, "") for column in header]
            while fields and not fields[-1]:
                fields.pop()
            handle.write(_line(fields))


# 40 scripts of events (each reads the store after every append): the costliest agreement test.
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(script=events, interleave=st.randoms(use_true_random=False))
def test_every_reader_counts_as_the_reference(script: list[dict], interleave, tmp_path_factory,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path_factory.mktemp("let_home")
    monkeypatch.setenv("LET_HOME", str(home))
    store = Store()
    runs: list[dict] = []
    pending: list[list[dict]] = []  # CodeCarbon checkpoint rows not yet written, by task
    for index, event in enumerate(script):
        event = dict(event)
        if event["type"] == "edit":
            if store.path.exists():
                _edit(store.path, event, runs)
        elif event["type"] == "quote":
            if store.path.exists():
                _stray_quote(store.path, event, runs)
        elif event["type"] == "short":
            if store.path.exists():
                runs.append(event)
                _append_short(store.path, event, index)
        elif event["type"] == "let":
            event["run_id"] = f"run-{index:04d}"
            if event["job"] is not None:
                # ranks of one launch measured both ways (an estimate beside one rank's socket):
                # test_counting.test_ranks_measured_both_ways_agree_on_every_path
                event["metered"] = None
            runs.append(event)
            event["refused"] = not _append(store, _let_rows(event, index))
        else:
            runs.append(event)
            pending += _codecarbon_rows(event, index)
        # CodeCarbon writes a checkpoint now and then: one of any pending run's, interleaved
        if pending and interleave.random() < 0.7:
            stored, rows = pending[interleave.randrange(len(pending))]
            row = rows.pop(0)
            if _append(store, [row]):
                stored.append(row["energy_consumed"])
            pending = [p for p in pending if p[1]]
        if store.path.exists():
            cached_totals()  # the statement at stop, after every append (and after edits)
    for stored, rows in pending:
        for row in rows:
            if _append(store, [row]):
                stored.append(row["energy_consumed"])
    if not runs or not store.path.exists():
        return
    per_project, per_job = _reference(runs)
    for project in ("p", "q"):
        expected = per_project.get(project, 0.0)
        at_stop = cached_totals(project_name=project)
        assert at_stop.energy_kwh == pytest.approx(expected), project
        cold = frame_totals(load_results(project_name=project, columns=TOTALS_COLUMNS))
        assert cold.energy_kwh == pytest.approx(expected), project
    output = CliRunner().invoke(cli, ["results", "--by", "project", "--json"]).output
    by_project = {g["project"]: g["kwh"] for g in map(json.loads, output.splitlines())}
    assert by_project == pytest.approx({k: v for k, v in per_project.items() if k in by_project})
    assert sum(by_project.values()) == pytest.approx(sum(per_project.values()))
    output = CliRunner().invoke(cli, ["results", "--by", "job", "--json"]).output
    by_job = {g["job"]: g["kwh"] for g in map(json.loads, output.splitlines())}
    for job in ("j1", "j2"):
        assert by_job.get(job, 0.0) == pytest.approx(per_job.get(job, 0.0)), job
    assert sum(by_job.values()) == pytest.approx(sum(per_job.values()))
