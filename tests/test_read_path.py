"""Issue 19, the counting half: each input of the issue's table that printed a wrong number,
counted the same by the statement at stop (totals cache), the cold statement (frame) and
`let results --by`, and right."""

from __future__ import annotations

import json
import warnings
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

from let_core._version import __version__
from let_core.cli import cli
from let_core.errors import LetWarning
from let_core.records import Measurement, Run
from let_core.results import cached_totals, frame_totals, load_results
from let_core.results.counting import TOTALS_COLUMNS
from let_core.statement import paper_statement
from let_core.store import Store

START = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _run(index: int, kwh: float, *, project: str = "p", job: str = "", rank: str = "",
         start: datetime | None = None, seconds: float = 60.0, backend: str = "manual",
         intensity: float = 1000.0) -> Run:
    begin = start if start is not None else START + timedelta(hours=index)
    environment = {"job_id": job, "rank": rank} if job else {}
    return Run(run_id=f"run-{index:04d}", project_name=project, user="u", hostname="h",
               start_time=begin, end_time=begin + timedelta(seconds=seconds), status="ok",
               measurements=(Measurement(backend=backend, methodology="Manual", kind="estimate",
                                         energy_kwh=kwh, duration_s=seconds, scope="system"),),
               country_iso_code="DEU", country_name="Germany", carbon_intensity=intensity,
               environment=environment)


def _by(what: str, *args: str) -> list[dict]:
    output = CliRunner().invoke(cli, ["results", "--by", what, "--json", *args]).output
    return [json.loads(line) for line in output.splitlines() if line.strip()]


def _every_path(expected_kwh: float, **filters: str) -> None:
    """The statement at stop (cache), the cold statement (frame) and --by project|job agree."""
    assert cached_totals(**filters).energy_kwh == pytest.approx(expected_kwh)
    frame = load_results(**filters, columns=TOTALS_COLUMNS)
    assert frame_totals(frame).energy_kwh == pytest.approx(expected_kwh)
    assert f"{expected_kwh:.3f} kWh" in paper_statement(**filters)
    for by in ("project", "job"):
        assert sum(group["kwh"] for group in _by(by)) == pytest.approx(expected_kwh), by


def test_sequential_runs_in_one_allocation_each_count(let_home: Path) -> None:
    store = Store()
    for index in range(5):  # one after the other inside one SLURM_JOB_ID, never overlapping
        store.append(_run(index, 0.1, job="4711", rank="0").rows(__version__))
    _every_path(0.5)


def test_ranks_of_one_launch_running_together_count_once(let_home: Path) -> None:
    store = Store()
    for index in range(4):  # four ranks of one launch, same node, same time: one machine's figure
        store.append(_run(index, 0.1 + index * 0.01, job="4711", rank=str(index), start=START).rows(__version__))
    # then a second launch in the same allocation, after the first ended
    for index in range(4, 6):
        store.append(_run(index, 0.2, job="4711", rank=str(index - 4),
                          start=START + timedelta(hours=1)).rows(__version__))
    _every_path(0.13 + 0.2)


def test_ranks_of_one_launch_stored_around_another_launch_count_once(let_home: Path) -> None:
    """Two ranks of launch B are stored with a run of launch A (earlier, same allocation)
    between them: the rule kept only the key's last launch, so B's second rank, not
    overlapping A, counted whole again (found by the property test: 0.125 kWh for 0.0625)."""
    store = Store()
    later = START + timedelta(days=1)
    store.append(_run(0, 0.25, job="j1", rank="0", start=later).rows(__version__))
    store.append(_run(1, 0.1, job="j1", rank="0", start=START).rows(__version__))
    store.append(_run(2, 0.25, job="j1", rank="1", start=later).rows(__version__))
    _every_path(0.25 + 0.1)


def test_interleaved_checkpoints_count_once_with_each_runs_latest(let_home: Path) -> None:
    header = "timestamp,project_name,run_id,duration,emissions,energy_consumed,codecarbon_version\n"
    lines = ["2024-05-01T10:00:00,codecarbon,A,10,0.00004,0.1,2.3.4",
             "2024-05-01T10:00:00,codecarbon,B,10,0.00004,0.1,2.3.4",
             "2024-05-01T10:00:10,codecarbon,A,20,0.00008,0.2,2.3.4",
             "2024-05-01T10:00:10,codecarbon,B,20,0.00008,0.2,2.3.4"]
    let_home.mkdir(parents=True, exist_ok=True)
    (let_home / "emissions.csv").write_text(header + "\n".join(lines) + "\n")
    _every_path(0.4)


def test_codecarbon_task_rows_of_one_run_add_up(let_home: Path) -> None:
    header = ("timestamp,project_name,run_id,experiment_id,duration,emissions,energy_consumed,"
              "country_iso_code,codecarbon_version,task_name\n")
    lines = [f"2024-05-01T10:00:0{i},codecarbon,R,x___u___h,10,0.0001,{kwh},DEU,2.8.0,task{i}"
             for i, kwh in enumerate([0.5, 0.25, 0.125])]
    let_home.mkdir(parents=True, exist_ok=True)
    (let_home / "emissions.csv").write_text(header + "\n".join(lines) + "\n")
    _every_path(0.875)


def test_an_in_place_edit_after_a_statement_is_counted(let_home: Path) -> None:
    store = Store()
    for index in range(100):  # (at 400 g/kWh, so 0.1 is the energy cell only)
        store.append(_run(index, 0.1, intensity=400.0).rows(__version__))
    assert cached_totals().energy_kwh == pytest.approx(10.0)
    path = store.path
    text = path.read_text()
    row = text.splitlines()[40]
    edited = row.replace(",0.1,", ",0.9,", 1)
    assert edited != row and len(edited) == len(row)
    path.write_text(text.replace(row, edited))
    _every_path(10.8)


def test_a_truncated_and_regrown_store_is_counted_afresh(let_home: Path) -> None:
    store = Store()
    for index in range(10):
        store.append(_run(index, 0.1).rows(__version__))
    assert cached_totals().energy_kwh == pytest.approx(1.0)
    path = store.path
    original = path.read_bytes()
    lines = original.splitlines(keepends=True)
    # Truncated to its first 5 runs, then other runs appended until it is longer than before.
    path.write_bytes(b"".join(lines[:6]))
    for index in range(10, 16):
        store.append(_run(index, 0.3).rows(__version__))
    assert path.stat().st_size >= len(original)
    _every_path(0.5 + 1.8)


def test_a_run_straddling_the_cached_part_and_the_tail_counts_once(let_home: Path) -> None:
    store = Store()
    first = _run(0, 0.1)
    store.append(first.rows(__version__))
    assert cached_totals().energy_kwh == pytest.approx(0.1)
    # A later checkpoint of the same run (CodeCarbon style: same run id, cumulative), after the cache.
    later = Run(run_id=first.run_id, project_name="p", user="u", hostname="h", start_time=first.start_time,
                end_time=first.start_time + timedelta(seconds=120), status="ok",
                measurements=(Measurement(backend="manual", methodology="Manual", kind="estimate",
                                          energy_kwh=0.25, duration_s=120, scope="system"),),
                country_iso_code="DEU", country_name="Germany", carbon_intensity=1000.0)
    store.append(later.rows(__version__))
    _every_path(0.25)


def test_a_bad_emissions_cell_is_recomputed_and_said_once(let_home: Path) -> None:
    store = Store()
    rows = _run(0, 0.1, intensity=400.0).rows(__version__)
    rows[0]["emissions"] = -0.2
    store.append(rows)
    other = _run(1, 0.1, intensity=400.0).rows(__version__)
    other[0]["emissions"] = 1e9
    store.append(other)
    store.append(_run(2, 0.1, intensity=400.0).rows(__version__))
    assert cached_totals().emissions_kg == pytest.approx(0.12)
    assert frame_totals(load_results(columns=TOTALS_COLUMNS)).emissions_kg == pytest.approx(0.12)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        text = paper_statement()
    assert "0.120 kg" in text and "400 gCO2/kWh" in text
    said = [w for w in caught if issubclass(w.category, LetWarning) and "emissions" in str(w.message)]
    assert len(said) == 1 and "2 row" in str(said[0].message)


def test_a_zero_kwh_run_states_its_own_intensity(let_home: Path) -> None:
    Store().append(_run(0, 0.0, intensity=380.95).rows(__version__))
    text = paper_statement()
    assert "381 gCO2/kWh" in text and " 0 gCO2/kWh" not in text


def test_star_import_of_the_results_package_works() -> None:
    namespace: dict = {}
    exec("from let_core.results import *", namespace)
    assert "load_results" in namespace and "KindTotals" not in namespace


def test_delete_removes_runs_from_the_store_and_the_dataset(let_home: Path) -> None:
    from let_core import delete_results
    from let_core.dataset import locate, write_run

    store = Store()
    root = locate(str(let_home / "runs"))  # the default dataset load_results reads beside the store
    for index, project in enumerate(["P", "P", "Q"]):
        rows = _run(index, 0.1, project=project).rows(__version__)
        store.append(rows)
        write_run(root, rows)  # the same run in both sources (counted once)
    only_dataset = _run(9, 0.1, project="P").rows(__version__)
    write_run(root, only_dataset)
    assert "0.300 kWh" in paper_statement(project_name="P")
    output = CliRunner().invoke(cli, ["delete", "--project", "P", "--yes"]).output
    assert "deleted 3 run(s)" in output, output  # what disappears from the statement: 3 runs
    assert load_results(project_name="P").empty
    assert "0.100 kWh" in paper_statement()
    assert delete_results(project_name="Q") == 1
    assert load_results().empty


def test_the_cache_index_hashes_a_column_as_it_hashes_one_unit() -> None:
    import pandas as pd

    from let_core.results.cache import unit_hash, unit_hashes

    texts = ["", "a", "run-0001", "ü-ÿ\x1ftask0", "0" * 80, "9f8e7d6c-1234-4abc-8def-0123456789ab"]
    assert unit_hashes(pd.Series(texts)).tolist() == [unit_hash(t) for t in texts if t]
    uuids = [f"{n:08x}-1234-4abc-8def-0123456789ab" for n in (0, 7, 2**32 - 1)]  # one width: the matrix way
    assert unit_hashes(pd.Series(uuids)).tolist() == [unit_hash(t) for t in uuids]


def test_a_quote_left_open_on_the_last_line_costs_that_line_only(let_home: Path) -> None:
    """A hand edit opens a quote in the last stored line and never closes it: the quote runs to
    the end of the file without spanning lines, so no re-read line by line catches it. Read as
    a row short of fields, its hardware would be the rest of the line; it is no row."""
    store = Store()
    for index in range(3):
        store.append(_run(index, 0.1).rows(__version__))
    assert cached_totals().energy_kwh == pytest.approx(0.3)
    lines = store.path.read_text().splitlines(keepends=True)
    lines[-1] = lines[-1].replace(",system,", ',system,"', 1)
    store.path.write_text("".join(lines))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", LetWarning)
        _every_path(0.2)
        hardware = set(load_results()["hardware"])
    assert any("malformed line" in str(w.message) and "line" in str(w.message) for w in caught)
    assert all("," not in h for h in hardware), hardware
    store.append(_run(9, 0.4).rows(__version__))  # the lines after it count: only it is lost
    _every_path(0.6)


def test_legacy_rows_short_of_trailing_fields_count_under_a_filter(let_home: Path) -> None:
    """CodeCarbon 2.x rows appended after LET's (no trailing blanks): a project filter and a
    column selection must still derive their project from ``experiment_id``."""
    store = Store()
    store.append(_run(0, 0.1, project="p").rows(__version__))
    header = store.path.read_text().split("\n", 1)[0].split(",")
    values = {"timestamp": "2026-01-02T00:00:00+00:00", "project_name": "codecarbon", "run_id": "cc-1",
              "experiment_id": "p___u___h", "duration": "10", "emissions": "0.025", "energy_consumed": "0.025",
              "country_iso_code": "DEU", "codecarbon_version": "2.2.0"}
    fields = [values.get(column, "") for column in header]
    while not fields[-1]:
        fields.pop()
    with open(store.path, "a") as handle:
        handle.write(",".join(fields) + "\n")
    _every_path(0.125, project_name="p")
    with warnings.catch_warnings(record=True) as caught:  # the frame path says it too, once
        warnings.simplefilter("always", LetWarning)
        load_results(project_name="p", columns=TOTALS_COLUMNS)
    said = [str(w.message) for w in caught if "lack trailing fields" in str(w.message)]
    assert len(said) == 1 and said[0].startswith("1 row(s)"), [str(w.message) for w in caught]


def test_a_quoted_line_break_is_a_row_on_every_path(let_home: Path) -> None:
    """Another tool's quoted field with a line break in it fits the header: a row, which the
    row path (the statement at stop) used to split as if a stray quote had swallowed a line."""
    let_home.mkdir(parents=True, exist_ok=True)
    (let_home / "emissions.csv").write_text(
        "timestamp,project_name,run_id,experiment_id,duration,emissions,energy_consumed,cpu_model\n"
        '2024-05-01T10:00:00,codecarbon,A,p___u___h,10,0.04,0.1,"Intel\nXeon"\n'
        "2024-05-01T11:00:00,codecarbon,B,p___u___h,10,0.04,0.2,AMD\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", LetWarning)
        _every_path(0.3, project_name="p")
    assert not [str(w.message) for w in caught if "malformed" in str(w.message)]


@pytest.mark.parametrize("cells", [
    ["2026-01-01T00:00:10+00:00", "2026-01-01T00:00:10.250+02:00", "2026-01-01T00:00:10Z", ""],  # LET's own
    ["2026-01-01T00:00:10+00:00", "2022-07-01T11:00:00", "not a time", "9999-01-01T00:00:00+00:00"],  # mixed
], ids=["offsets", "mixed"])
def test_stored_times_load_as_pandas_reads_them(tmp_path: Path, cells: list[str]) -> None:
    """load_results parses LET's zone-qualified times with Arrow and anything else by pandas'
    ISO 8601 rule: either way, each cell is what pandas makes of it (naive times UTC, the
    unreadable NaT)."""
    import pandas as pd

    header = "timestamp,project_name,run_id,duration,emissions,energy_consumed,country_name,start_time"
    lines = [f"{cell},p,run-{i},60,0.001,0.01,Germany,{cell}" for i, cell in enumerate(cells)]
    (tmp_path / "emissions.csv").write_text("\n".join([header, *lines]) + "\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LetWarning)
        frame = load_results(tmp_path, dataset=str(tmp_path / "none")).sort_values("run_id")
    expected = pd.to_datetime(pd.Series([cell or None for cell in cells], dtype=object), errors="coerce", utc=True,
                              format="ISO8601")
    for column in ("start_time", "timestamp"):
        assert str(frame[column].dtype) == "datetime64[ns, UTC]"
        assert frame[column].tolist() == expected.tolist() or (
            frame[column].isna().tolist() == expected.isna().tolist()
            and frame[column].dropna().tolist() == expected.dropna().tolist()), column


@pytest.mark.parametrize("layout", ["crlf", "blank line", "quoted line break"])
def test_line_layouts_count_every_row(tmp_path: Path, layout: str) -> None:
    """The cold read skips its scan for line breaks in cells only when the bytes hold one line
    per record and no CR: Windows line ends, a blank line and a quoted line break each take
    the careful path, and all four runs count (0.1 + 0.2 + 0.3 + 0.4 kWh, added by hand)."""
    header = "timestamp,project_name,run_id,duration,emissions,energy_consumed,country_name,start_time,notes"
    rows = [f"2026-01-01T00:0{i}:00+00:00,p,r{i},60,0.001,0.{i + 1},Germany,2026-01-01T00:0{i}:00+00:00,x"
            for i in range(4)]
    if layout == "crlf":
        text = "\r\n".join([header, *rows]) + "\r\n"
    elif layout == "blank line":
        text = "\n".join([header, rows[0], "", *rows[1:]]) + "\n"
    else:
        text = "\n".join([header, *rows[:3], rows[3].rsplit(",", 1)[0] + ',"two\nlines"']) + "\n"
    (tmp_path / "emissions.csv").write_text(text, newline="")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LetWarning)
        frame = load_results(tmp_path, dataset=str(tmp_path / "none"), columns=TOTALS_COLUMNS)
    assert len(frame) == 4
    assert frame_totals(frame).energy_kwh == pytest.approx(1.0)


def test_two_stray_quotes_whose_record_fits_the_header_cost_only_their_own_line(let_home: Path) -> None:
    """Hand edits open a quote at the start of a cell on line 3 and close one at the end of the
    same cell on line 5: the record they make spans lines 3-5 and has the header's width, so
    nothing but the exact read tells it from another tool's quoted line break. It used to
    swallow line 4's run without a word, with `doctor` saying "no problems"."""
    store = Store()
    for index in range(4):
        store.append(_run(index, 0.1 * (index + 1)).rows(__version__))
    _every_path(1.0)
    lines = store.path.read_text().splitlines(keepends=True)
    column = lines[0].rstrip("\n").split(",").index("project_name")
    for number, edit in ((3, '"{}'), (5, '{}"')):
        fields = lines[number - 1].split(",")
        fields[column] = edit.format(fields[column])
        lines[number - 1] = ",".join(fields)
    store.path.write_text("".join(lines))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", LetWarning)
        _every_path(0.1 + 0.3 + 0.4)  # line 5's run counts, under the project 'p"'
    said = [str(w.message) for w in caught if "malformed" in str(w.message)]
    assert said and all("line 3" in message or "line(s) 3" in message for message in said), said
    result = CliRunner().invoke(cli, ["doctor"])
    assert result.exit_code == 1 and ":3: malformed line" in result.output, result.output
    assert ":4:" not in result.output and "no problems" not in result.output


def test_two_stores_sharing_a_cache_name_each_count_their_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Cache files are named by a CRC-32 of the store's path, which two paths can share: the
    cache names its store inside, so a clash costs a recount, never the other store's totals."""
    from let_core.results import cache

    monkeypatch.setattr(cache, "cache_file", lambda kind, store_path: tmp_path / "cache" / f"{kind}-clash.json")
    first, second = Store(tmp_path / "a"), Store(tmp_path / "b")
    first.append(_run(0, 0.1, project="p").rows(__version__))
    second.append(_run(0, 0.1, project="q").rows(__version__))  # the same bytes but one
    for _ in range(2):  # each read replaces the other's cache file
        assert cached_totals(tmp_path / "a", project_name="p").energy_kwh == pytest.approx(0.1)
        assert cached_totals(tmp_path / "b", project_name="q").energy_kwh == pytest.approx(0.1)
        assert cached_totals(tmp_path / "b", project_name="p").energy_kwh == 0
