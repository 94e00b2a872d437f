"""Random stores (quoting, separators, unicode, control characters, huge fields, torn tails,
junk lines): load, statement, delete and doctor raise nothing but LetError, and no operation
but an explicit delete reduces the number of rows."""

from __future__ import annotations

import csv
import io
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from let_core import doctor, load_results
from let_core.cli import cli
from let_core.errors import LetError, StoreError
from let_core.results.cache import cached_totals
from let_core.schema import STORE_COLUMNS
from let_core.store import STORE_FILE, Store

LEGACY_COLUMNS = ["timestamp", "project_name", "run_id", "experiment_id", "duration", "emissions",
                  "energy_consumed", "country_name", "codecarbon_version", "cpu_model"]

any_text = st.text(st.characters(blacklist_categories=["Cs"]), max_size=40)
one_line_text = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\r\n"), max_size=40)


@st.composite
def stores(draw: st.DrawFn) -> tuple[bytes, int, bool]:
    """(file bytes, rows in it, whether it holds lines that are not rows)."""
    columns = draw(st.sampled_from([list(STORE_COLUMNS), LEGACY_COLUMNS]))
    count = draw(st.integers(0, 8))
    rows = []
    for index in range(count):
        text = draw(any_text if index < count - 1 else one_line_text)
        if draw(st.integers(0, 9)) == 0:
            text = text + "z" * 200_000  # a huge field
        row = {c: "" for c in columns}
        row.update(run_id=f"run{index}", energy_consumed=draw(st.sampled_from(["0.5", "1e308", "-5", "", "x"])),
                   project_name=draw(st.sampled_from(["p", "q", "=1+1", "p,q", 'p"q'])) + draw(one_line_text)[:3],
                   experiment_id=draw(st.sampled_from(["p___u___h", "", "a___b"])))
        if "backend" in row:
            row["backend"] = draw(st.sampled_from(["manual", "codecarbon"]))
        row[draw(st.sampled_from(["cpu_model", "country_name"]))] = text
        rows.append(row)
    # csv quotes a bare carriage return only when asked to (QUOTE_MINIMAL looks for the line
    # terminator): unquoted, it is a line break to every reader, i.e. a damaged file.
    bare_cr = any("\r" in str(value) for row in rows for value in row.values())
    quoting = csv.QUOTE_ALL if bare_cr else draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]))
    terminator = draw(st.sampled_from(["\n", "\r\n"]))

    def encoded(write: Callable[[csv.DictWriter], object]) -> bytes:
        buffer = io.StringIO()
        write(csv.DictWriter(buffer, fieldnames=columns, quoting=quoting, lineterminator=terminator))
        return buffer.getvalue().encode("utf-8")

    # Records kept apart, so junk lands between records: spliced into a quoted multi-line
    # field it would just be part of a valid value, not damage.
    records = [encoded(lambda w: w.writeheader())] + [encoded(lambda w, r=row: w.writerow(r)) for row in rows]
    junk = draw(st.lists(st.sampled_from([b"a,b\n", b"x" + b",y" * (len(columns) + 1) + b"\n",
                                          b"\xff\xfe,\x00\n"]), max_size=3))
    if junk:
        where = draw(st.integers(1, len(records)))
        records = records[:where] + junk + records[where:]
    data = b"".join(records)
    if draw(st.booleans()):
        data = b"\xef\xbb\xbf" + data
    if rows and draw(st.booleans()):
        data = data.rstrip(b"\r\n")  # last row without its line break: still a row
    torn = draw(st.booleans())
    if torn:
        if not data.endswith(b"\n"):
            data += b"\n"
        fields = draw(st.integers(1, len(columns) - 1))
        data += ",".join(["torn"] * fields).encode()  # a killed writer's half line
    bad_utf8 = any(b"\xff" in line for line in junk)
    return data, len(rows), bool(junk) or torn or bad_utf8


def count_rows(directory: Path) -> int:
    return sum(1 for _ in Store(directory).rows())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow,
                                                                  HealthCheck.data_too_large])
@given(store=stores(), target=st.sampled_from(["p", "q", "nobody"]))
def test_random_stores_never_raise_but_let_error_nor_lose_rows(store, target, let_home):
    data, rows, damaged = store
    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        directory = Path(folder)
        path = directory / STORE_FILE
        path.write_bytes(data)

        assert len(load_results(directory)) == rows
        assert count_rows(directory) == rows
        try:
            cached_totals(directory)
        except LetError:
            pass
        result = CliRunner().invoke(cli, ["statement", "--output-dir", str(directory)])
        assert result.exception is None or isinstance(result.exception, SystemExit), result.output
        assert path.read_bytes() == data  # reading changes nothing

        report = doctor.diagnose(directory)
        assert bool(report.problems) == damaged, report.findings

        matching = sum(1 for row in Store(directory).rows() if row.get("project_name") == target)
        try:
            removed = Store(directory).delete(project_name=target)
        except StoreError:
            assert damaged and path.read_bytes() == data  # refused, nothing changed
            removed = None
        if removed is not None:
            assert removed == matching
            rows -= removed
        assert count_rows(directory) == rows

        repaired = doctor.repair(directory)
        assert count_rows(directory) == rows, repaired.actions
        assert not repaired.problems, repaired.findings
        if removed is None:
            assert Store(directory).delete(project_name=target) == matching
            rows -= matching
        assert len(load_results(directory)) == rows
