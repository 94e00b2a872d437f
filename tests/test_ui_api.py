"""`lett ui`'s JSON API in process: figures from the one counting module, bad input is a 4xx
with a message (never a 500), an unreadable store is a 503 and the server goes on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from let_core.results import aggregate, frame_totals, load_results
from let_core.statement import statement_from_totals
from let_core.ui.app import create_app
from let_core.ui.data import SORT_COLUMNS, Dashboard
from tests.ui_store import build_store


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("ui-api") / "store"
    build_store(directory)
    return directory


@pytest.fixture(scope="module")
def client(store: Path) -> TestClient:
    return TestClient(create_app(Dashboard(store)), base_url="http://localhost")


def test_pages_are_served_with_the_vendored_chart_library(client: TestClient) -> None:
    for path in ("/", "/runs", "/project", "/statement"):
        page = client.get(path)
        assert page.status_code == 200 and "/static/vendor/uPlot.iife.min.js" in page.text
        assert "http://" not in page.text and "https://" not in page.text  # nothing from a CDN
    assert client.get("/static/vendor/uPlot.iife.min.js").status_code == 200
    assert "MIT" in client.get("/static/vendor/uPlot.LICENSE").text


def test_runs_are_paged_sorted_and_filtered_on_the_server(client: TestClient, store: Path) -> None:
    frame = load_results(store)
    body = client.get("/api/runs", params={"per_page": 7}).json()
    assert body["total"] == len(frame) and len(body["rows"]) == 7 and body["pages"] == -(-len(frame) // 7)
    starts = [r["start_time"] for r in body["rows"]]
    assert starts == sorted(starts, reverse=True)
    nlp = client.get("/api/runs", params={"project": "nlp", "sort": "energy_consumed", "order": "asc"}).json()
    expected = sorted(frame.loc[frame.project_name == "nlp", "energy_consumed"])
    assert [r["energy_consumed"] for r in nlp["rows"]] == pytest.approx(expected)
    expected = int(((frame.start_time >= "2026-03-03") & (frame.start_time < "2026-03-05")).sum())
    window = client.get("/api/runs", params={"since": "2026-03-03", "until": "2026-03-04T23:59:59Z"}).json()
    assert window["total"] == expected
    # A date alone (what the page's date inputs send) means the whole day.
    assert client.get("/api/runs", params={"since": "2026-03-03", "until": "2026-03-04"}).json()["total"] == expected
    assert client.get("/api/runs", params={"project": "no-such"}).json()["total"] == 0


def test_summary_and_statement_match_the_read_side(client: TestClient, store: Path) -> None:
    frame = load_results(store)
    vision = frame[frame.project_name == "vision"].reset_index(drop=True)
    summary = client.get("/api/summary", params={"project": "vision"}).json()
    # Every vision run was metered: the series counts the metered figure of each run, once.
    assert sum(summary["series"]["kwh"]) == pytest.approx(vision.loc[vision.kind == "metered", "energy_consumed"].sum())
    assert summary["scatter"]["runs"] == 12 and summary["scatter"]["ratio"] == pytest.approx(1.3)
    by_host = aggregate(vision, "host")
    assert [row["kwh"] for row in summary["totals"]["host"]] == pytest.approx(list(by_host["kwh"]))
    jobs = client.get("/api/summary", params={"project": "nlp"}).json()["totals"]["job"]
    assert [row["job"] for row in jobs] == [f"job-{d}" for d in range(6)]
    statement = client.get("/api/statement", params={"project": "vision"}).json()
    assert statement["statement"] == statement_from_totals(frame_totals(vision))
    assert "@software{codecarbon" in statement["bibtex"]
    missing = client.get("/api/statement", params={"project": "nope"})
    assert missing.status_code == 404
    assert "No stored run has project 'nope'; stored: nlp, speech, vision" in missing.json()["detail"]


@pytest.mark.parametrize("params, words", [
    ({"sort": "password"}, "cannot sort by"),
    ({"order": "sideways"}, "order"),
    ({"page": "0"}, "page"),
    ({"page": "many"}, "page"),
    ({"per_page": "100000"}, "per_page"),
    ({"since": "yesterday"}, "not an ISO date"),
    ({"since": "2026-03-05", "until": "2026-03-01"}, "after until"),
    ({"until": "0001-01-01"}, "outside 1970-2200"),
    ({"project": "a\x00b"}, "not a plausible project"),
])
def test_bad_filters_are_a_4xx_with_a_message(client: TestClient, params: dict[str, str], words: str) -> None:
    for path in ("/api/runs", "/api/summary", "/api/overview", "/api/statement"):
        if path != "/api/runs" and set(params) & {"sort", "order", "page", "per_page"}:
            continue
        response = client.get(path, params=params)
        assert response.status_code == 400, (path, params, response.text)
        assert words in response.json()["detail"]


_text = st.one_of(st.none(), st.text(max_size=40), st.sampled_from(["vision", "nlp", "gpu-1", "", "2026-03-01",
                                                                    "2026-03-01T00:00:00+01:00", "-1", "1e9"]))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=st.fixed_dictionaries({}, optional={
    name: _text for name in ("project", "user", "host", "backend", "status", "kind", "since", "until",
                             "order", "page", "per_page")} | {"sort": st.one_of(_text, st.sampled_from(SORT_COLUMNS))}),
       path=st.sampled_from(["/api/runs", "/api/summary", "/api/overview", "/api/statement"]))
def test_any_query_is_answered_without_a_server_error(client: TestClient, query: dict[str, Any], path: str) -> None:
    params = {k: v for k, v in query.items() if v is not None}
    response = client.get(path, params=params)
    assert response.status_code < 500, (path, params, response.text)
    body = response.json()
    if response.status_code >= 400:
        assert isinstance(body["detail"], str) and body["detail"]
    elif path == "/api/runs":
        assert len(body["rows"]) <= body["per_page"]


def test_an_unreadable_store_is_a_503_and_the_server_recovers(tmp_path: Path) -> None:
    store = tmp_path / "store"
    build_store(store)
    csv = store / "emissions.csv"
    good = csv.read_bytes()
    csv.write_bytes(b"\x00\x01garbage\xff\n" * 3 + good[:200])
    client = TestClient(create_app(Dashboard(store)), raise_server_exceptions=False, base_url="http://localhost")
    broken = [client.get(p) for p in ("/api/choices", "/api/runs", "/api/summary", "/api/statement")]
    if all(r.status_code == 200 for r in broken[:2]):
        pytest.fail("a garbled store header must not read as a valid store: " + broken[1].text)
    for response in broken:
        assert response.status_code == 503, response.text
        assert "cannot read the LET store" in response.json()["detail"]
    assert client.get("/").status_code == 200  # the pages are still served, and show the error
    csv.write_bytes(good)
    assert client.get("/api/runs").json()["total"] == 36


def test_totals_tables_are_bounded_with_the_rest_summed() -> None:
    import pandas as pd

    from let_core.ui.data import MAX_GROUPS, _largest_groups

    groups = pd.DataFrame({"job": [f"run {i:04d}" for i in range(MAX_GROUPS + 30)],
                           "runs": 1, "kwh": [float(i) for i in range(MAX_GROUPS + 30)], "kg": 0.5, "hours": 0.1})
    rows = _largest_groups(groups, "job")
    assert len(rows) == MAX_GROUPS + 1
    kept = rows[:-1]
    assert min(r["kwh"] for r in kept) == 30.0 and [r["job"] for r in kept] == sorted(r["job"] for r in kept)
    assert rows[-1]["job"] == "(30 more)" and rows[-1]["runs"] == 30
    assert rows[-1]["kwh"] == pytest.approx(sum(range(30)))
    assert sum(r["kwh"] for r in rows) == pytest.approx(groups.kwh.sum())


def test_an_empty_store_is_an_empty_dashboard_not_an_error(tmp_path: Path) -> None:
    client = TestClient(create_app(Dashboard(tmp_path / "nothing-yet")), base_url="http://localhost")
    choices = client.get("/api/choices").json()
    assert choices["rows"] == 0
    assert client.get("/api/runs").json()["total"] == 0
    assert client.get("/api/runs").json()["count_text"] == "No runs stored yet."
    assert client.get("/api/summary").json()["scatter"]["runs"] == 0
    overview = client.get("/api/overview").json()
    assert overview["runs"] == 0 and overview["trend"]["t"] == [] and overview["projects"] == []
    # Every page says how to record a first run into this very store (the README's first command).
    for body in (choices, client.get("/api/runs").json(), client.get("/api/summary").json(), overview):
        assert "lett demo --keep" in body["hint"] and f"LET_HOME={tmp_path / 'nothing-yet'}" in body["hint"]
    missing = client.get("/api/statement")
    assert missing.status_code == 404 and "nothing-yet" in missing.json()["detail"]
    assert "lett demo --keep" in missing.json()["detail"]


def test_new_runs_appear_without_a_restart(tmp_path: Path) -> None:
    from let_backends.manual import ManualBackend
    from let_core.tracker import EnergyTracker

    client = TestClient(create_app(Dashboard(tmp_path / "store")), base_url="http://localhost")
    assert client.get("/api/runs").json()["total"] == 0
    for project in ("first", "second"):
        EnergyTracker(project_name=project, output_dir=tmp_path / "store",
                      backends=[ManualBackend(power_watts=10)], reporters=["csv"]).start().stop()
        assert client.get("/api/runs", params={"project": project}).json()["total"] == 1
