"""The dashboard's overview, runs table and charts' data in process (FastAPI's TestClient over a
real store): every figure is the read side's (frame_totals, aggregate, calibration), every text
scales its unit, a day of runs gets an axis of hours, tasks sit under their run."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from let_core.results import aggregate, frame_totals, load_results
from let_core.statement import format_emissions, format_energy
from let_core.ui.app import create_app
from let_core.ui.data import Dashboard
from tests.ui_store import build_new_user_store, build_store


@pytest.fixture
def new_user(tmp_path: Path) -> tuple[TestClient, Path]:
    store = tmp_path / "store"
    build_new_user_store(store)
    return TestClient(create_app(Dashboard(store)), base_url="http://localhost"), store


def test_overview_figures_are_the_read_sides(tmp_path: Path) -> None:
    store = tmp_path / "store"
    build_store(store)
    client = TestClient(create_app(Dashboard(store)), base_url="http://localhost")
    frame = load_results(store)
    totals = frame_totals(frame)
    body = client.get("/api/overview").json()
    assert body["runs"] == totals.runs == 24
    assert body["energy_text"] == format_energy(totals.energy_kwh)
    assert body["emissions_text"] == format_emissions(totals.emissions_kg * 1000)
    assert body["shares"]["metered"]["kwh"] == pytest.approx(totals.metered_kwh)
    assert body["shares"]["metered"]["runs"] == totals.metered_runs == 12
    assert body["shares"]["estimated"]["kwh"] == pytest.approx(totals.estimate_kwh)
    assert body["shares"]["calibrated"]["runs"] == 0  # no calibration in this LET_HOME
    projects = aggregate(frame, "project").sort_values("kwh", ascending=False)
    assert [p["name"] for p in body["projects"]] == list(projects["project"])
    assert [p["kwh"] for p in body["projects"]] == pytest.approx(list(projects["kwh"]))
    assert [h["name"] for h in body["hosts"]] == list(aggregate(frame, "host").sort_values("kwh", ascending=False)["host"])
    failed = frame[frame.run_status == "failed"]
    assert body["failed"]["runs"] == frame_totals(failed).runs == 3
    assert body["failed"]["energy_text"] == format_energy(frame_totals(failed).energy_kwh)
    assert {r["run_id"] for r in body["failed"]["latest"]} == set(failed["run_id"])
    # Six days: a bucket per day, summing to the total.
    assert body["trend"]["bucket"] == "day" and len(body["trend"]["t"]) == 6
    assert sum(body["trend"]["kwh"]) == pytest.approx(totals.energy_kwh)
    assert sum(body["trend"]["failed_kwh"]) == pytest.approx(frame_totals(failed).energy_kwh)
    vision = client.get("/api/overview", params={"project": "vision"}).json()
    assert vision["runs"] == 12 and vision["shares"]["metered"]["share_text"] == "100%"


def test_calibrated_share_is_what_the_calibration_corrects(let_home: Path) -> None:
    from paired_runs import rows, synthetic_runs

    from let_core.results.calibration import calibrate_frame, corrected_rows, fit, paired_runs, save
    from let_core.store import Store

    Store(let_home).append(rows(synthetic_runs(40, seed=21, power_w=(100, 350)))
                           + rows(synthetic_runs(6, seed=22, metered=False, power_w=(120, 300))))
    client = TestClient(create_app(Dashboard(let_home)), base_url="http://localhost")
    assert client.get("/api/overview").json()["shares"]["calibrated"]["runs"] == 0
    save(fit(paired_runs(load_results(let_home), "ws28")))  # a new calibration: the page follows
    calibrated = client.get("/api/overview").json()["shares"]["calibrated"]
    part = corrected_rows(calibrate_frame(load_results(let_home)))
    assert calibrated["runs"] == part["run_id"].nunique() == 6
    assert calibrated["kwh"] == pytest.approx(part["energy_consumed"].sum())
    assert calibrated["calibrated_text"] == format_energy(part["calibrated_kwh"].sum())
    assert calibrated["interval_text"] == (f"{format_energy(part['calibrated_low_kwh'].sum())} to "
                                           f"{format_energy(part['calibrated_high_kwh'].sum())}")


def test_a_day_of_runs_gets_hours_and_readable_units(new_user: tuple[TestClient, Path]) -> None:
    client, store = new_user
    series = client.get("/api/summary").json()["series"]
    assert series["bucket"] == "hour" and series["title"] == "Energy and emissions per hour"
    x = series["axes"]["x"]
    first = datetime(2026, 12, 2, 9, tzinfo=timezone.utc).timestamp()
    last = datetime(2026, 12, 2, 16, 49, tzinfo=timezone.utc).timestamp()
    # The range is the day's runs plus a margin of about an hour, never years.
    assert first - 2 * 3600 <= x["low"] <= first and last <= x["high"] <= last + 2 * 3600
    assert all(x["low"] <= t <= x["high"] for t in x["ticks"]) and len(x["ticks"]) >= 3
    assert len(set(x["labels"])) == len(x["labels"]) and all(":" in label for label in x["labels"])
    assert x["title"] == "2 Dec 2026 (UTC)"
    for name, unit in (("kwh", " Wh"), ("kg", " g")):
        labels = series["axes"][name]["labels"]
        assert len(set(labels)) == len(labels) >= 3 and all(label.endswith(unit) for label in labels)
    texts = series["kwh_text"] + series["kg_text"]
    assert texts and not any(t.startswith("0.000") for t in texts)
    assert any("failed runs" in t for t in series["kwh_text"])  # the failed run's hour says so
    totals = client.get("/api/summary").json()["totals"]["host"][0]["text"]
    assert totals["hours"] == "52.0 min" and totals["kwh"] == "6.280 Wh"


def test_task_rows_follow_their_run_in_every_order(new_user: tuple[TestClient, Path]) -> None:
    client, _ = new_user
    for sort in ("start_time", "energy_consumed", "project_name"):
        for order in ("asc", "desc"):
            body = client.get("/api/runs", params={"sort": sort, "order": order}).json()
            rows = body["rows"]
            tasks = [i for i, r in enumerate(rows) if r["is_task"]]
            assert len(tasks) == 2, (sort, order)
            parent = next(i for i, r in enumerate(rows) if r["run_id"] == rows[tasks[0]]["parent_run_id"])
            assert tasks == [parent + 1, parent + 2], (sort, order)
            assert [rows[i]["task"] for i in tasks] == ["load data", "train"]
            heads = [r for r in rows if not r["is_task"]]
            key = [r[sort] for r in heads]
            assert key == sorted(key, reverse=order == "desc"), (sort, order)
    body = client.get("/api/runs").json()
    assert body["count_text"] == ("8 runs, 1 of them failed (all stored runs). 10 rows: 2 task rows under "
                                  "their run. Showing rows 1–10.")
    assert [r["failed"] for r in body["rows"]].count(True) == 1
    assert "row(s) match" not in body["count_text"]
    page = client.get("/api/runs", params={"project": "first-try", "per_page": 2, "page": 2}).json()
    assert page["count_text"] == "4 runs (project first-try). Showing rows 3–4."
    assert client.get("/api/runs", params={"project": "nope"}).json()["count_text"] == "No runs match project nope."


def test_unknown_names_are_answered_with_the_names_that_exist(new_user: tuple[TestClient, Path]) -> None:
    client, _ = new_user
    typo = client.get("/api/statement", params={"project": "thesis-basline"})
    assert typo.status_code == 404
    assert "did you mean 'thesis-baseline'?" in typo.json()["detail"]
    other = client.get("/api/statement", params={"project": "zzz", "host": "laptop-dana"}).json()["detail"]
    assert "stored: first-try, thesis-baseline" in other
    together = client.get("/api/statement", params={"project": "first-try", "since": "2027-01-01"}).json()["detail"]
    assert "not together" in together


def test_a_page_waits_for_the_figure_being_computed_instead_of_computing_it_again(tmp_path: Path) -> None:
    import threading

    dashboard = Dashboard(tmp_path / "store")
    calls: list[int] = []
    results: list[int] = []
    second = threading.Thread(target=lambda: results.append(dashboard._cached(("k",), compute)))

    def compute() -> int:
        calls.append(1)
        if len(calls) == 1:  # while the first computes, a second page asks for the same figure
            second.start()
            second.join(0.5)
            assert second.is_alive()  # it waits for this result
        return 42

    assert dashboard._cached(("k",), compute) == 42
    second.join(10)
    assert results == [42] and calls == [1]


def test_nothing_matches_names_the_dataset_it_searched_too(let_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from let_backends.manual import ManualBackend
    from let_core.tracker import EnergyTracker

    monkeypatch.setenv("LET_DATASET", str(let_home / "runs"))
    with EnergyTracker(project_name="thesis-baseline", backends=[ManualBackend(energy_kwh=0.1)], reporters=["parquet"]):
        pass
    client = TestClient(create_app(Dashboard(let_home)), base_url="http://localhost")
    typo = client.get("/api/statement", params={"project": "thesis-basline"})
    assert typo.status_code == 404
    detail = typo.json()["detail"]
    assert "did you mean 'thesis-baseline'?" in detail
    assert f"{let_home / 'emissions.csv'} and the dataset {let_home / 'runs'}" in detail, detail
