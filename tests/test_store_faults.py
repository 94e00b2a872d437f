"""Faults of the disk and of the file (issue 10, issue 11 items 1 and 3): each test injects the
fault it names and counts the rows kept. Nothing here may lose a row silently."""

from __future__ import annotations

import csv
import errno
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
from click.testing import CliRunner

from let_backends.manual import ManualBackend
from let_core import doctor, load_results
from let_core.cli import cli
from let_core.config import recovery_file
from let_core.csvfile import MAX_FIELD_CHARS
from let_core.errors import LetWarning, StoreError
from let_core.results.cache import cached_totals
from let_core.schema import STORE_COLUMNS
from let_core.store import STORE_FILE, Store
from let_core.tracker import EnergyTracker


def track(output_dir: Path | None = None, project: str = "p", kwh: float = 0.001, **kwargs) -> dict:
    with EnergyTracker(project_name=project, output_dir=output_dir, reporters=["csv"],
                       backends=[ManualBackend(energy_kwh=kwh, hardware="Test CPU")], **kwargs) as t:
        pass
    return t.stop()


def stored_ids(directory: Path) -> list[str]:
    return [row["run_id"] for row in Store(directory).rows()]


def rescued_ids(directory: Path) -> list[str]:
    path = recovery_file("rescue", Path(directory) / STORE_FILE)
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        return [row["run_id"] for row in csv.DictReader(handle)]


# ----------------------------------------------------------------------------- 1. full disk
@pytest.fixture
def small_disk(tmp_path: Path):
    """A 64 KiB tmpfs when we may mount one (root), else None."""
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        yield None
        return
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
                          capture_output=True)
    if done.returncode != 0:
        yield None
        return
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_full_disk_keeps_every_run_in_the_store_or_the_rescue_file(small_disk, tmp_path, monkeypatch):
    if small_disk is None:
        # No tmpfs: an os.write that writes half of what it is given, then fails for good.
        budget = {"bytes": 60_000}
        real_write = os.write

        def short_write(fd: int, data) -> int:
            if budget["bytes"] <= 0:
                raise OSError(errno.ENOSPC, "No space left on device")
            part = bytes(data)[: max(1, min(len(data) // 2, budget["bytes"]))]
            budget["bytes"] -= len(part)
            return real_write(fd, part)

        monkeypatch.setattr("let_core.store.os.write", short_write)
        store_dir = tmp_path / "store"
    else:
        store_dir = small_disk / "store"
    ids = []
    errors = 0
    while errors < 5 and len(ids) < 1000:  # until the disk has refused five runs
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ids.append(track(store_dir)["run_id"])
        errors += any("rescue-" in str(w.message) and "disk is full" in str(w.message) for w in caught)
    kept, rescued = stored_ids(store_dir), rescued_ids(store_dir)
    assert errors > 0, "the disk never filled: the test injected nothing"
    assert sorted(kept + rescued) == sorted(ids)  # each run exactly once, none lost
    assert load_results(store_dir)["run_id"].tolist() == kept  # no torn line left behind
    assert (store_dir / STORE_FILE).read_bytes().endswith(b"\n")


def test_short_writes_are_completed(tmp_path, monkeypatch):
    real_write = os.write
    calls = []

    def short_write(fd: int, data) -> int:
        calls.append(len(data))
        return real_write(fd, bytes(data)[: max(1, len(data) // 3)])

    monkeypatch.setattr("let_core.store.os.write", short_write)
    ids = [track(tmp_path)["run_id"] for _ in range(5)]
    assert len(calls) > 5 * 2  # every append needed several writes
    monkeypatch.setattr("let_core.store.os.write", real_write)  # (undo() would drop LET_HOME too)
    assert stored_ids(tmp_path) == ids


# ----------------------------------------------------------------------------- 2. damaged header
@pytest.mark.parametrize("damage", ["drop_column", "nul_bytes"])
def test_damaged_header_is_never_rewritten_and_doctor_restores_it(let_home, damage):
    ids = [track()["run_id"] for _ in range(20)]
    path = let_home / STORE_FILE
    header, rest = path.read_bytes().split(b"\n", 1)
    if damage == "drop_column":
        header = b",".join(name for name in header.split(b",") if name != b"cpu_model")
    else:
        header = b"\0" * len(header)
    path.write_bytes(header + b"\n" + rest)
    before = path.read_bytes()
    with pytest.warns(LetWarning, match=r"(header of .* damaged|cannot parse: line 2).*lett doctor.*saved to .*rescue-"):
        late = track()["run_id"]
    assert path.read_bytes() == before  # not rewritten, not appended to
    assert rescued_ids(let_home) == [late]
    report = doctor.diagnose()
    assert [(f.line, "header damaged" in f.message) for f in report.problems][:1] == [(1, True)]
    assert any("rescued row" in f.message for f in report.problems)
    repaired = doctor.repair()
    assert not repaired.problems, repaired.findings
    assert stored_ids(let_home) == ids + [late]  # 21 rows: the 20 and the rescued run
    backups = list((let_home / "recovered").glob("backup-*"))
    assert [b.read_bytes() for b in backups] == [before]


def test_unparsable_lines_block_rewrites_until_doctor_sets_them_aside(let_home):
    """Item 8: `lett delete -p q` removed a `p` row that had an extra comma."""
    track(project="p")
    track(project="q")
    path = let_home / STORE_FILE
    lines = path.read_bytes().splitlines(keepends=True)
    lines[1] = lines[1].replace(b",p,", b",p,extra,", 1)  # the p row now has one field too many
    path.write_bytes(b"".join(lines))
    result = CliRunner().invoke(cli, ["delete", "--project", "q", "--yes"])
    assert result.exit_code == 1 and "line 2" in result.output and "lett doctor" in result.output
    assert path.read_bytes() == b"".join(lines)
    found = CliRunner().invoke(cli, ["doctor"])
    assert found.exit_code == 1 and f"{path}:2: malformed line" in found.output
    fixed = CliRunner().invoke(cli, ["doctor", "--repair"])
    assert fixed.exit_code == 0, fixed.output
    assert recovery_file("quarantine", path, ".txt").read_bytes() == lines[1]
    assert CliRunner().invoke(cli, ["delete", "--project", "q", "--yes"]).exit_code == 0
    assert list(load_results()["project_name"]) == []  # the p row is in quarantine, q deleted
    assert b",p,extra," in recovery_file("quarantine", path, ".txt").read_bytes()


# ----------------------------------------------------------------------------- 4. lock deadline
HOLDER = textwrap.dedent("""
    import sys, time
    from let_core.store import Store
    with Store(sys.argv[1]).locked(exclusive=True, create=True):
        print("locked", flush=True)
        time.sleep(120)
""")


def test_stopped_lock_holder_gives_an_error_naming_its_pid_and_the_run_is_rescued(tmp_path, monkeypatch):
    store_dir = tmp_path / "store"
    track(store_dir)
    monkeypatch.setenv("LET_LOCK_TIMEOUT", "0.5")
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(store_dir)], stdout=subprocess.PIPE,
                              env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        assert holder.stdout.readline().strip() == b"locked"
        os.kill(holder.pid, signal.SIGSTOP)
        with pytest.warns(LetWarning, match=rf"LET_LOCK_TIMEOUT.*|PID {holder.pid}") as caught:
            late = track(store_dir)["run_id"]
        message = " ".join(str(w.message) for w in caught)
        assert f"PID {holder.pid}" in message and "LET_LOCK_TIMEOUT" in message
        assert rescued_ids(store_dir) == [late]
        with pytest.raises(StoreError, match=f"PID {holder.pid}"):
            load_results(store_dir)
        with pytest.raises(StoreError, match="lock"):
            cached_totals(store_dir)
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    assert len(load_results(store_dir)) == 1
    assert doctor.repair(store_dir).actions  # puts the rescued run back
    assert len(load_results(store_dir)) == 2


# ----------------------------------------------------------------------------- 5. field sizes
def test_oversized_fields_are_capped_when_written_and_load_when_foreign(let_home):
    with EnergyTracker(project_name="p", reporters=["csv"],
                       backends=[ManualBackend(energy_kwh=0.001, hardware="Test CPU")]) as tracker:
        tracker.log_params({"notes": "x" * 1_100_000})
    frame = load_results()
    assert len(frame) == 1
    cell = frame["params"].iloc[0]
    assert len(cell) <= MAX_FIELD_CHARS + 100 and cell.endswith("characters in all]")
    # A file another tool wrote, with a 3 MB field: every reader copes.
    path = let_home / STORE_FILE
    row = {c: "" for c in STORE_COLUMNS} | {"run_id": "huge", "backend": "manual", "kind": "estimate",
                                            "energy_consumed": "0.002", "project_name": "p",
                                            "user": frame["user"].iloc[0],
                                            "hostname": frame["hostname"].iloc[0],
                                            "params": "y" * 3_000_000}
    with open(path, "a", newline="", encoding="utf-8") as handle:
        csv.DictWriter(handle, fieldnames=STORE_COLUMNS, lineterminator="\n").writerow(row)
    assert len(load_results()) == 2
    assert cached_totals(project_name="p").energy_kwh == pytest.approx(0.003)
    for command in (["statement", "--project", "other"], ["statement", "--project", "p"],
                    ["cite"], ["delete", "--project", "q", "--yes"]):
        result = CliRunner().invoke(cli, command)
        assert result.exception is None or isinstance(result.exception, SystemExit), (command, result.output)
        assert "field larger" not in result.output
    assert len(load_results()) == 2


def test_control_characters_and_bad_bytes_never_give_a_traceback(let_home):
    Store().append([{"run_id": "c", "backend": "manual", "energy_consumed": 0.001,
                     "project_name": "p\x1fq\x00", "error": "bad\x07bell\udcff"}])
    frame = load_results()
    assert frame["project_name"].tolist() == ["p\\x1fq\\x00"]
    path = let_home / STORE_FILE
    with open(path, "ab") as handle:
        handle.write(path.read_bytes().splitlines(keepends=True)[1].replace(b",c,", b",d\xff,"))
    with pytest.warns(LetWarning, match="not UTF-8"):
        assert len(load_results()) == 2
    result = CliRunner().invoke(cli, ["results"])
    assert result.exit_code == 0 and "Traceback" not in result.output
    assert CliRunner().invoke(cli, ["doctor"]).output.count(":3: bytes that are not UTF-8") == 1


def test_store_that_is_a_folder_is_a_clear_error(let_home):
    (let_home / STORE_FILE).mkdir(parents=True)
    result = CliRunner().invoke(cli, ["results"])
    assert result.exit_code == 1 and "is a folder" in result.output
    assert CliRunner().invoke(cli, ["doctor"]).exit_code == 1


def test_zero_byte_parquet_file_is_reported_not_a_traceback(let_home):
    track()
    broken = let_home / "runs" / "project=p" / "year=2026"
    broken.mkdir(parents=True)
    (broken / "empty.parquet").write_bytes(b"")
    with pytest.raises(StoreError, match="lett doctor"):
        load_results()
    found = CliRunner().invoke(cli, ["doctor"])
    assert found.exit_code == 1 and "empty.parquet: dataset file does not open" in found.output
    assert CliRunner().invoke(cli, ["doctor", "--repair"]).exit_code == 0
    assert len(load_results()) == 1


# ----------------------------------------------------------------------------- 8. smaller ones
def test_csv_export_escapes_formulas_and_the_store_keeps_them(let_home, tmp_path):
    track(project="=1+1")
    out = tmp_path / "out.csv"
    assert CliRunner().invoke(cli, ["export", "csv", str(out)]).exit_code == 0
    exported = list(csv.DictReader(open(out, newline="")))
    assert exported[0]["project_name"] == "'=1+1"
    assert float(exported[0]["energy_consumed"]) == pytest.approx(0.001)
    assert load_results()["project_name"].tolist() == ["=1+1"]


KILLED_DELETE = textwrap.dedent("""
    import os, signal, sys
    import let_core.store as store
    def die(*args):
        os.kill(os.getpid(), signal.SIGKILL)  # after the temporary file is complete, before the swap
    store.os.replace = die
    store.Store(sys.argv[1]).delete(project_name="a")
""")


def test_killed_delete_keeps_the_old_store_and_its_temporary_file_is_cleaned(tmp_path):
    for project in ("a", "b", "a"):
        track(tmp_path, project=project)
    done = subprocess.run([sys.executable, "-c", KILLED_DELETE, str(tmp_path)],
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert done.returncode == -signal.SIGKILL
    assert len(list(tmp_path.glob(".emissions.*.rewriting"))) == 1
    assert len(load_results(tmp_path)) == 3  # the old set, whole
    assert any(".rewriting" in str(f.path) for f in doctor.diagnose(tmp_path).problems)
    track(tmp_path, project="c")
    assert not list(tmp_path.glob(".emissions.*.rewriting"))
    assert len(load_results(tmp_path)) == 4


def test_extreme_energy_from_a_backend_is_stored_without_overflow(let_home):
    Store().append([{"run_id": "x", "backend": "third", "energy_consumed": 1e308,
                     "emissions": float("inf"), "duration": 10 ** 400}])
    frame = load_results()
    assert frame["energy_consumed"].tolist() == [1e308]


# ----------------------------------------------------------------------------- issue 11.1
def test_last_line_without_newline_is_a_row_and_the_next_append_keeps_it(let_home):
    ids = [track()["run_id"] for _ in range(3)]
    path = let_home / STORE_FILE
    path.write_bytes(path.read_bytes().rstrip(b"\n"))  # as CodeCarbon's examples/emissions.csv
    assert load_results()["run_id"].tolist() == ids
    assert cached_totals(project_name="p").runs == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing torn: no warning
        ids.append(track()["run_id"])
    assert load_results()["run_id"].tolist() == ids
    assert stored_ids(let_home) == ids


# ----------------------------------------------------------------------------- issue 11.3
def test_codecarbon_backup_of_a_let_store_is_folded_back_once(let_home):
    codecarbon = pytest.importorskip("codecarbon", reason="codecarbon is a dependency; reinstall LET")
    ids = [track()["run_id"] for _ in range(2)]
    tracker = codecarbon.OfflineEmissionsTracker(country_iso_code="DEU", output_dir=str(let_home),
                                                 log_level="error", save_to_file=True)
    tracker.start()
    tracker.stop()
    assert (let_home / f"{STORE_FILE}.bak").exists()  # CodeCarbon moved LET's store aside
    with pytest.warns(LetWarning, match="put back 2 row"):
        ids.append(track()["run_id"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once
        ids.append(track()["run_id"])
    stored = stored_ids(let_home)
    assert len(stored) == 5 and set(ids) <= set(stored)
    assert (let_home / f"{STORE_FILE}.bak").exists()  # nothing deleted
    assert not [f for f in doctor.diagnose().problems if ".bak" in str(f.path)]


def test_let_doctor_folds_a_codecarbon_backup_too(let_home):
    ids = [track()["run_id"] for _ in range(2)]
    os.rename(let_home / STORE_FILE, let_home / f"{STORE_FILE}.bak")
    ids.append(track()["run_id"])
    os.utime(let_home / f"{STORE_FILE}.bak")  # (the append above folded it; make it look new)
    Store().delete()  # an explicit delete: the store is empty, the .bak still holds 2 rows
    assert stored_ids(let_home) == []
    result = CliRunner().invoke(cli, ["doctor"])
    assert result.exit_code == 0 and "put back 2 row(s) from emissions.csv.bak" in result.output
    assert sorted(stored_ids(let_home)) == sorted(ids[:2])
    assert "put back" not in CliRunner().invoke(cli, ["doctor"]).output  # said once


def test_numbered_backups_are_found_like_codecarbon_names_them(let_home, tmp_path):
    ids = [track()["run_id"]]
    for name in (f"{STORE_FILE}.bak", f"{STORE_FILE}_0.bak", f"{STORE_FILE}_1.bak"):
        ids.append(track(tmp_path / name)["run_id"])
        os.rename(tmp_path / name / STORE_FILE, let_home / name)
    (let_home / f"{STORE_FILE}_x.bak").write_text("not CodeCarbon's")
    assert [p.name for p in Store().backups()] == [f"{STORE_FILE}.bak", f"{STORE_FILE}_0.bak",
                                                   f"{STORE_FILE}_1.bak"]
    assert len([f for f in doctor.diagnose().problems if "not in the store" in f.message]) == 3
    report = doctor.repair()
    assert sorted(stored_ids(let_home)) == sorted(ids) and not report.problems
    assert len(list(let_home.glob("*.bak"))) == 4  # nothing deleted


def test_rescued_run_in_the_message_is_a_real_path(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("x")
    with pytest.warns(LetWarning) as caught:
        run_id = track(blocked / "store")["run_id"]
    path = re.search(r"saved to (\S+\.csv)", " ".join(str(w.message) for w in caught)).group(1)
    assert Path(path).parent == tmp_path / "let_home" / "recovered"
    assert [r["run_id"] for r in csv.DictReader(open(path))] == [run_id]


# ----------------------------------------------------------------------------- 8. compaction
COMPACTOR = textwrap.dedent("""
    import sys
    from let_core.dataset import compact, locate
    report = compact(locate(sys.argv[1]))
    print(report.files_before, report.files_after, report.rows)
""")


def test_two_compactions_serialise_and_readers_never_fail(let_home, monkeypatch):
    from let_core.dataset import locate, write_run

    location = locate(str(let_home / "runs"))
    files = 120  # enough that the second compaction waits on the first's lock while readers read
    rows = [{"run_id": f"r{i}", "backend": "manual", "energy_consumed": 0.001, "project_name": "p",
             "start_time": "2026-01-01T00:00:00+00:00"} for i in range(files)]
    for row in rows:
        write_run(location, [row])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    compactors = [subprocess.Popen([sys.executable, "-c", COMPACTOR, str(let_home / "runs")],
                                   stdout=subprocess.PIPE, env=env) for _ in range(2)]
    reads = []
    while any(p.poll() is None for p in compactors):
        reads.append(len(load_results(columns=["run_id"])))  # must never raise
    outputs = [p.communicate()[0].split() for p in compactors]
    assert [p.returncode for p in compactors] == [0, 0]
    # One compaction merged every file; the other, after waiting for the lock, found one file.
    assert sorted(o[:2] for o in outputs) == [[b"1", b"1"], [str(files).encode(), b"1"]]
    assert set(reads) <= {files} and len(load_results()) == files
    assert len(list((let_home / "runs").rglob("*.parquet"))) == 1


def test_io_error_mid_write_cuts_the_file_back_and_rescues_the_run(let_home, monkeypatch):
    ids = [track()["run_id"] for _ in range(3)]
    before = (let_home / STORE_FILE).read_bytes()
    real_write = os.write

    def failing_write(fd: int, data) -> int:
        if os.readlink(f"/proc/self/fd/{fd}") != str(let_home / STORE_FILE):
            return real_write(fd, data)  # the rescue file is on a healthy disk
        real_write(fd, bytes(data)[:40])  # part of the line reaches the store, then EIO
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr("let_core.store.os.write", failing_write)
    with pytest.warns(LetWarning, match="Input/output error.*left as it was.*saved to") as caught:
        late = track()["run_id"]
    monkeypatch.setattr("let_core.store.os.write", real_write)  # (undo() would drop LET_HOME too)
    assert (let_home / STORE_FILE).read_bytes() == before  # no partial line left
    assert stored_ids(let_home) == ids, caught
    assert rescued_ids(let_home) == [late], [str(w.message) for w in caught]
    doctor.repair()
    assert stored_ids(let_home) == ids + [late]


def test_compaction_removes_a_killed_writers_old_temporary_files_only(let_home):
    from let_core.dataset import compact, locate, write_run

    location = locate(str(let_home / "runs"))
    write_run(location, [{"run_id": "r", "backend": "manual", "energy_consumed": 0.1, "project_name": "p",
                          "start_time": "2026-01-01T00:00:00+00:00"}])
    partition = next((let_home / "runs").glob("project=p/year=*"))
    old, fresh = partition / ".r1.parquet.abc.tmp", partition / ".r2.parquet.def.tmp"
    old.write_bytes(b"half a file")
    fresh.write_bytes(b"a writer at work")
    os.utime(old, (os.path.getatime(old) - 7200, os.path.getmtime(old) - 7200))
    compact(location)
    assert not old.exists() and fresh.exists()
    assert len(load_results()) == 1


def test_invalid_utf8_row_prints_no_traceback_on_stderr(tmp_path: Path) -> None:
    """Arrow's invalid-row handler cannot decode such a row and Python would print that as an
    "Exception ignored" traceback; the user gets the warning and every row instead."""
    import subprocess
    import sys

    from let_core.schema import STORE_COLUMNS

    store = tmp_path / "store"
    store.mkdir()
    rows = [",".join(f"r{i}" if c == "run_id" else "0.1" if c == "energy_consumed" else "x"
                     for c in STORE_COLUMNS).encode() for i in range(3)]
    bad = b"\xff\xfe" + b",y" * (len(STORE_COLUMNS) + 2)  # wrong width and not UTF-8
    (store / "emissions.csv").write_bytes(",".join(STORE_COLUMNS).encode() + b"\n"
                                          + b"\n".join(rows[:2] + [bad] + rows[2:]) + b"\n")
    code = ("import warnings; warnings.simplefilter('ignore'); from let_core import load_results; "
            f"print(len(load_results({str(store)!r})))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "3"
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr, done.stderr
