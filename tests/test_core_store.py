"""The central store never loses a row: concurrent writers, old files, killed writers, deletes."""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from let_backends.manual import ManualBackend
from let_core import delete_results, load_results
from let_core.errors import StoreError
from let_core.results.cache import cache_path, cached_totals
from let_core.schema import STORE_COLUMNS
from let_core.statement import paper_statement
from let_core.store import STORE_FILE, Store
from let_core.tracker import EnergyTracker
from tests.launches import launched_together
from tests.privileges import as_unprivileged

DATA = Path(__file__).parent / "data"
LEGACY = DATA / "let014_emissions.csv"


def record(project: str = "p", output_dir: Path | None = None, kwh: float = 0.001, **kwargs) -> dict:
    with EnergyTracker(project_name=project, output_dir=output_dir, reporters=["csv"],
                       backends=[ManualBackend(energy_kwh=kwh, hardware="Test CPU")], **kwargs) as t:
        pass
    return t.stop()


def test_100_sequential_runs_keep_100_rows(let_home):
    ids = {record()["run_id"] for _ in range(100)}
    frame = load_results()
    assert len(frame) == 100
    assert set(frame["run_id"]) == ids
    assert not list(let_home.glob("*.bak"))


WRITER = textwrap.dedent("""
    import sys
    from let_core import EnergyTracker
    from let_backends.manual import ManualBackend
    for _ in range(int(sys.argv[2])):
        with EnergyTracker(project_name="par", output_dir=sys.argv[1], reporters=["csv"],
                           backends=[ManualBackend(energy_kwh=0.001)]):
            pass
""")


def test_eight_processes_appending_at_once_lose_nothing(tmp_path):
    store = tmp_path / "shared"
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(store), "25"]) for _ in range(8)]
    assert [p.wait(timeout=300) for p in procs] == [0] * 8
    frame = load_results(store)
    assert len(frame) == 200
    assert frame["run_id"].nunique() == 200
    lines = (store / STORE_FILE).read_text().splitlines()
    assert len(lines) == 201 and lines[0] == ",".join(STORE_COLUMNS)


def test_let014_store_loads_with_project_user_and_host(let_home):
    let_home.mkdir(parents=True)
    shutil.copy(LEGACY, let_home / STORE_FILE)
    frame = load_results()
    assert len(frame) == 3
    assert list(frame["project_name"]) == ["vision", "vision", "nlp"]
    assert list(frame["user"]) == ["root", "root", "alice"]
    assert list(frame["hostname"]) == ["vm", "vm", "gpu-box"]
    assert set(frame["backend"]) == {"codecarbon"}
    assert set(frame["methodology"]) == {"CodeCarbon 3.2.3"}
    # LET 0.1.4 wrote no gpu_model column on this GPU-less machine (and crashed printing its
    # statement because of it); the hardware is the CPU alone.
    assert list(frame["hardware"]) == ["Intel(R) Xeon(R) Processor"] * 3
    assert len(load_results(project_name="vision")) == 2
    assert len(load_results(user="alice")) == 1


def test_projected_read_of_a_store_with_legacy_rows_derives_their_columns(let_home):
    """`columns=` reads the legacy keys only when a row has no backend: over a 0.1.4 store the
    projected frame derives project, methodology and hardware like a full read, and its totals
    are those of the full read and of the cache."""
    from let_core.results import cached_totals, frame_totals
    from let_core.results.counting import TOTALS_COLUMNS

    let_home.mkdir(parents=True)
    shutil.copy(LEGACY, let_home / STORE_FILE)
    projected, full = load_results(columns=TOTALS_COLUMNS), load_results()
    assert list(projected["project_name"]) == ["vision", "vision", "nlp"]
    assert set(projected["methodology"]) == {"CodeCarbon 3.2.3"}
    assert list(projected["hardware"]) == ["Intel(R) Xeon(R) Processor"] * 3
    assert frame_totals(projected) == frame_totals(full) == cached_totals()


def test_appending_to_a_let014_store_keeps_every_old_row_and_column(let_home):
    let_home.mkdir(parents=True)
    shutil.copy(LEGACY, let_home / STORE_FILE)
    with open(LEGACY, newline="") as handle:
        old_rows = list(csv.DictReader(handle))
    record(project="vision")
    record(project="new")
    frame = load_results()
    assert len(frame) == 5
    for old in old_rows:
        match = frame[frame["run_id"] == old["run_id"]]
        assert len(match) == 1
        assert match.iloc[0]["energy_consumed"] == pytest.approx(float(old["energy_consumed"]))
        assert match.iloc[0]["cpu_utilization_percent"] == pytest.approx(float(old["cpu_utilization_percent"]))
        assert match.iloc[0]["experiment_id"] == old["experiment_id"]
    assert not [p for p in let_home.iterdir() if p.name.endswith((".bak", ".migrating"))]
    # The migrated file has LET's header first, and the old project's statement counts every run.
    header = (let_home / STORE_FILE).read_text().splitlines()[0].split(",")
    assert header[: len(STORE_COLUMNS)] == list(STORE_COLUMNS)
    text = paper_statement(project_name="vision")
    assert "CodeCarbon 3.2.3" in text and "a known energy figure" in text


def test_plain_codecarbon_file_with_another_column_order_is_migrated(let_home):
    let_home.mkdir(parents=True)
    columns = ["run_id", "timestamp", "project_name", "experiment_id", "energy_consumed", "emissions",
               "duration", "codecarbon_version", "cpu_model", "gpu_model", "custom_note"]
    with open(let_home / STORE_FILE, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        writer.writerow(["r1", "2024-01-01T00:00:00", "codecarbon", "x", "0.5", "0.19", "60", "2.8.0",
                         "AMD EPYC 7742 64-Core Processor", "", "keep me"])
    record()
    frame = load_results()
    old = frame[frame["run_id"] == "r1"].iloc[0]
    assert old["custom_note"] == "keep me"
    assert old["hardware"] == "AMD EPYC 7742 64-Core Processor"
    assert old["project_name"] == "codecarbon"  # no project___user___host: nothing to derive


def test_torn_last_line_is_skipped_on_load_and_quarantined_on_next_append(let_home):
    record()
    path = let_home / STORE_FILE
    complete = path.read_bytes()
    torn = complete.splitlines(keepends=True)[1][:80]
    with open(path, "ab") as handle:
        handle.write(torn)  # half a row, no newline
    with pytest.warns(Warning, match="last line is torn .*not a row"):  # reported, not silent
        assert len(load_results()) == 1
    with pytest.warns(Warning, match="torn last line .* to .*quarantine"):
        record()
    frame = load_results()
    assert len(frame) == 2
    assert path.read_bytes().startswith(complete)
    quarantined = list((let_home / "recovered").glob("quarantine-*"))
    assert [q.read_bytes() for q in quarantined] == [torn + b"\n"]


# A writer killed in the middle of its write: os.write puts half of the bytes on disk, then
# the process dies (SIGKILL), exactly what a power cut or the OOM killer leaves behind.
TORN_WRITER = textwrap.dedent("""
    import os, signal, sys
    from let_core.store import Store
    from let_core.schema import STORE_COLUMNS
    store = Store(sys.argv[1])
    row = {c: "x" * 200 for c in STORE_COLUMNS}
    for i in range(3):  # three complete runs of 50 rows (one row per backend)
        store.append([{**row, "run_id": f"r{i}", "backend": f"b{j}", "energy_consumed": "0.1"}
                      for j in range(50)])
    real_write = os.write
    def torn(fd, data):
        real_write(fd, data[: len(data) // 2])
        os.kill(os.getpid(), signal.SIGKILL)
    os.write = torn
    store.append([{**row, "run_id": "torn", "backend": f"b{j}", "energy_consumed": "0.1"} for j in range(50)])
""")


def test_writer_killed_mid_append_leaves_a_loadable_store(tmp_path):
    store = tmp_path / "killed"
    proc = subprocess.run([sys.executable, "-c", TORN_WRITER, str(store)], timeout=60)
    assert proc.returncode == -signal.SIGKILL  # it really died inside its write
    raw = (store / STORE_FILE).read_bytes()
    assert not raw.endswith(b"\n")  # and left a torn last line behind
    frame = load_results(store, latest_only=False)
    counts = frame.groupby("run_id").size().to_dict()
    assert {k: v for k, v in counts.items() if k != "torn"} == {"r0": 50, "r1": 50, "r2": 50}
    assert sorted(counts, key=lambda run: (run[0] != "r", int(run[1:]) if run[0] == "r" else 0)) \
        == ["r0", "r1", "r2"] + (["torn"] if "torn" in counts else [])  # run ids in numeric order
    assert counts.get("torn", 0) < 50  # never a whole run from half a write
    torn_line = raw[raw.rindex(b"\n") + 1:]
    with pytest.warns(Warning, match="torn last line"):
        Store(store).append([{"run_id": "after", "backend": "manual", "energy_consumed": 1.0}])
    frame = load_results(store, latest_only=False)
    counts_after = frame.groupby("run_id").size().to_dict()
    assert counts_after == {**counts, "after": 1}  # the complete lines of the torn run stay rows
    quarantine = list((tmp_path / "let_home" / "recovered").glob("quarantine-*"))
    assert [q.read_bytes() for q in quarantine] == [torn_line + b"\n"]  # the torn line, kept aside


def test_delete_removes_only_matching_rows_and_says_how_many(let_home):
    for project in ("a", "a", "b"):
        record(project=project)
    assert delete_results(project_name="a") == 2
    assert list(load_results()["project_name"]) == ["b"]
    assert delete_results(project_name="nope") == 0
    assert delete_results(hostname="no-such-host") == 0
    assert len(load_results()) == 1
    assert delete_results() == 1
    assert len(load_results()) == 0


def test_delete_of_legacy_rows_uses_their_derived_project(let_home):
    let_home.mkdir(parents=True)
    shutil.copy(LEGACY, let_home / STORE_FILE)
    assert delete_results(project_name="nlp") == 1
    assert list(load_results()["project_name"]) == ["vision", "vision"]


def test_unknown_filter_value_gives_an_empty_frame_and_unknown_filter_an_error(let_home):
    record()
    assert load_results(project_name="missing").empty
    with pytest.raises(TypeError, match="filter"):
        Store().delete(projekt="p")


def test_missing_store_loads_empty_with_columns(tmp_path):
    frame = load_results(tmp_path / "nothing-here")
    assert frame.empty and "energy_consumed" in frame.columns


def test_unreadable_output_dir_is_a_clear_error(tmp_path):
    locked = tmp_path / "locked"
    record(output_dir=locked)
    locked.chmod(0)
    code = ("import sys\nfrom let_core import load_results\nfrom let_core.errors import StoreError\n"
            "try:\n    load_results(sys.argv[1])\nexcept StoreError as exc:\n    print('StoreError:', exc)\n")
    try:
        done = subprocess.run(as_unprivileged([sys.executable, "-c", code, str(locked)]),
                              capture_output=True, text=True, timeout=120,
                              env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)})
    finally:
        locked.chmod(0o755)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("StoreError:") and "cannot" in done.stdout and str(locked) in done.stdout
    assert len(load_results(locked)) == 1  # readable again, and nothing was lost


def test_output_dir_that_is_a_file_is_a_clear_error(tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder")
    with pytest.raises(StoreError, match="writable folder"):
        Store(blocker / "sub").append([{"run_id": "x"}])


def test_totals_cache_follows_appends_and_rewrites(let_home):
    for _ in range(3):
        record(kwh=0.1)
    assert cached_totals(project_name="p").energy_kwh == pytest.approx(0.3)
    assert cache_path(Store()).exists()
    record(kwh=0.1)
    assert cached_totals(project_name="p").runs == 4
    delete_results(project_name="p")
    record(kwh=0.2)
    totals = cached_totals()
    assert totals.runs == 1 and totals.energy_kwh == pytest.approx(0.2)
    cache_path(Store()).write_text("{not json")
    assert cached_totals().energy_kwh == pytest.approx(0.2)


def test_values_with_line_breaks_stay_on_one_line(let_home):
    with pytest.raises(RuntimeError):
        with EnergyTracker(backends=[ManualBackend(energy_kwh=0.1)], reporters=["csv"]):
            raise RuntimeError("line one\nline two")
    assert len((let_home / STORE_FILE).read_text().splitlines()) == 2
    assert load_results().iloc[0]["error"] == "RuntimeError: line one line two"


def test_output_dir_that_is_a_file_cannot_be_loaded(tmp_path):
    blocker = tmp_path / "emissions.csv"
    blocker.write_text("a file")
    with pytest.raises(StoreError, match="is a file"):
        load_results(blocker)


def test_ranks_of_one_job_measuring_one_machine_count_once_in_the_statement(let_home, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "777")
    for rank, kwh in enumerate((0.4, 0.5, 0.45)):
        monkeypatch.setenv("RANK", str(rank))
        record(project="ddp", kwh=kwh)  # each rank's estimate covers the whole (same) machine
    monkeypatch.delenv("SLURM_JOB_ID")
    launched_together(let_home / STORE_FILE, "777")  # (tracked one after another here; ranks run at once)
    record(project="ddp", kwh=0.2)      # an ordinary run counts fully
    totals = cached_totals(project_name="ddp")
    assert totals.energy_kwh == pytest.approx(0.5 + 0.2)
    assert "estimated to 0.700 kWh" in paper_statement(project_name="ddp")


def test_ranks_measuring_their_own_gpus_add_up(let_home, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "778")
    for rank in range(4):
        monkeypatch.setenv("RANK", str(rank))
        with EnergyTracker(project_name="ddp-gpu", reporters=["csv"], backends=[ManualBackend(
                energy_kwh=0.25, kind="metered", methodology="NVML", scope="gpu",
                hardware="NVIDIA A100-SXM4-40GB", name="nvml")]):
            pass
    assert cached_totals(project_name="ddp-gpu").metered_kwh == pytest.approx(1.0)
    from let_core.results import aggregate

    table = aggregate(load_results(project_name="ddp-gpu"), "job")
    assert table["kwh"].sum() == pytest.approx(1.0)
