"""The read side's CSV source: the central store (``emissions.csv``) as a pandas frame.

Parsed by Arrow from a memory map under the store's shared lock, with the retries that keep a
damaged file readable (``read_frame``); LET 0.1.x / CodeCarbon rows get LET's columns
(``normalize_legacy``). ``loading`` combines this with the Parquet dataset (``let_core.dataset``);
the totals cache counts what this reads. pandas and pyarrow are imported inside the functions.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from let_core.csvfile import data_end, read_header, warn_damaged_header
from let_core.errors import LetWarning, StoreError
from let_core.results.frames import arrow_frame
from let_core.results.rule import MAX_ENERGY_KWH, as_float, usable_energy
from let_core.schema import LET_MARKERS, NUMERIC_COLUMNS, STORE_COLUMNS, legacy_fields
from let_core.store import Store

if TYPE_CHECKING:
    import pandas as pd


#: What ``normalize_legacy`` reads to derive LET's columns for 0.1.x / CodeCarbon rows.
LEGACY_KEYS: tuple[str, ...] = ("experiment_id", "codecarbon_version", "cpu_model", "gpu_model", "run_status")
#: Columns load_results always reads: filters, legacy normalization and deduplication need them.
#: With ``columns=`` the LEGACY_KEYS are read only when the store holds legacy rows (a blank
#: backend): a million LET rows then parse about 40% faster.
BASE_COLUMNS: tuple[str, ...] = ("project_name", "user", "hostname", "run_id", "backend", "let_version", "task",
                                 *LEGACY_KEYS, "methodology", "kind", "scope", "hardware")


@contextlib.contextmanager
def _quiet_undecodable_invalid_rows(handler: Callable[[Any], str]) -> Iterator[None]:
    """Arrow decodes an invalid row's text before it calls our handler; bytes that are not
    UTF-8 make that decoding raise inside Arrow, where Python can only print an "Exception
    ignored" traceback on the user's stderr. The row is accounted for anyway (read again with
    the bytes replaced, and warned about), so exactly that report is dropped, nothing else."""
    previous = sys.unraisablehook

    def hook(unraisable: Any) -> None:
        if not (isinstance(unraisable.exc_value, UnicodeDecodeError) and unraisable.object is handler):
            previous(unraisable)

    sys.unraisablehook = hook
    try:
        yield
    finally:
        sys.unraisablehook = previous


def read_frame(store: Store, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """The CSV store as a frame; only ``columns`` (plus BASE_COLUMNS) when given, which is
    what keeps memory at the data's size for tables over millions of rows."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    from let_core.csvfile import check_emissions_header
    from let_core.schema import renamed_columns

    with store.locked(exclusive=False, create=False) as fd:
        if fd is None:
            import pandas as pd

            return pd.DataFrame(columns=list(STORE_COLUMNS))
        check_emissions_header(fd, store.path)
        header = read_header(fd)
        # Only the rows: a killed writer's torn last line is not one (a last line without its
        # line break that parses is, as many tools write files that way).
        end = 0 if header is None else data_end(fd, len(header))
        torn = 0 if header is None else os.fstat(fd).st_size - end
        with pa.memory_map(str(store.path)) as mapped:
            data = mapped.read_buffer(end)
    if header is None:
        import pandas as pd

        return pd.DataFrame(columns=list(STORE_COLUMNS))
    skipped: list[int] = []

    def skip(row: Any) -> str:
        skipped.append(row.number)
        return "skip"

    wanted = None if columns is None else set(columns) | set(BASE_COLUMNS) - set(LEGACY_KEYS)
    included = [c for c in header if wanted is None or c in wanted]
    # Read again with these only when legacy rows turn up (see BASE_COLUMNS).
    legacy_keys = [c for c in LEGACY_KEYS if c in header and c not in included]

    def read(typed: bool, block_size: int | None) -> pa.Table:
        types = {c: (pa.float64() if typed and c in NUMERIC_COLUMNS else pa.string()) for c in header}
        # The names as read_header gives them (a column-aligned copy pads them with spaces).
        read_options = pacsv.ReadOptions(column_names=header, skip_rows=1,
                                         **({} if block_size is None else {"block_size": block_size}))
        with _quiet_undecodable_invalid_rows(skip):
            return pacsv.read_csv(
                pa.BufferReader(data), read_options=read_options,
                parse_options=pacsv.ParseOptions(invalid_row_handler=skip),
                convert_options=pacsv.ConvertOptions(column_types=types, strings_can_be_null=False,
                                                     quoted_strings_can_be_null=False,
                                                     include_columns=included),
            )

    # Arrow's fast path fails on three kinds of input, each retried with what fixes it: a field
    # longer than a parse block (one block as large as the file), bytes that are not UTF-8
    # (replaced, and reported), a damaged cell in a number column (all read as text, numbers
    # kept where they parse). What still fails is a StoreError pointing to `lett doctor`.
    typed, block_size, replaced = True, None, False
    while True:
        skipped.clear()
        try:
            table = read(typed, block_size)
            if legacy_keys and ("backend" not in table.column_names or _any_blank(table["backend"])):
                included = [c for c in header if c in set(included) | set(legacy_keys)]
                legacy_keys = []
                continue
            break
        except pa.ArrowInvalid as exc:
            message = str(exc).lower()
            if "straddling" in message and block_size is None:
                block_size = min(max(len(data) + 1, 1 << 20), (1 << 31) - 1)
            elif not replaced and ("utf8" in message or not _is_utf8(data)):
                # (An invalid row that is not UTF-8 fails inside Arrow's row handler, which
                # then reports a parse error: hence the check of the bytes themselves.)
                data = pa.py_buffer(bytes(data).decode("utf-8", errors="replace").encode("utf-8"))
                replaced = True
            elif typed:
                typed = False
            else:
                raise StoreError(f"cannot parse the LET store {store.path}: {exc}. Run `lett doctor` "
                                 "to see the damaged lines, `lett doctor --repair` to set them aside.") from None
    # A record spanning lines is another tool's quoted line break, or two stray quotes whose
    # record happens to fit the header; only the exact read tells them apart (csvfile.records).
    spanning = not _one_line_per_record(data, 1 + table.num_rows + len(skipped)) and _holds_a_line_break(table)
    if skipped or spanning:
        # Arrow gives up on some rows Python's csv module reads (a quoted field holding a bare
        # carriage return next to a long one, say). Before calling them malformed, read the
        # file the slow, exact way; the store module's scanner also knows their line numbers.
        if legacy_keys:  # a row Arrow skipped may be a legacy one: the slow read takes their keys too
            included = [c for c in header if c in set(included) | set(legacy_keys)]
            legacy_keys = []
        slow, bad = _python_rows(store, header, included)
        if slow is not None:
            if slow.num_rows > table.num_rows or spanning:
                table, typed = slow, False
            skipped = bad  # exact line numbers (Arrow's are unknown for some rows)
    import pandas as pd

    frame = arrow_frame(table)
    if not typed:
        for column in NUMERIC_COLUMNS:
            if column in frame:
                frame[column] = pd.to_numeric(frame[column], errors="coerce")
    if replaced:
        warnings.warn(f"{store.path}: bytes that are not UTF-8 were read as U+FFFD; `lett doctor` "
                      "shows the lines", LetWarning, stacklevel=3)
    if torn:
        warnings.warn(f"{store.path}: its last line is torn ({torn} bytes, left by an interrupted "
                      "writer) and is not a row; the next append or `lett doctor --repair` moves it "
                      "to the quarantine file", LetWarning, stacklevel=3)

    warn_damaged_header(store.path, header)
    if skipped:
        lines = ", ".join(str(n) for n in skipped[:10]) + (" ..." if len(skipped) > 10 else "")
        warnings.warn(f"{store.path}: skipped {len(skipped)} malformed line(s) (line {lines}); "
                      "`lett doctor` shows them", LetWarning, stacklevel=3)
    renamed = renamed_columns(header)
    if renamed:
        # In place: DataFrame.rename copies every column (a quarter of a second at 1M rows),
        # even when nothing is renamed.
        frame.columns = [renamed.get(c, c) for c in frame.columns]
    if "energy_consumed" in frame:
        errors = frame["error"].fillna("").astype(str).str.strip() if "error" in frame else ""
        energy = frame["energy_consumed"]
        blank = ~usable_energy(energy) & (errors == "")
        if blank.any():
            shown = [c for c in ("run_id", "timestamp") if c in frame]
            warn_blank_energy(store.path, frame.loc[blank, shown].astype(object).fillna("")
                              .to_dict("records"))
    missing = [c for c in STORE_COLUMNS if c not in frame and (wanted is None or c in wanted)]
    if missing:
        import numpy as np

        filler = {c: (np.full(len(frame), np.nan) if c in NUMERIC_COLUMNS
                      else pd.arrays.ArrowExtensionArray(pa.array([""] * len(frame), pa.string())))
                  for c in missing}
        frame = pd.concat([frame, pd.DataFrame(filler, index=frame.index, copy=False)], axis=1, copy=False)
    return frame


def blank_energy(row: Mapping[str, Any]) -> bool:
    """A row without a usable energy figure (empty, negative, not a number, above the sanity
    bound) that does not say why (a failed backend's row does). Counting skips such rows."""
    error = row.get("error")
    energy = as_float(row.get("energy_consumed"))
    return not usable_energy(energy) and not (isinstance(error, str) and error.strip())


def warn_blank_energy(path: str | os.PathLike[str], rows: Sequence[Mapping[str, Any]]) -> None:
    """One warning naming the rows (run id, timestamp) whose energy cell is empty: they count
    as nothing, and a statement over only such rows would otherwise read as "no stored runs"."""
    names = [f"run {row.get('run_id') or '(no run id)'} at {row.get('timestamp') or '?'}"
             for row in rows[:5]]
    more = f" and {len(rows) - 5} more" if len(rows) > 5 else ""
    warnings.warn(f"{path}: {len(rows)} row(s) have no usable energy_consumed value (empty, "
                  f"negative, not a number or above {MAX_ENERGY_KWH:g} kWh) and are not counted: "
                  f"{'; '.join(names)}{more}. Fill in the energy or delete those rows.",
                  LetWarning, stacklevel=4)


def _python_rows(store: Store, header: list[str], included: list[str]) -> tuple[Any, list[int]]:
    """The store read by Python's csv module: (text table of ``included`` columns, line
    numbers of records that are not rows); (None, []) when the header changed meanwhile."""
    import pyarrow as pa

    from let_core.csvfile import Padded, scan_lines, warn_short_rows

    with store.locked(exclusive=False, create=False) as fd:
        if fd is None or read_header(fd) != header:
            return None, []
        indices = [header.index(c) for c in included]
        columns: list[list[str]] = [[] for _ in indices]
        bad: list[int] = []
        short = 0
        for number, fields, valid in scan_lines(fd, header):
            if len(fields) != len(header):
                if fields:
                    bad.append(number)
                continue
            short += isinstance(fields, Padded)
            if not valid:
                fields = [f.encode("utf-8", "surrogateescape").decode("utf-8", "replace") for f in fields]
            for target, index in zip(columns, indices):
                target.append(fields[index])
    if short:
        warn_short_rows(short, f"the LET store {store.path}", stacklevel=4)
    return pa.table({c: pa.array(v, pa.string()) for c, v in zip(included, columns)}), bad


def _one_line_per_record(data: Any, records: int) -> bool:
    """Whether the bytes hold no carriage return and exactly as many lines as Arrow read records
    (the header among them): then no cell holds a line break, which a scan of every text cell
    would otherwise show (a quarter of a cold statement's time)."""
    import numpy as np

    raw = np.frombuffer(data, dtype=np.uint8)
    line_feeds = 0
    for start in range(0, len(raw), 1 << 24):
        chunk = raw[start:start + (1 << 24)]
        if (chunk == 13).any():
            return False
        line_feeds += int(np.count_nonzero(chunk == 10))
    # The last record may end without its line feed.
    return line_feeds in (records, records - 1)


def _holds_a_line_break(table: Any) -> bool:
    """Whether a text cell holds a line break: LET writes none, so it came from a record that
    spanned lines."""
    import pyarrow as pa
    import pyarrow.compute as pc

    for column in table.columns:
        if pa.types.is_string(column.type) and (pc.any(pc.match_substring(column, "\n")).as_py()
                                                or pc.any(pc.match_substring(column, "\r")).as_py()):
            return True
    return False


def _is_utf8(data: Any) -> bool:
    try:
        bytes(data).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _any_blank(column: Any) -> bool:
    """Whether a text column has a blank or missing cell (a legacy row's backend)."""
    import pyarrow.compute as pc

    return bool(pc.any(pc.fill_null(pc.equal(column, ""), True)).as_py()) or column.null_count > 0


def normalize_legacy(frame: pd.DataFrame) -> pd.DataFrame:
    """LET's columns for LET 0.1.x / CodeCarbon rows, computed once per distinct combination
    of the fields ``legacy_fields`` reads (a handful per file), then spread by group code.

    Works on Arrow arrays (join, dictionary-encode, take), so a million legacy rows cost
    about as much as parsing them.
    """
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    blank = [(frame[c].fillna("") == "").to_numpy(dtype=bool) for c in LET_MARKERS if c in frame]
    legacy = pa.array(np.logical_and.reduce(blank) if blank else np.ones(len(frame), dtype=bool))
    if not pc.any(legacy).as_py():
        return frame
    keys = list(LEGACY_KEYS)
    text = {k: _arrow_text(frame[k]) if k in frame else pa.nulls(len(frame), pa.string()).fill_null("")
            for k in keys}
    joined = pc.binary_join_element_wise(*(text[k] for k in keys), "\x1f")
    encoded = pc.dictionary_encode(pc.if_else(legacy, joined, pa.scalar("", pa.string())))
    combos = [dict(zip(keys, value.split("\x1f"))) if value else None
              for value in encoded.dictionary.to_pylist()]
    derived = [legacy_fields(combo) if combo is not None else {} for combo in combos]
    for column in sorted({name for fields in derived for name in fields}):
        current = _arrow_text(frame[column]) if column in frame else pa.array([""] * len(frame), pa.string())
        # None in the dictionary: a field legacy_fields leaves alone for that combination.
        dictionary = pa.array([fields.get(column) for fields in derived], pa.string())
        new = pa.DictionaryArray.from_arrays(encoded.indices, dictionary).dictionary_decode()
        merged = pc.if_else(pc.and_(legacy, pc.is_valid(new)), new, current)
        frame[column] = pd.arrays.ArrowExtensionArray(merged)
    return frame


def _arrow_text(series: pd.Series) -> Any:
    """A text column as an Arrow string array, blanks for missing values."""
    import pyarrow as pa

    array = pa.array(series.array) if hasattr(series.array, "__arrow_array__") else pa.array(
        series.astype(object).where(series.notna(), "").astype(str).tolist(), pa.string())
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if array.type != pa.string():
        array = array.cast(pa.string())
    return array.fill_null("")
