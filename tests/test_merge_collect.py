"""`lett merge`: collecting stores from colleagues (LET 1.x, LET 0.1.x, CodeCarbon) without duplicates."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from let_backends.manual import ManualBackend
from let_core.cli import cli
from let_core.errors import ConfigurationError, LetWarning
from let_core.merge import merge
from let_core.results import load_results
from let_core.store import Store
from let_core.tracker import EnergyTracker

DATA = Path(__file__).parent / "data"


def _record(store: Path, project: str, energy: float, n: int = 1) -> list[str]:
    ids = []
    for _ in range(n):
        with EnergyTracker(project_name=project, output_dir=store,
                           backends=[ManualBackend(energy_kwh=energy)], reporters=["csv"]) as tracker:
            pass
        ids.append(tracker.run_id)
    return ids


def test_merge_dedups_and_keeps_every_other_row(tmp_path: Path) -> None:
    alice = _record(tmp_path / "alice", "paper", 0.1, n=2)
    bob = _record(tmp_path / "bob", "paper", 0.2, n=3)
    into = tmp_path / "institute"
    report = merge([tmp_path / "alice" / "emissions.csv", tmp_path / "bob"], into)
    assert (report.added, report.duplicates) == (5, 0)
    assert "merged 5 new row(s) from 2 file(s)" in report.summary()
    # Sent in again, plus a colleague's copy of alice's file: nothing new.
    again = merge([tmp_path / "alice" / "emissions.csv", tmp_path / "bob" / "emissions.csv"], into)
    assert (again.added, again.duplicates) == (0, 5)
    frame = load_results(into)
    assert sorted(frame["run_id"]) == sorted(alice + bob)
    assert frame["energy_consumed"].sum() == pytest.approx(0.8)


def test_merge_reads_let_014_and_plain_codecarbon(tmp_path: Path) -> None:
    legacy = tmp_path / "legacy.csv"
    shutil.copy(DATA / "let014_emissions.csv", legacy)
    with open(legacy, newline="") as handle:
        legacy_rows = list(csv.DictReader(handle))
    into = tmp_path / "store"
    mine = _record(into, "vision", 0.3)
    report = merge([legacy], into)
    assert report.added == len(legacy_rows) and report.duplicates == 0
    frame = load_results(into)
    assert len(frame) == len(legacy_rows) + 1
    old = frame[frame["run_id"] != mine[0]]
    # LET 0.1.x rows get LET's columns from experiment_id (project___user___host).
    assert set(old["project_name"]) == {r["experiment_id"].split("___")[0] for r in legacy_rows} and set(old["backend"]) == {"codecarbon"}
    assert set(old["kind"]) == {"estimate"}
    assert merge([legacy], into).added == 0


def test_a_file_that_is_not_an_emissions_file_is_rejected_with_its_columns(tmp_path: Path) -> None:
    good = tmp_path / "good"
    _record(good, "p", 0.1)
    wrong = tmp_path / "metrics.csv"
    wrong.write_text("epoch,loss,run_id\n1,0.5,x\n")
    with pytest.raises(ConfigurationError) as error:
        merge([good / "emissions.csv", wrong], tmp_path / "into")
    message = str(error.value)
    assert str(wrong) in message
    assert "timestamp, duration, emissions, energy_consumed" in message and "Nothing was merged" in message
    assert not Store(tmp_path / "into").path.exists()  # all files checked before anything is written


def test_let_merge_command(tmp_path: Path) -> None:
    _record(tmp_path / "a", "p", 0.1, n=2)
    runner = CliRunner()
    result = runner.invoke(cli, ["merge", str(tmp_path / "a" / "emissions.csv"), "--into", str(tmp_path / "all")])
    assert result.exit_code == 0, result.output
    assert "2 added" in result.output and "merged 2 new row(s) from 1 file(s)" in result.output
    bad = tmp_path / "notes.csv"
    bad.write_text("hello\n")
    result = runner.invoke(cli, ["merge", str(bad), "--into", str(tmp_path / "all")])
    assert result.exit_code == 1
    assert "notes.csv is not an emissions file" in result.output and "energy_consumed" in result.output


@pytest.mark.parametrize("energy", ["-5", "nan", "inf", "1e308", "3,2", "x"])
def test_merge_refuses_a_file_with_an_energy_that_is_no_energy(tmp_path: Path, energy: str) -> None:
    source = tmp_path / "in.csv"
    source.write_text("timestamp,project_name,run_id,experiment_id,duration,emissions,energy_consumed\n"
                      "2024-01-01T00:00:00,codecarbon,r1,p___u___h,10,0.1,0.2\n"
                      f'2024-01-01T00:00:00,codecarbon,r2,p___u___h,10,0.1,"{energy}"\n')
    into = tmp_path / "store"
    with pytest.raises(ConfigurationError, match=r"energy_consumed .*line 3.*Nothing was merged"):
        merge([source], into)
    assert not (into / "emissions.csv").exists()


def test_stored_rows_with_unusable_energy_are_warned_not_silently_dropped(tmp_path: Path) -> None:
    (tmp_path / "emissions.csv").write_text(
        "timestamp,project_name,run_id,experiment_id,duration,emissions,energy_consumed\n"
        "2024-01-01T00:00:00,codecarbon,r1,p___u___h,10,0.1,0.2\n"
        "2024-01-01T00:00:00,codecarbon,r2,p___u___h,10,0.1,-5\n")
    with pytest.warns(LetWarning, match=r"1 row\(s\) have no usable energy_consumed.*run r2"):
        frame = load_results(tmp_path)
    assert len(frame) == 2  # kept, shown, not counted


def test_merge_says_what_it_left_out_and_reads_short_rows(tmp_path: Path) -> None:
    """A CodeCarbon file whose older rows lack the newer header's trailing fields, with one line
    a hand edit broke (a quote never closed): every row merges, the broken line is named."""
    source = tmp_path / "codecarbon.csv"
    header = "timestamp,project_name,run_id,duration,emissions,energy_consumed,codecarbon_version,cpu_model,task_name"
    source.write_text(header + "\n"
                      "2024-05-01T10:00:00,p,A,10,0.04,0.1\n"                       # short: 6 of 9 fields
                      '2024-05-01T11:00:00,p,B,10,0.04,0.1,2.2.0,"Intel,\n'          # a quote never closed
                      "2024-05-01T12:00:00,p,C,10,0.08,0.2,2.3.4,Intel,\n")
    with pytest.warns(LetWarning) as caught:
        report = merge([source], tmp_path / "into")
    said = " | ".join(str(w.message) for w in caught)
    assert report.added == 2
    assert "1 row(s) of" in said and "lack trailing fields" in said, said
    assert "1 line(s) are no row (line 3" in said, said
    assert sorted(load_results(tmp_path / "into")["run_id"]) == ["A", "C"]
