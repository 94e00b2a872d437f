"""Damage stays where it is: a damaged line costs that line, never the rows after it; a file
LET cannot read is said to be one (with the fix), and `let doctor --repair` never leaves fewer
rows counting than before."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from click.testing import CliRunner

from let_backends.manual import ManualBackend
from let_core import EnergyTracker, load_results
from let_core.cli import cli
from let_core.errors import LetWarning, StoreError
from let_core.store import STORE_FILE, Store


def _runs(folder: Path, count: int, energy: float = 0.01, start: int = 0) -> None:
    for _index in range(start, start + count):
        with EnergyTracker(project_name="p", output_dir=folder, reporters=[],
                           backends=[ManualBackend(energy_kwh=energy)]):
            pass


def _counted(folder: Path) -> int:
    """Rows load_results counts; 0 when it cannot read the store at all."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return len(load_results(folder, dataset=str(folder / "none")))
        except StoreError:
            return 0


def _doctor(folder: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["doctor", "--output-dir", str(folder), *args])
    return result.exit_code, result.output


def _stray_quote_store(folder: Path) -> None:
    """20 runs, a hand edit opens a quote on line 9 that is never closed, then one more run."""
    _runs(folder, 20)
    path = folder / STORE_FILE
    lines = path.read_text().splitlines(keepends=True)
    fields = lines[8].split(",")
    fields[1] = '"' + fields[1]  # project_name of line 9 now opens a quote
    lines[8] = ",".join(fields)
    path.write_text("".join(lines))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LetWarning)
        _runs(folder, 1, start=20)


def test_a_stray_quote_costs_its_own_line_only(tmp_path):
    folder = tmp_path / "store"
    _stray_quote_store(folder)
    with pytest.warns(LetWarning, match=r"line 9"):
        frame = load_results(folder, dataset=str(tmp_path / "none"))
    assert len(frame) == 20  # 21 runs, one damaged line
    assert frame["energy_consumed"].sum() == pytest.approx(0.20)
    statement = CliRunner().invoke(cli, ["statement", "--output-dir", str(folder)])
    assert "0.200 kWh" in statement.output, statement.output
    code, output = _doctor(folder)
    assert code == 1 and ":9: malformed line: a quote opened on this line is never closed" in output
    assert "no problems" not in output


def test_doctor_repair_moves_only_the_damaged_line(tmp_path):
    folder = tmp_path / "store"
    _stray_quote_store(folder)
    code, output = _doctor(folder, "--repair")
    assert "moved 1 line(s) LET cannot parse (line 9)" in output, output
    assert "rewrote" in output and "with 20 row(s)" in output
    assert _counted(folder) == 20
    assert _doctor(folder)[0] == 0


def _short_rows_file(path: Path) -> None:
    """A CodeCarbon file whose header gained trailing columns its older rows do not have."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = ("timestamp,project_name,run_id,duration,emissions,energy_consumed,country_name,"
              "cpu_model,gpu_model,codecarbon_version,water_consumed,wue")
    rows = [f"2025-01-0{i}T10:00:00,codecarbon,run-{i},60,0.001,0.{i},Germany,CPU X,,2.3.4"
            for i in range(1, 6)]
    rows.append("2025-01-06T10:00:00,codecarbon,run-6,60,0.001,0.6,Germany,CPU X,,3.0.0,0.0,0.0")
    path.write_text(header + "\n" + "\n".join(rows) + "\n")


def test_rows_short_of_trailing_fields_are_rows_said_once(tmp_path):
    folder = tmp_path / "store"
    _short_rows_file(folder / STORE_FILE)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frame = load_results(folder, dataset=str(tmp_path / "none"))
    assert len(frame) == 6
    assert frame["energy_consumed"].sum() == pytest.approx(2.1)
    said = [str(w.message) for w in caught if "skipped" in str(w.message)]
    assert said == []  # none of them is malformed
    assert list(Store(folder).rows())[0]["wue"] == ""


def test_let_merge_takes_rows_short_of_trailing_fields(tmp_path):
    source = tmp_path / "colleague" / STORE_FILE
    _short_rows_file(source)
    result = CliRunner().invoke(cli, ["merge", str(source), "--into", str(tmp_path / "mine")])
    assert result.exit_code == 0, result.output
    assert "6 added" in result.output
    assert _counted(tmp_path / "mine") == 6


def test_padded_header_names_are_read(tmp_path):
    folder = tmp_path / "store"
    _runs(folder, 3)
    path = folder / STORE_FILE
    header, rest = path.read_text().split("\n", 1)
    path.write_text(",".join(f" {name}  " for name in header.split(",")) + "\n" + rest)
    assert _counted(folder) == 3
    _runs(folder, 1, start=3)  # the store still takes runs
    assert _counted(folder) == 4


def _headerless(folder: Path) -> None:
    _runs(folder, 5)
    path = folder / STORE_FILE
    path.write_text(path.read_text().split("\n", 1)[1])


def test_a_deleted_header_line_is_said_and_repair_keeps_every_row(tmp_path):
    folder = tmp_path / "store"
    _headerless(folder)
    with pytest.raises(StoreError, match="line 1 is a data row"):
        load_results(folder, dataset=str(tmp_path / "none"))
    code, output = _doctor(folder)
    assert code == 1 and "line 1 is a data row" in output and "no problems" not in output
    code, output = _doctor(folder, "--repair")
    assert "put LET's header line back" in output, output
    assert _counted(folder) == 5


def test_utf16_store_is_refused_with_the_fix_and_left_as_it_is(tmp_path):
    folder = tmp_path / "store"
    _runs(folder, 3)
    path = folder / STORE_FILE
    path.write_bytes(path.read_text().encode("utf-16"))
    before = path.read_bytes()
    with pytest.raises(StoreError, match="UTF-16.*iconv -f UTF-16 -t UTF-8"):
        load_results(folder, dataset=str(tmp_path / "none"))
    for args in ((), ("--repair",)):
        code, output = _doctor(folder, *args)
        assert code == 1 and "UTF-16" in output and "no problems" not in output, output
    assert path.read_bytes() == before
    with pytest.raises(StoreError, match="UTF-16"):
        Store(folder).append([{"run_id": "x", "energy_consumed": 1}])
    assert path.read_bytes() == before


def test_a_header_in_another_encoding_is_refused_with_the_fix(tmp_path):
    folder = tmp_path / "store"
    _runs(folder, 2)
    path = folder / STORE_FILE
    header, rest = path.read_bytes().split(b"\n", 1)
    path.write_bytes(header.replace(b"project_name", b"project_n\xe4me") + b"\n" + rest)
    with pytest.raises(StoreError, match="not UTF-8 text.*iconv"):
        load_results(folder, dataset=str(tmp_path / "none"))
    code, output = _doctor(folder)
    assert code == 1 and "no problems" not in output


@pytest.mark.parametrize("damage, said", [
    (lambda names: names.__setitem__(names.index("hardware"), ""), "empty column name"),
    (lambda names: names.__setitem__(names.index("hardware"), "kind"), "appear twice"),
])
def test_a_blank_or_duplicated_header_name_is_said(tmp_path, damage, said):
    folder = tmp_path / "store"
    _runs(folder, 3)
    path = folder / STORE_FILE
    header, rest = path.read_text().split("\n", 1)
    names = header.split(",")
    damage(names)
    path.write_text(",".join(names) + "\n" + rest)
    with pytest.warns(LetWarning, match="header is damaged"):
        load_results(folder, dataset=str(tmp_path / "none"))
    code, output = _doctor(folder)
    assert code == 1 and said in output and "no problems" not in output
    before = _counted(folder)
    _doctor(folder, "--repair")
    assert _counted(folder) >= before == 3


def test_a_blanked_backend_name_is_warned_and_names_no_method_the_rows_do_not_show(tmp_path):
    folder = tmp_path / "store"
    _runs(folder, 2)
    path = folder / STORE_FILE
    header, rest = path.read_text().split("\n", 1)
    path.write_text(header.replace(",backend,", ",,") + "\n" + rest)
    with pytest.warns(LetWarning, match="empty column name"):
        frame = load_results(folder, dataset=str(tmp_path / "none"))
    assert "codecarbon" not in set(frame["backend"])
    from let_core.results import cached_totals

    with pytest.warns(LetWarning, match="header is damaged"):  # the statement at stop says it too
        assert cached_totals(folder).runs == 2
    statement = CliRunner().invoke(cli, ["statement", "--output-dir", str(folder)])
    assert "CodeCarbon" not in statement.output, statement.output


FIXTURES = {
    "stray quote": _stray_quote_store,
    "short rows": lambda folder: _short_rows_file(folder / STORE_FILE),
    "header deleted": _headerless,
}


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_repair_never_reduces_the_rows_that_count(tmp_path, name):
    folder = tmp_path / "store"
    FIXTURES[name](folder)
    before = _counted(folder)
    _doctor(folder, "--repair")
    assert _counted(folder) >= before
    if before:
        assert _counted(folder) == before or name == "header deleted"
