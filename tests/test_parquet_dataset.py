"""The Parquet dataset reporter, load_results over CSV + Parquet, compaction, S3 (moto) and DuckDB."""

from __future__ import annotations

import multiprocessing
import socket
import warnings
from pathlib import Path

import pytest

from let_backends.manual import ManualBackend
from let_core.dataset import compact, locate, read_frame
from let_core.errors import LetWarning
from let_core.results import load_results
from let_core.store import Store
from let_core.tracker import EnergyTracker


def _track(project: str = "paper", energy: float = 0.25, metrics: dict | None = None,
           reporters: tuple[str, ...] = ("csv", "parquet"), **kwargs) -> EnergyTracker:
    tracker = EnergyTracker(project_name=project, backends=[ManualBackend(energy_kwh=energy)],
                            reporters=list(reporters), **kwargs)
    with tracker:
        if metrics:
            tracker.log_metrics(metrics)
            tracker.log_params({"model": "resnet", "n_samples": 100})
    return tracker


def test_parquet_is_off_without_a_dataset_and_named_reason(let_home: Path) -> None:
    from let_core.plugins import registry

    factory = registry().reporters["parquet"].factory
    tracker = EnergyTracker(project_name="p", backends=[ManualBackend(energy_kwh=1)])
    assert all(r.name != "parquet" for r in tracker.reporters)
    reason = factory.availability(tracker.settings).reason
    assert "LET_DATASET" in reason and "s3://" in reason


def test_dataset_run_files_and_load_results_dedup(let_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LET_DATASET", str(let_home / "runs"))
    first = _track(metrics={"accuracy": 0.91}, reporters=("csv", "parquet"))
    second = _track(project="other/project", energy=0.5)
    files = sorted(p.relative_to(let_home / "runs").as_posix() for p in (let_home / "runs").rglob("*.parquet"))
    assert len(files) == 2
    assert any(f.startswith("project=paper/year=") and f.endswith(f"/{first.run_id}.parquet") for f in files)
    # '/' in a project name is URL-encoded in the folder name, not a nested folder.
    assert any(f.startswith("project=other%2Fproject/") for f in files)
    assert not list((let_home / "runs").rglob(".*"))  # no temporary files left
    frame = load_results()
    assert len(frame) == 2  # each run is in the CSV store and the dataset: counted once
    assert set(frame["run_id"]) == {first.run_id, second.run_id}
    row = frame[frame["run_id"] == first.run_id].iloc[0]
    assert row["metrics.accuracy"] == pytest.approx(0.91)
    assert row["params.model"] == "resnet" and row["params.n_samples"] == 100
    assert load_results(project_name="other/project")["energy_consumed"].tolist() == [0.5]


def test_dataset_alone_is_read_without_a_csv_store(let_home: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    dataset = tmp_path / "shared"
    monkeypatch.setenv("LET_DATASET", str(dataset))
    tracker = _track(reporters=("parquet",), metrics={"f1": 0.5})
    assert Store().path.exists()  # the core records every run in the central store, whatever the reporters
    Store().path.unlink()  # ... which a colleague reading only the shared dataset does not have
    frame = load_results()
    assert frame["run_id"].tolist() == [tracker.run_id]
    assert frame["metrics.f1"].tolist() == [0.5]
    assert frame["backend"].tolist() == ["manual"] and frame["kind"].tolist() == ["estimate"]


def _writer(dataset: str, home: str, count: int) -> None:
    import os

    os.environ["LET_DATASET"] = dataset
    os.environ["LET_HOME"] = home
    os.environ["LET_LOAD_PLUGINS"] = ""
    for _ in range(count):
        _track(reporters=("parquet",))


def test_many_writer_processes_lose_nothing(let_home: Path, tmp_path: Path) -> None:
    dataset = str(tmp_path / "shared")
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_writer, args=(dataset, str(let_home), 5)) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=300)
        assert worker.exitcode == 0
    frame = read_frame(locate(dataset))
    assert len(frame) == 20 and frame["run_id"].nunique() == 20


def test_compact_merges_files_and_keeps_every_run(let_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LET_DATASET", str(let_home / "runs"))
    ids = [_track(reporters=("parquet",)).run_id for _ in range(5)]
    ids.append(_track(project="b", reporters=("parquet",)).run_id)
    location = locate(let_home / "runs")
    report = compact(location)
    assert (report.files_before, report.files_after, report.partitions, report.rows) == (6, 2, 1, 5)
    assert sorted(read_frame(location)["run_id"]) == sorted(ids)
    later = _track(reporters=("parquet",)).run_id  # written after compaction: a new small file
    assert sorted(load_results()["run_id"]) == sorted(ids + [later])
    # A crash between writing the merged file and deleting the parts leaves copies: read once.
    (let_home / "runs" / "copy").mkdir()
    for path in (let_home / "runs").glob("project=paper/year=*/compacted-*.parquet"):
        (path.parent / ("compacted-copy-" + path.name)).write_bytes(path.read_bytes())
    assert sorted(load_results()["run_id"]) == sorted(ids + [later])


def test_duckdb_queries_the_dataset(let_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import duckdb

    monkeypatch.setenv("LET_DATASET", str(let_home / "runs"))
    _track(energy=0.25)
    _track(energy=0.5)
    _track(project="b", energy=2.0)
    glob = f"{let_home}/runs/**/*.parquet"
    result = duckdb.sql(
        f"SELECT project, count(*) AS runs, sum(energy_consumed) AS kwh "
        f"FROM read_parquet('{glob}', hive_partitioning = true) GROUP BY project ORDER BY project"
    ).fetchall()
    assert result == [("b", 1, 2.0), ("paper", 2, 0.75)]


# ------------------------------------------------------------------------------------ S3
@pytest.fixture(scope="module")
def moto_endpoint():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"{host}:{port}"
    server.stop()


def _s3_uri(endpoint: str, bucket: str) -> str:
    return f"s3://let-key:let-secret@{bucket}/let?endpoint_override={endpoint}&scheme=http&region=us-east-1"


def _make_bucket(endpoint: str, bucket: str) -> None:
    import pyarrow.fs as pafs

    fs = pafs.S3FileSystem(access_key="let-key", secret_key="let-secret", endpoint_override=endpoint,
                           scheme="http", region="us-east-1", allow_bucket_creation=True)
    fs.create_dir(bucket)


def test_s3_dataset_on_a_real_s3_api(let_home: Path, moto_endpoint: str) -> None:
    _make_bucket(moto_endpoint, "cluster")
    uri = _s3_uri(moto_endpoint, "cluster")
    runs = [_track(output_dir=uri, reporters=("csv", "parquet"), metrics={"accuracy": 0.5 + i / 10})
            for i in range(3)]
    # The CSV store stays local ($LET_HOME) so a run is recorded even offline.
    assert len(list(Store(let_home).rows())) == 3
    location = locate(uri)
    assert location.display == "s3://cluster/let"  # no credentials in messages
    remote = read_frame(location)
    assert sorted(remote["run_id"]) == sorted(r.run_id for r in runs)
    frame = load_results(uri)
    assert len(frame) == 3 and sorted(frame["metrics.accuracy"]) == pytest.approx([0.5, 0.6, 0.7])
    report = compact(location)
    assert report.files_after == 1 and report.rows == 3
    assert len(read_frame(location)) == 3


def test_unreachable_s3_endpoint_loses_nothing(let_home: Path) -> None:
    with socket.socket() as probe:  # a loopback port with nobody listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    uri = _s3_uri(f"127.0.0.1:{port}", "nowhere") + "&connect_timeout=1&request_timeout=2"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tracker = _track(output_dir=uri, reporters=("csv", "parquet"))
    messages = [str(w.message) for w in caught if issubclass(w.category, LetWarning)]
    assert len(messages) == 1, messages
    assert "not written to the dataset s3://nowhere/let" in messages[0]
    assert "Nothing is lost" in messages[0] and str(let_home / "emissions.csv") in messages[0]
    assert "let-secret" not in messages[0] and "let-key" not in messages[0]  # credentials stay out of warnings
    assert [row["run_id"] for row in Store(let_home).rows()] == [tracker.run_id]


def test_projected_dataset_read_filters_dedups_and_stays_arrow_backed(let_home: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import pandas as pd

    monkeypatch.setenv("LET_DATASET", str(let_home / "runs"))
    kept = _track(project="p", energy=0.25)
    _track(project="q", energy=0.5)
    # A run only in the dataset (another machine's), to see both sources are read.
    _track(project="p", energy=0.75, reporters=("parquet",))
    columns = ["run_id", "energy_consumed", "kind"]
    frame = load_results(columns=columns)
    assert list(frame.columns) == [c for c in frame.columns if c in columns] and set(frame.columns) == set(columns)
    assert len(frame) == 3  # the CSV store and the dataset hold two runs each: counted once
    assert sorted(frame["energy_consumed"]) == [0.25, 0.5, 0.75]
    # Filters on columns that were not asked for still apply (the scanner evaluates them).
    only_p = load_results(project_name="p", columns=["energy_consumed"])
    assert sorted(only_p["energy_consumed"]) == [0.25, 0.75]
    assert load_results(hostname="no-such-host", columns=["run_id"]).empty
    # Text stays Arrow-backed: no million Python string objects.
    dataset = read_frame(locate(let_home / "runs"), columns=columns)
    assert isinstance(dataset["run_id"].dtype, pd.ArrowDtype) and dataset["energy_consumed"].dtype == "float64"
    assert set(dataset.columns) == set(columns) and kept.run_id in set(dataset["run_id"])
    full = load_results()
    assert full.set_index("run_id")["energy_consumed"].sort_index().tolist() == \
        frame.set_index("run_id")["energy_consumed"].sort_index().tolist()


def test_foreign_file_types_are_read_and_counted(let_home: Path, tmp_path: Path) -> None:
    """Names and kinds are read dictionary-encoded; a file written by another tool, with an
    integer rank, a large-string project, an all-null backend and a dictionary hardware column,
    still reads (the plain way) with the same texts, and counts."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from let_core.results import frame_totals
    from let_core.results.counting import TOTALS_COLUMNS

    part = tmp_path / "ds" / "project=x" / "year=2026"
    part.mkdir(parents=True)
    pq.write_table(pa.table({
        "project_name": pa.array(["x", "x"], pa.large_string()), "run_id": ["r1", "r2"],
        "backend": pa.array([None, None], pa.null()), "kind": ["estimate", "estimate"],
        "rank": pa.array([0, 1], pa.int64()), "energy_consumed": [1.0, 2.0],
        "hardware": pa.array(["h", "h"]).dictionary_encode(), "timestamp": ["2026-01-01T00:00:00"] * 2,
    }), part / "a.parquet")
    for columns in (None, TOTALS_COLUMNS):
        frame = load_results(tmp_path / "no-store", dataset=str(tmp_path / "ds"), columns=columns)
        assert frame["hardware"].tolist() == ["h", "h"] and frame["project_name"].tolist() == ["x", "x"]
    assert load_results(tmp_path / "no-store", dataset=str(tmp_path / "ds"))["rank"].tolist() == ["0", "1"]
    totals = frame_totals(load_results(tmp_path / "no-store", dataset=str(tmp_path / "ds"), columns=TOTALS_COLUMNS))
    assert totals.energy_kwh == 3.0 and totals.runs == 2 and totals.hardware == {"h": 2}
