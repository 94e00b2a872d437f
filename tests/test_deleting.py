"""`lett delete` / `delete_results` delete everywhere `load_results` reads, all or nothing where a
filesystem allows: the CSV store, a local Parquet dataset and the run files of an s3:// dataset
(a real S3 API: moto's server on loopback), with faults injected midway."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow.fs as pafs
import pytest
from click.testing import CliRunner

from let_backends.manual import ManualBackend
from let_core._version import __version__
from let_core.cli import cli
from let_core.dataset import Location, compact, locate, write_frame, write_run
from let_core.errors import StoreError
from let_core.records import Measurement, Run
from let_core.results import counted_totals, load_results
from let_core.results.deleting import delete_results, delete_runs
from let_core.statement import paper_statement
from let_core.store import Store
from let_core.tracker import EnergyTracker
from tests.privileges import as_unprivileged

START = datetime(2026, 3, 1, 9, 0, tzinfo=timezone.utc)


def _run(index: int, kwh: float = 0.1, *, project: str = "P", user: str = "u",
         also: tuple[Measurement, ...] = ()) -> Run:
    begin = START + timedelta(hours=index)
    return Run(run_id=f"run-{index:04d}", project_name=project, user=user, hostname="h",
               start_time=begin, end_time=begin + timedelta(seconds=60), status="ok",
               measurements=(Measurement(backend="manual", methodology="Manual", kind="estimate",
                                         energy_kwh=kwh, duration_s=60, scope="system"), *also),
               country_iso_code="DEU", country_name="Germany", carbon_intensity=400.0)


def _files(location: Location) -> dict[str, bytes]:
    """Every object/file of the dataset (hidden ones too, not the compaction lock) with its bytes."""
    fs = location.filesystem
    found = {}
    for info in fs.get_file_info(pafs.FileSelector(location.path, recursive=True, allow_not_found=True)):
        if info.type == pafs.FileType.File and info.base_name != ".compact.lock":
            with fs.open_input_stream(info.path) as handle:
                found[info.path[len(location.path) + 1:]] = handle.read()
    return found


def _runs(**kwargs: object) -> int:
    return counted_totals(**kwargs).runs  # type: ignore[arg-type]


# ------------------------------------------------------------------------------- S3 (moto)
class Moto:
    """moto's S3 server on a loopback port that survives a restart (its state is in-process)."""

    def __init__(self) -> None:
        self.port = 0
        self.server = None
        self.start()

    def start(self) -> None:
        from moto.server import ThreadedMotoServer

        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()
        self.port = self.server.get_host_and_port()[1]

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def bucket(self) -> str:
        """A new bucket; its dataset URI, as a user gives it (credentials, endpoint, timeouts)."""
        name = f"let-{uuid.uuid4().hex[:12]}"
        fs = pafs.S3FileSystem(access_key="let-key", secret_key="let-secret", endpoint_override=self.endpoint,
                               scheme="http", region="us-east-1", allow_bucket_creation=True)
        fs.create_dir(name)
        return (f"s3://let-key:let-secret@{name}/let?endpoint_override={self.endpoint}&scheme=http"
                "&region=us-east-1&connect_timeout=1&request_timeout=3")


@pytest.fixture
def moto() -> Iterator[Moto]:
    server = Moto()
    try:
        yield server
    finally:
        server.stop()


def _track(uri: str, project: str, kwh: float) -> str:
    tracker = EnergyTracker(project_name=project, backends=[ManualBackend(energy_kwh=kwh)],
                            reporters=["csv", "parquet"], output_dir=uri)
    with tracker:
        pass
    return tracker.run_id


def test_delete_from_an_s3_dataset_removes_the_projects_run_files_only(let_home: Path, moto: Moto) -> None:
    uri = moto.bucket()
    dropped = [_track(uri, "P", 0.1) for _ in range(2)]
    kept = _track(uri, "Q", 0.25)
    location = locate(uri)
    before = _files(location)
    assert len(before) == 3 and all(name.endswith(".parquet") for name in before)
    assert _runs(output_dir=uri) == 3 and "0.450 kWh" in paper_statement(uri)

    output = CliRunner().invoke(cli, ["delete", "-o", uri, "-p", "P", "--yes"]).output
    assert "deleted 2 run(s)" in output, output
    assert "let-secret" not in output  # the URI's credentials stay out of what is printed
    after = _files(location)
    # Q's run file is untouched, byte for byte; P's files are gone and nothing hidden is left.
    assert after == {name: data for name, data in before.items() if name.startswith("project=Q/")}
    assert load_results(uri, project_name="P").empty
    assert load_results(uri)["run_id"].tolist() == [kept]
    assert _runs(output_dir=uri) == 1 and "0.250 kWh" in paper_statement(uri)
    # The local CSV store (where tracking also wrote the runs) lost P's rows too.
    assert [row["run_id"] for row in Store(let_home).rows()] == [kept]
    assert not set(dropped) & set(load_results(uri, latest_only=False)["run_id"])


def test_delete_by_user_rewrites_a_compacted_s3_file_and_keeps_the_other_rows(let_home: Path, moto: Moto) -> None:
    uri = moto.bucket()
    location = locate(uri)
    for index, user in enumerate(["a", "b", "a", "b"]):
        write_run(location, _run(index, 0.1 * (index + 1), user=user).rows(__version__))
    assert compact(location).files_after == 1
    kept = load_results(uri, user="b", latest_only=False)
    assert _runs(output_dir=uri) == 4

    assert delete_results(uri, user="a") == 2
    names = list(_files(location))
    assert len(names) == 1 and names[0].startswith("project=P/year=2026/compacted-")  # rewritten in place
    again = load_results(uri, latest_only=False)
    assert sorted(again["run_id"]) == sorted(kept["run_id"])
    assert again.sort_values("run_id")["energy_consumed"].tolist() == pytest.approx(
        kept.sort_values("run_id")["energy_consumed"].tolist())
    assert _runs(output_dir=uri) == 2


class Faulty(pafs.FileSystemHandler):
    """A real filesystem (local or S3) whose calls pass through ``before(name, path)`` first,
    so a test can make one call fail, or stop the S3 server just before it."""

    def __init__(self, inner: pafs.FileSystem, before: Callable[[str, str], None]) -> None:
        self.inner, self.before = inner, before

    def get_type_name(self) -> str:
        return "faulty+" + self.inner.type_name

    def equals(self, other: object) -> bool:
        return self is other

    def normalize_path(self, path: str) -> str:
        return self.inner.normalize_path(path)

    def get_file_info(self, paths):  # type: ignore[no-untyped-def]
        return self.inner.get_file_info(paths)

    def get_file_info_selector(self, selector):  # type: ignore[no-untyped-def]
        return self.inner.get_file_info(selector)

    def create_dir(self, path: str, recursive: bool) -> None:
        self.inner.create_dir(path, recursive=recursive)

    def delete_dir(self, path: str) -> None:
        self.inner.delete_dir(path)

    def delete_dir_contents(self, path: str, missing_dir_ok: bool = False) -> None:
        self.inner.delete_dir_contents(path, missing_dir_ok=missing_dir_ok)

    def delete_root_dir_contents(self) -> None:
        raise OSError("not here")

    def delete_file(self, path: str) -> None:
        self.before("delete_file", path)
        self.inner.delete_file(path)

    def move(self, src: str, dest: str) -> None:
        self.before("move", dest)
        self.inner.move(src, dest)

    def copy_file(self, src: str, dest: str) -> None:
        self.inner.copy_file(src, dest)

    def open_input_stream(self, path: str):  # type: ignore[no-untyped-def]
        return self.inner.open_input_stream(path)

    def open_input_file(self, path: str):  # type: ignore[no-untyped-def]
        return self.inner.open_input_file(path)

    def open_output_stream(self, path: str, metadata):  # type: ignore[no-untyped-def]
        self.before("open_output_stream", path)
        return self.inner.open_output_stream(path, metadata=metadata)

    def open_append_stream(self, path: str, metadata):  # type: ignore[no-untyped-def]
        return self.inner.open_append_stream(path, metadata=metadata)


def _faulty(before: Callable[[str, str], None]) -> Callable[[str | os.PathLike[str]], Location]:
    """``dataset.locate`` whose locations (the delete's and the readers') go through Faulty."""
    import let_core.dataset

    real = let_core.dataset.locate

    def faulty_locate(root: str | os.PathLike[str]) -> Location:
        location = real(root)
        return Location(pafs.PyFileSystem(Faulty(location.filesystem, before)), location.path, location.display)

    return faulty_locate


def _through(monkeypatch: pytest.MonkeyPatch, before: Callable[[str, str], None]) -> None:
    monkeypatch.setattr("let_core.dataset.locate", _faulty(before))


def _layout(uri_or_root: str, store: Store) -> Location:
    """P: three run files (the last in the store too); Q: one."""
    location = locate(uri_or_root)
    for index in range(3):
        rows = _run(index).rows(__version__)
        write_run(location, rows)
        if index == 2:
            store.append(rows)
    write_run(location, _run(3, project="Q").rows(__version__))
    return location


def test_s3_server_stopped_midway_loses_nothing_and_says_how_far_it_got(let_home: Path, moto: Moto,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    uri = moto.bucket()
    location = _layout(uri, Store(let_home))
    before = _files(location)
    assert _runs(output_dir=uri, project_name="P") == 3
    deletes: list[str] = []

    def stop_the_server_before_the_second_delete(name: str, path: str) -> None:
        if name == "delete_file" and "let-delete-probe" not in path:
            deletes.append(path)
            if len(deletes) == 2:
                moto.stop()

    with monkeypatch.context() as patch, pytest.raises(StoreError) as raised:
        _through(patch, stop_the_server_before_the_second_delete)
        delete_runs(uri, project_name="P")
    message = str(raised.value)
    assert "stopped after 1 of 3 file(s)" in message, message
    assert "no other row was lost" in message and "run the same delete again" in message
    assert "let-secret" not in message

    moto.start()  # the same port, the same objects: what did the interrupted delete leave?
    after = _files(location)
    assert set(after) == set(before) - {deletes[0][len(location.path) + 1:]}  # one file went, whole
    assert all(after[name] == before[name] for name in after)  # the others are untouched
    assert _runs(output_dir=uri, project_name="P") == 2 and _runs(output_dir=uri, project_name="Q") == 1
    assert [row["run_id"] for row in Store(let_home).rows()] == ["run-0002"]  # the store goes last

    output = CliRunner().invoke(cli, ["delete", "-o", uri, "-p", "P", "--yes"]).output
    assert "deleted 2 run(s)" in output, output  # what was left, as the statement counted it
    assert _runs(output_dir=uri) == 1 and list(Store(let_home).rows()) == []
    assert list(_files(location)) == [name for name in before if name.startswith("project=Q/")]


def test_s3_refusing_writes_changes_nothing(let_home: Path, moto: Moto, monkeypatch: pytest.MonkeyPatch) -> None:
    """A compacted file must be rewritten; the object store refuses the PUT: nothing changes."""
    uri = moto.bucket()
    location = _layout(uri, Store(let_home))
    write_run(location, _run(7, user="x").rows(__version__))
    compact(location)
    before = _files(location)

    def refuse_writes(name: str, path: str) -> None:
        if name == "open_output_stream":
            raise OSError("AWS Error ACCESS_DENIED during PutObject operation: Access Denied")

    with monkeypatch.context() as patch, pytest.raises(StoreError) as raised:
        _through(patch, refuse_writes)
        delete_runs(uri, project_name="P", user="u")
    message = str(raised.value)
    assert "nothing was deleted from it" in message and "Access Denied" in message, message
    assert "still counts all 3 matching run(s)" in message, message
    assert _files(location) == before
    assert len(list(Store(let_home).rows())) == 1


# ------------------------------------------------------------------------------- local dataset
def test_a_failed_rename_midway_leaves_a_readable_state_and_the_rerun_finishes(
        let_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store(let_home)
    root = str(let_home / "runs")
    location = _layout(root, store)
    for index in (4, 5):  # two compacted files that hold P rows of u and of x
        write_run(location, _run(index, user="x").rows(__version__))
        write_run(location, _run(index + 10, user="u").rows(__version__))
    assert compact(location).files_after == 2  # P (7 runs) and Q (1)
    write_run(location, _run(20, user="x").rows(__version__))  # and one more P file, user x only
    totals = {"P": _runs(project_name="P"), "Q": _runs(project_name="Q")}
    assert totals == {"P": 8, "Q": 1}
    moves: list[str] = []

    def fail_the_first_rename(name: str, path: str) -> None:
        if name == "move":
            moves.append(path)
            raise OSError(5, "Input/output error")

    with monkeypatch.context() as patch, pytest.raises(StoreError) as raised:
        _through(patch, fail_the_first_rename)
        delete_runs(project_name="P", user="u")
    message = str(raised.value)
    assert "stopped after 0 of 1 file(s)" in message and "The statement still counts all 5" in message, message
    assert not [name for name in _files(location) if "/." in name]  # no temporary file left
    assert _runs(project_name="P") == 8 and _runs(project_name="Q") == 1  # nothing gone, nothing twice

    # Every step except the last (the store) done, then a crash: a reader sees the old state
    # less the matching rows; no run counts twice and no other run is missing.
    assert delete_results(project_name="P", user="u", dry_run=True) == 5
    assert delete_results(project_name="P", user="u") == 5
    assert _runs(project_name="P") == 3 and _runs(project_name="P", user="x") == 3
    assert sorted(load_results(project_name="P")["run_id"]) == ["run-0004", "run-0005", "run-0020"]
    assert list(store.rows()) == []


def _delete_with_read_only(folder: Path) -> subprocess.CompletedProcess[str]:
    """`lett delete -p P` as an unprivileged user while ``folder`` is read-only."""
    folder.chmod(0o555)
    try:
        return subprocess.run(as_unprivileged([sys.executable, "-m", "let_core", "delete", "-p", "P", "--yes"]),
                              capture_output=True, text=True, timeout=120,
                              env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)})
    finally:
        folder.chmod(0o755)


def test_read_only_dataset_folder_refuses_before_anything_changes(let_home: Path) -> None:
    """A real read-only partition folder (file permissions apply: capabilities dropped as root)."""
    store = Store(let_home)
    location = _layout(str(let_home / "runs"), store)
    partition = next((let_home / "runs").glob("project=P/year=*"))
    before = _files(location)
    stored = list(store.rows())
    done = _delete_with_read_only(partition)
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "nothing was deleted from it" in done.stderr and "Permission denied" in done.stderr, done.stderr
    assert "still counts all 3 matching run(s)" in done.stderr, done.stderr
    assert _files(location) == before and list(store.rows()) == stored
    assert _runs(project_name="P") == 3


def test_read_only_store_folder_refuses_before_the_dataset_changes(let_home: Path) -> None:
    store = Store(let_home)
    location = _layout(str(let_home / "runs"), store)
    before = _files(location)
    done = _delete_with_read_only(let_home)  # the store's folder; the dataset below it stays writable
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "cannot rewrite the LET store" in done.stderr and "run the delete again" in done.stderr, done.stderr
    assert _files(location) == before and len(list(store.rows())) == 1
    assert "deleted" not in done.stdout


def test_the_printed_count_is_what_left_the_statement(let_home: Path) -> None:
    """A run in the store and the dataset is one run; a run with rows of two backends is one."""
    store = Store(let_home)
    location = _layout(str(let_home / "runs"), store)
    metered = Measurement(backend="rapl", methodology="RAPL", kind="metered", energy_kwh=0.08,
                          duration_s=60, scope="cpu")
    rows = _run(8, also=(metered,)).rows(__version__)
    assert len(rows) == 2
    store.append(rows)
    write_run(location, rows)
    before = _runs(project_name="P")
    assert before == 4
    output = CliRunner().invoke(cli, ["delete", "-p", "P"], input="y\n").output
    assert f"Delete {before} run(s) (project_name=P)" in output, output
    assert f"deleted {before} run(s)" in output
    assert _runs(project_name="P") == 0 and _runs() == 1


#: A delete killed (SIGKILL) just before its second file changes: FIFO says when it is there.
KILLED_MIDWAY = """
import os, sys, time
import let_core.dataset
from tests.test_deleting import _faulty
from let_core.results.deleting import delete_runs

steps = []
def before(name, path):
    if name == "move":
        steps.append(path)
        if len(steps) == 2:
            with open(sys.argv[1], "w") as fifo:
                fifo.write("there")
            time.sleep(600)
let_core.dataset.locate = _faulty(before)
delete_runs(project_name="P", user="u")
"""


def test_a_delete_killed_between_two_files_leaves_a_state_that_counts_right(let_home: Path, tmp_path: Path) -> None:
    store = Store(let_home)
    location = locate(str(let_home / "runs"))
    import pandas as pd

    for first in (0, 3):  # two compacted P files, each with runs of u and of x
        write_frame(location, pd.DataFrame([row for index in range(first, first + 3)
                                            for row in _run(index, user="ux"[index % 2]).rows(__version__)]))
    files = sorted(name for name in _files(location) if name.startswith("project=P/"))
    assert len(files) == 2, files
    write_run(location, _run(9, project="Q").rows(__version__))
    assert (_runs(project_name="P", user="u"), _runs(project_name="P", user="x"), _runs()) == (3, 3, 7)
    fifo = tmp_path / "there"
    os.mkfifo(fifo)
    child = subprocess.Popen([sys.executable, "-c", KILLED_MIDWAY, str(fifo)],
                             env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)})
    try:
        with open(fifo) as signal:
            assert signal.read() == "there"
        child.kill()
        child.wait(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=60)
    # One compacted file has lost its u rows, the other is as it was: some matching runs are
    # gone, none counts twice, no x run is missing.
    left = _runs(project_name="P", user="u")
    assert 0 < left < 3
    assert _runs(project_name="P", user="x") == 3 and _runs(project_name="Q") == 1
    frame = load_results(latest_only=False)
    assert not frame.duplicated(["run_id", "backend"]).any()
    # The killed delete's other temporary file is hidden (no reader sees it; compaction
    # removes it after an hour); the same delete again finishes the job.
    assert any("/." in name for name in _files(location))
    assert delete_results(project_name="P", user="u") == left
    assert _runs(project_name="P", user="u") == 0 and _runs() == 4
    assert list(store.rows()) == []


def test_another_tools_file_keeps_its_own_columns_through_a_rewrite(let_home: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    partition = let_home / "runs" / "project=P" / "year=2026"
    partition.mkdir(parents=True)
    pq.write_table(pa.table({"run_id": ["f1", "f2", "f3"], "project_name": ["P"] * 3, "user": ["a", "b", "b"],
                             "backend": ["manual"] * 3, "energy_consumed": [0.1, 0.2, 0.3],
                             "note": ["mine", "kept", "kept too"]}), partition / "foreign.parquet")
    # No user column at all: no row of it can match a user filter, so it stays as it is.
    pq.write_table(pa.table({"run_id": ["g1"], "project_name": ["P"], "energy_consumed": [0.5]}),
                   partition / "no-user.parquet")
    untouched = (partition / "no-user.parquet").read_bytes()
    done = delete_runs(project_name="P", user="a")
    assert (done.dataset_rows, done.dataset_files, done.store_rows) == (1, 1, 0)
    rest = pq.read_table(partition / "foreign.parquet")
    assert rest.column_names == ["run_id", "project_name", "user", "backend", "energy_consumed", "note"]
    assert rest.to_pydict()["note"] == ["kept", "kept too"] and rest["user"].to_pylist() == ["b", "b"]
    assert (partition / "no-user.parquet").read_bytes() == untouched
    assert sorted(load_results(project_name="P")["run_id"]) == ["f2", "f3", "g1"]
    # Rows the statement counts for no run (no kind, no times) are still deleted, and said so.
    output = CliRunner().invoke(cli, ["delete", "-p", "P", "-u", "b", "--yes"]).output
    assert "deleted 0 run(s) (2 stored row(s) that count for no run)" in output, output
    assert load_results(project_name="P")["run_id"].tolist() == ["g1"]
