"""Every CodeCarbon column set loads, merges and is counted: the corpus in tests/data/codecarbon.

The files (written by tests/data/codecarbon/make_corpus.py with the column sets CodeCarbon
really wrote, from before 1.0 to 3.3) go through all three paths: ``load_results`` on the
file as a store, ``lett merge`` into a fresh store, and ``lett statement`` on both. Semantics:
no row is dropped; a last line without a final newline is a row; rows of one ``run_id`` are
cumulative checkpoints of one run, counted once with the last (largest-duration) row; an empty
energy cell is a warning naming the row, not "no stored runs".
"""

from __future__ import annotations

import csv
import re
import shutil
import warnings
from pathlib import Path

import pytest
from attrs import frozen
from click.testing import CliRunner

from let_core import load_results
from let_core.cli import cli
from let_core.errors import LetWarning
from let_core.statement import paper_statement

DATA = Path(__file__).parent / "data"
CORPUS = DATA / "codecarbon"


@frozen
class Expected:
    rows: int  # data rows in the file, each one a row that must load
    runs: int  # distinct runs once checkpoints collapse
    kwh: float  # what the statement counts
    blank: int = 0  # rows with an empty energy cell (warned about, not counted)


EXPECTED: dict[str, Expected] = {
    "cc0_experiment_uuid.csv": Expected(rows=2, runs=2, kwh=0.3),
    "cc1_no_run_id.csv": Expected(rows=3, runs=3, kwh=0.1),
    "cc2.csv": Expected(rows=2, runs=2, kwh=0.75),
    "cc2_checkpoints.csv": Expected(rows=5, runs=2, kwh=0.004 + 0.01),
    "cc2_empty_energy.csv": Expected(rows=3, runs=3, kwh=0.06, blank=1),
    "cc2_no_final_newline.csv": Expected(rows=2, runs=2, kwh=0.13),
    "cc2_windows_crlf.csv": Expected(rows=2, runs=2, kwh=0.1),
    "cc3.csv": Expected(rows=2, runs=2, kwh=1.0),
    "cc3_bom.csv": Expected(rows=2, runs=2, kwh=1.0),
    "cc3_reordered.csv": Expected(rows=2, runs=2, kwh=1.0),
}
FILES = sorted(EXPECTED)


def _data_lines(path: Path) -> int:
    return sum(1 for line in path.read_bytes().split(b"\n")[1:] if line.strip())


def _statement_kwh(text: str) -> float:
    value, unit = re.search(r"(?:estimated to|measured as) ([0-9.e-]+) (kWh|Wh)", text).groups()  # type: ignore[union-attr]
    return float(value) / (1000 if unit == "Wh" else 1)


def _last_durations(path: Path) -> list[float]:
    """Per run id (per row where there is none) the largest duration: what a run counts as."""
    with open(path, newline="", encoding="utf-8-sig") as handle:
        rows = list(csv.DictReader(handle))
    runs: dict[str, float] = {}
    for index, row in enumerate(rows):
        key = row.get("run_id") or f"row {index}"
        runs[key] = max(runs.get(key, 0.0), float(row["duration"]))
    return list(runs.values())


def _all_durations(path: Path) -> list[float]:
    with open(path, newline="", encoding="utf-8-sig") as handle:
        return [float(row["duration"]) for row in csv.DictReader(handle)]


def _as_store(name: str, tmp_path: Path) -> Path:
    folder = tmp_path / "direct"
    folder.mkdir()
    shutil.copy(CORPUS / name, folder / "emissions.csv")
    return folder


def test_corpus_is_what_the_table_says() -> None:
    assert sorted(p.name for p in CORPUS.glob("*.csv")) == FILES
    for name, expected in EXPECTED.items():
        assert _data_lines(CORPUS / name) == expected.rows, name
    assert (CORPUS / "cc3_bom.csv").read_bytes().startswith(b"\xef\xbb\xbf")
    assert not (CORPUS / "cc2_no_final_newline.csv").read_bytes().endswith(b"\n")
    assert (CORPUS / "cc2_windows_crlf.csv").read_bytes().count(b"\r\n") == 3
    assert "run_id" not in (CORPUS / "cc1_no_run_id.csv").read_text().splitlines()[0].split(",")
    header = (CORPUS / "cc3_reordered.csv").read_text().splitlines()[0].split(",")
    assert header != sorted(header) and header[0] != "timestamp" and "cpu_utilization_percent" in header


@pytest.mark.parametrize("name", FILES)
def test_load_results_reads_every_run(name: str, tmp_path: Path) -> None:
    expected = EXPECTED[name]
    folder = _as_store(name, tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        latest = load_results(folder)
    # one row per run (the last checkpoint), the columns CodeCarbon's whatever order or BOM
    assert len(latest) == expected.runs
    assert {"timestamp", "energy_consumed", "duration", "project_name", "backend"} <= set(latest.columns)
    assert set(latest["backend"]) == {"codecarbon"} and set(latest["kind"]) == {"estimate"}
    assert latest["energy_consumed"].sum() == pytest.approx(expected.kwh)
    assert sorted(latest["duration"]) == pytest.approx(sorted(_last_durations(CORPUS / name)))
    blank_warnings = [w for w in caught if issubclass(w.category, LetWarning)
                      and "no usable energy_consumed value" in str(w.message)]
    assert bool(blank_warnings) == bool(expected.blank)
    if expected.blank:
        assert "e0000000-0000-4000-8000-000000000002" in str(blank_warnings[0].message)


@pytest.mark.parametrize("name", FILES)
def test_load_results_all_rows_keeps_every_row(name: str, tmp_path: Path) -> None:
    folder = _as_store(name, tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LetWarning)
        every = load_results(folder, latest_only=False)
    assert len(every) == EXPECTED[name].rows
    assert sorted(every["duration"]) == pytest.approx(sorted(_all_durations(CORPUS / name)))


@pytest.mark.parametrize("name", FILES)
def test_statement_on_the_file_counts_each_run_once(name: str, tmp_path: Path) -> None:
    folder = _as_store(name, tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LetWarning)
        text = paper_statement(folder)
    assert _statement_kwh(text) == pytest.approx(EXPECTED[name].kwh, rel=1e-3)
    assert "CodeCarbon" in text


@pytest.mark.parametrize("name", FILES)
def test_let_merge_then_statement(name: str, tmp_path: Path) -> None:
    expected = EXPECTED[name]
    into = tmp_path / "merged"
    runner = CliRunner()
    merged = runner.invoke(cli, ["merge", str(CORPUS / name), "--into", str(into)])
    assert merged.exit_code == 0, merged.output
    assert f"{expected.rows} row(s)" in merged.output
    statement = runner.invoke(cli, ["statement", "--output-dir", str(into)])
    assert statement.exit_code == 0, statement.output
    assert _statement_kwh(statement.output) == pytest.approx(expected.kwh, rel=1e-3)
    # each run's last checkpoint (largest duration) is in the store
    stored = load_results(into)
    assert sorted(stored["duration"]) == pytest.approx(sorted(_last_durations(CORPUS / name)))
    # merging the same file again adds nothing
    again = runner.invoke(cli, ["merge", str(CORPUS / name), "--into", str(into)])
    assert again.exit_code == 0 and "merged 0 new row(s)" in again.output


def test_empty_energy_cell_is_a_row_warning_not_no_stored_runs(tmp_path: Path) -> None:
    folder = _as_store("cc2_empty_energy.csv", tmp_path)
    with pytest.warns(LetWarning, match=r"1 row\(s\) have no usable energy_consumed.*e0000000-0000-4000-8000-000000000002"):
        text = paper_statement(folder)
    assert _statement_kwh(text) == pytest.approx(0.06)
    # a store whose only row has no energy says so instead of "no stored runs"
    only = tmp_path / "only"
    only.mkdir()
    lines = (CORPUS / "cc2_empty_energy.csv").read_text().splitlines()
    (only / "emissions.csv").write_text("\n".join([lines[0], lines[2]]) + "\n")
    with pytest.warns(LetWarning, match="no usable energy_consumed"):
        with pytest.raises(Exception) as info:
            paper_statement(only)
    assert "no stored runs" not in str(info.value) and "1 stored row(s)" in str(info.value)
    merged = CliRunner().invoke(cli, ["merge", str(CORPUS / "cc2_empty_energy.csv"),
                                      "--into", str(tmp_path / "m")])
    assert merged.exit_code == 0 and "3 added" in merged.output


def test_checkpoints_merge_message_names_them(tmp_path: Path) -> None:
    merged = CliRunner().invoke(cli, ["merge", str(CORPUS / "cc2_checkpoints.csv"),
                                      "--into", str(tmp_path / "m")])
    assert merged.exit_code == 0, merged.output
    # the three earlier rows of one run are checkpoints, not duplicates of stored rows
    assert "checkpoint" in merged.output
    assert not re.search(r"\b[1-9][0-9]* (duplicate|already there)", merged.output), merged.output


def test_whole_corpus_in_one_store(tmp_path: Path) -> None:
    """Every file merged into one store: each file's runs count once, nothing is lost."""
    into = tmp_path / "all"
    distinct = [n for n in FILES if n not in ("cc3_bom.csv", "cc3_reordered.csv")]  # same runs as cc3
    result = CliRunner().invoke(cli, ["merge", *(str(CORPUS / n) for n in FILES), "--into", str(into)])
    assert result.exit_code == 0, result.output
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LetWarning)
        text = paper_statement(into)
        frame = load_results(into)
    total = sum(EXPECTED[n].kwh for n in distinct)
    assert _statement_kwh(text) == pytest.approx(total, rel=1e-3)
    assert len(frame) == sum(EXPECTED[n].runs for n in distinct)
