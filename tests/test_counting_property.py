"""The property of issue 19: on generated stores every reader prints the same numbers as an
independent reference written here in plain Python (no LET code): the statement at stop (the
totals cache, called after every append), the cold statement (frame), `let results --by
project|job`.

Stores hold interleaved CodeCarbon checkpoints, CodeCarbon task rows, jobs with ranks of one
launch and with sequential runs of one allocation, runs metered and estimated, failed runs, and
edits of stored energies between appends (the file rewritten: a truncate-and-regrow).
"""

from __future__ import annotations

import csv
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from let_core._version import __version__
from let_core.cli import cli
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
events = st.lists(st.one_of(let_run, let_run, codecarbon_run, edit), min_size=1, max_size=14)


def _reference(runs: list[dict]) -> tuple[dict[str, float], dict[str, float]]:
    """kWh per project and per job ("" for runs outside jobs), from the generated runs alone."""
    per_project: dict[str, float] = {}
    per_job: dict[str, float] = {}
    launches: dict[tuple, float] = {}
    for spec in runs:
        if spec["type"] == "codecarbon":
            # each task's (or the run's) latest checkpoint: the largest energy, checkpoints being cumulative
            value = sum(max(parts) for parts in spec["parts"])
            per_project[spec["project"]] = per_project.get(spec["project"], 0.0) + value
            per_job[""] = per_job.get("", 0.0) + value
            continue
        if spec["failed"]:
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


def _codecarbon_rows(spec: dict, index: int) -> list[list[dict]]:
    """One list of cumulative checkpoint rows per task (or for the run), to be interleaved."""
    tasks = [f"task{t}" for t in range(spec["tasks"])] or [""]
    spec["parts"] = []
    result = []
    for offset, task in enumerate(tasks):
        values = sorted(v + offset for v in spec["checkpoints"])
        spec["parts"].append(values)
        result.append([{"timestamp": (START + timedelta(hours=index, seconds=10 * k)).isoformat(),
                        "project_name": "codecarbon", "run_id": f"cc-{index:04d}",
                        "experiment_id": f"{spec['project']}___u___h", "duration": 10.0 * (k + 1),
                        "emissions": value, "energy_consumed": value, "codecarbon_version": "2.3.4",
                        "country_iso_code": "DEU", "task_name": task}
                       for k, value in enumerate(values)])
    return result


def _edit(path: Path, spec: dict, runs: list[dict]) -> None:
    """Rewrite one stored LET estimate (not a job's, not failed, not measured) in the file."""
    editable = [r for r in runs if r["type"] == "let" and not r["failed"] and r["metered"] is None
                and r["job"] is None]
    if not editable:
        return
    target = editable[spec["which"] % len(editable)]
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        fields, rows = reader.fieldnames, list(reader)
    for row in rows:
        if row["run_id"] == target["run_id"]:
            row["energy_consumed"], row["emissions"] = repr(spec["energy"]), repr(spec["energy"])
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    target["estimate"] = spec["energy"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
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
        elif event["type"] == "let":
            event["run_id"] = f"run-{index:04d}"
            if event["job"] is not None:
                # ranks of one launch measured both ways (an estimate beside one rank's socket):
                # test_counting.test_ranks_measured_both_ways_agree_on_every_path
                event["metered"] = None
            runs.append(event)
            store.append(_let_rows(event, index))
        else:
            runs.append(event)
            pending += _codecarbon_rows(event, index)
        # CodeCarbon writes a checkpoint now and then: one of any pending run's, interleaved
        if pending and interleave.random() < 0.7:
            chosen = pending[interleave.randrange(len(pending))]
            store.append([chosen.pop(0)])
            pending = [p for p in pending if p]
        if store.path.exists():
            cached_totals()  # the statement at stop, after every append (and after edits)
    for rows in pending:
        for row in rows:
            store.append([row])
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
