"""Stored runs as a DataFrame, from every source LET reads: the central CSV store, the
Parquet dataset (a folder, ``LET_DATASET`` or a URI such as ``s3://bucket/let``), or both.

Reads LET 1.x, LET 0.1.x and plain CodeCarbon files alike. pandas and pyarrow are imported
here, never on the tracking path.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from attrs import frozen

from let_core.config import default_dataset_root, is_uri
from let_core.csvfile import data_end, read_header
from let_core.errors import LetWarning, StoreError
from let_core.records import MAX_ENERGY_KWH, as_float
from let_core.schema import LET_MARKERS, NUMERIC_COLUMNS, STORE_COLUMNS, check_filters, legacy_fields
from let_core.store import Store

if TYPE_CHECKING:
    import pandas as pd

    from let_core.results.counting import Totals


#: One store folder (or URI), several, or None for ``$LET_HOME``.
StoreDirs = str | os.PathLike[str] | None | Sequence[str | os.PathLike[str]]


def load_results(output_dir: StoreDirs = None, project_name: str | None = None,
                 user: str | None = None, hostname: str | None = None, *,
                 dataset: str | os.PathLike[str] | None = None,
                 columns: Sequence[str] | None = None, latest_only: bool = True,
                 calibrated: bool = False, transfer: bool = False) -> pd.DataFrame:
    """Stored runs as a pandas DataFrame, one row per (run, backend), optionally filtered.

    Reads the central CSV store and the Parquet dataset together (``dataset=``, else
    ``LET_DATASET``, else ``<store>/runs``; ``output_dir`` may be a list of stores, each with
    its dataset, read as one: a run found in several counts once; an ``output_dir`` URI such as ``s3://bucket/let``
    is the dataset, the CSV store then being ``$LET_HOME``'s). Reads LET 1.x, LET 0.1.x and
    plain CodeCarbon files alike: older rows get LET's columns (project, user and host from
    ``experiment_id``; backend ``codecarbon``).

    ``latest_only=True`` (the default, what statements and totals count) keeps one row per
    (run_id, backend, task): CodeCarbon writes cumulative checkpoint rows while a run goes on,
    so the row of the largest duration (the last among equals) holds the whole run; the same
    run in the CSV store and the dataset is kept once. ``latest_only=False`` gives every row.
    ``timestamp`` and ``start_time`` are timezone-aware datetimes (UTC; CodeCarbon's naive
    times are taken as UTC).

    Logged metrics and params stay in their JSON columns ``metrics`` / ``params`` and are also
    expanded into one column each, named as MLflow does: ``metrics.accuracy``, ``params.model``.
    A filter that matches nothing gives an empty frame. ``columns=`` reads only those columns
    (and the few that filtering and deduplication need): a table over millions of runs then
    costs a fraction of the memory.

    ``calibrated=True`` adds ``calibrated_kwh``, ``calibrated_low_kwh``, ``calibrated_high_kwh``
    (and ``calibrated_by``, ``calibrated_outside_range``) for estimate rows of hosts with a
    wall-socket calibration (``lett calibration fit``), blank elsewhere; ``transfer=True`` lets a
    host with identical CPU and GPU models borrow one (``let_core.results.calibration``).
    """
    if calibrated:
        from let_core.results.calibration import CALIBRATION_COLUMNS, calibrate_frame

        wanted = None if columns is None else list(columns)
        read = None if columns is None else [*columns, *CALIBRATION_COLUMNS]
        frame = calibrate_frame(load_results(output_dir, project_name, user, hostname, dataset=dataset,
                                             columns=read, latest_only=latest_only), transfer=transfer)
        if wanted is None:
            return frame
        from let_core.results.calibration import CALIBRATED_COLUMNS

        return frame[[c for c in frame.columns if c in {*wanted, *CALIBRATED_COLUMNS}]]
    filters = {"project_name": project_name, "user": user, "hostname": hostname}
    check_filters(filters)
    located = [sources(one, dataset) for one in _store_dirs(output_dir)]
    import pandas as pd

    frames = []
    for store, _ in located:
        try:
            present = store.path.exists()
        except PermissionError:  # a folder the user may not enter: stat() fails, not "missing"
            present = False
        if present:
            frame = _normalize_legacy(_read_frame(store, columns))
            for key, value in filters.items():
                if value is not None:
                    frame = frame[frame[key] == value]
            if columns is not None:
                # BASE_COLUMNS have served (filters, legacy rows): not carried into the merge with
                # the dataset and its deduplication, where every column costs a copy.
                keep = set(columns) | set(_DEDUP_KEYS) | {"duration", "task_name"}
                frame = frame[[c for c in frame.columns if c in keep]]
            frames.append(frame)
        elif store.directory.exists() and not os.access(store.directory, os.R_OK | os.X_OK):
            raise StoreError(f"cannot read the LET store folder {store.directory}: permission denied; "
                             f"give your user access (chmod u+rx {store.directory}) or read another "
                             "output_dir")
    for root in dict.fromkeys(root for _, root in located):  # one dataset given for all: read once
        parquet = _read_dataset(root, filters,
                                None if columns is None else set(columns) | set(_DEDUP_KEYS) | {"duration"})
        if parquet is not None:
            frames.append(parquet)
    if not frames:
        empty = pd.DataFrame({column: pd.Series(dtype=_pandas_dtype(column)) for column in STORE_COLUMNS})
        return empty if columns is None else empty[[c for c in empty.columns if c in set(columns)]]
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    if latest_only:
        frame = _deduplicate(frame)
    times = {column: _datetimes(frame[column]) for column in _TIME_COLUMNS if column in frame}
    if times:
        frame = frame.assign(**times)
    # A fresh RangeIndex, not reset_index(): that copies and consolidates every column (1 s at 1M rows).
    frame.index = pd.RangeIndex(len(frame))
    for column in ("metrics", "params"):
        if column in frame:
            frame = _expand_json(frame, column)
    if columns is not None:
        wanted = [c for c in frame.columns if c in set(columns)]
        if wanted != list(frame.columns):  # (selecting every column would still copy them)
            frame = frame[wanted]
    return frame


def _store_dirs(output_dir: StoreDirs) -> list[str | os.PathLike[str] | None]:
    """One store folder or several (a list or tuple: the institute's collected stores)."""
    if isinstance(output_dir, (list, tuple)):
        if not output_dir:
            raise StoreError("no store folder given; name at least one output_dir")
        return list(output_dir)
    return [cast("str | os.PathLike[str] | None", output_dir)]


def sources(output_dir: str | os.PathLike[str] | None = None,
            dataset: str | os.PathLike[str] | None = None) -> tuple[Store, str]:
    """The CSV store and the dataset root that ``load_results`` (and so every statement and
    table) reads for these arguments: an ``output_dir`` URI (``s3://bucket/let``) is the
    dataset, the CSV store then being ``$LET_HOME``'s; ``file://`` is a local folder."""
    if is_uri(output_dir) and not str(output_dir).startswith("file://"):
        dataset, output_dir = dataset or str(output_dir), None
    elif isinstance(output_dir, str) and output_dir.startswith("file://"):
        output_dir = output_dir[len("file://"):]
    store = Store(output_dir)
    if store.directory.is_file():
        raise StoreError(f"{store.directory} is a file; output_dir names the store's folder (the one "
                         f"holding emissions.csv), e.g. {store.directory.parent}")
    return store, os.fspath(dataset) if dataset is not None else default_dataset_root(store.directory)


def delete_results(output_dir: str | os.PathLike[str] | None = None, project_name: str | None = None,
                   user: str | None = None, hostname: str | None = None, *,
                   dataset: str | os.PathLike[str] | None = None, dry_run: bool = False) -> int:
    """Delete the runs matching every given filter (none given: all) from every source
    ``load_results`` reads: the CSV store and the Parquet dataset. Returns how many runs
    disappear from the statement (a run in both sources is one run); ``dry_run`` only counts.

    The dataset goes first: when a file of it cannot be read or deleted the error says so and
    the CSV store is left as it was. Each source changes atomically (see ``Store.delete``,
    ``dataset.delete_rows``).
    """
    filters = {"project_name": project_name, "user": user, "hostname": hostname}
    check_filters(filters)
    store, root = sources(output_dir, dataset)
    runs: set[str] = set()
    anonymous = 0

    def note(row: Mapping[str, Any]) -> None:
        nonlocal anonymous
        if row.get("task"):
            return  # parts of a run, not runs
        if row.get("run_id"):
            runs.add(str(row["run_id"]))
        else:
            anonymous += 1

    if _dataset_present(root):
        from let_core.dataset import delete_rows, locate

        for row in delete_rows(locate(root), filters, dry_run=dry_run):
            note(row)
    matching = [row for row in store.rows() if all(v is None or row.get(k) == v for k, v in filters.items())]
    if matching and not dry_run:
        store.delete(**filters)
    for row in matching:
        note(row)
    return len(runs) + anonymous


def _dataset_present(root: str) -> bool:
    if not is_uri(root):
        return os.path.isdir(os.path.expanduser(root))  # no pyarrow needed to see a local folder
    from let_core.dataset import exists, locate

    return exists(locate(root))


def where(output_dir: str | os.PathLike[str] | None = None,
          dataset: str | os.PathLike[str] | None = None) -> str:
    """Where ``load_results`` looks, in words (for "no stored runs match" messages)."""
    store, root = sources(output_dir, dataset)
    if is_uri(root):
        from let_core.dataset import locate

        shown = locate(root).display  # never the credentials a URI may carry
    else:
        shown = root
    return f"{store.path} and the dataset {shown}" if _dataset_present(root) else (
        f"{store.path} (no Parquet dataset at {shown})")


def counted_totals(output_dir: str | os.PathLike[str] | None = None, project_name: str | None = None,
                   user: str | None = None, hostname: str | None = None, *,
                   dataset: str | os.PathLike[str] | None = None) -> Totals:
    """What the runs ``load_results`` would return count for (``counting``): from the totals
    cache when the CSV store is the only source, else vectorised over the projected columns."""
    from let_core.results.cache import cached_totals
    from let_core.results.counting import TOTALS_COLUMNS, frame_totals

    store, root = sources(output_dir, dataset)
    filters = {"project_name": project_name, "user": user, "hostname": hostname}
    if not _dataset_present(root):
        return cached_totals(store.directory, **filters)
    return frame_totals(load_results(output_dir, **filters, dataset=dataset, columns=TOTALS_COLUMNS))


def _read_dataset(root: str | os.PathLike[str], filters: Mapping[str, str | None],
                  columns: Iterable[str] | None = None) -> pd.DataFrame | None:
    """The Parquet dataset's matching rows (only ``columns``, when given), or None when there
    is no dataset there. Legacy rows never reach the dataset, so BASE_COLUMNS are not needed:
    the filters are evaluated by the scanner, and only the deduplication keys must be read."""
    from let_core.dataset import exists, locate, read_frame

    location = locate(root)
    if not exists(location):
        return None
    from let_core.results.counting import CODED_COLUMNS

    return read_frame(location, **filters, columns=columns, coded=CODED_COLUMNS)


_DEDUP_KEYS = ("run_id", "backend", "task")


def _deduplicate(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (run_id, backend, task): the largest duration, the last among equals
    (``counting.keep_latest``); rows without a run id are all kept."""
    import numpy as np
    import pandas as pd

    from let_core.keys import duplicated as duplicated_rows
    from let_core.results.counting import keep_latest

    # Only rows whose run id repeats are compared in full: hashing three text columns of a
    # million rows cost more than reading them.
    # CodeCarbon's task API: rows of one run with different task names are parts that add up.
    dedup_keys = (*_DEDUP_KEYS, "task_name") if "task_name" in frame else _DEDUP_KEYS
    repeated = duplicated_rows(frame, dedup_keys)
    if not repeated.any():
        return frame
    keys = frame[list(dedup_keys)].astype(object).fillna("")
    involved = np.flatnonzero((keys["run_id"] != "").to_numpy()
                              & keys.duplicated(keep=False).to_numpy())
    groups = np.asarray(pd.MultiIndex.from_frame(keys.iloc[involved]).factorize()[0], dtype=np.int64)
    duration = (pd.to_numeric(frame["duration"], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
                if "duration" in frame else np.full(len(frame), np.nan))
    drop = np.zeros(len(frame), dtype=bool)
    drop[involved] = ~keep_latest(groups, duration[involved])
    return frame[~drop]


_TIME_COLUMNS = ("timestamp", "start_time")


def _datetimes(values: pd.Series) -> pd.Series:
    """ISO 8601 texts as timezone-aware UTC datetimes; blank or unparsable cells are NaT."""
    import pandas as pd

    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values
    return pd.to_datetime(values.astype(object).where(values.notna() & (values != ""), None),
                          errors="coerce", utc=True, format="ISO8601")


def _expand_json(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    """``metrics`` JSON cells as ``metrics.<name>`` columns; rows without any get NaN."""
    import pandas as pd

    if column not in frame or frame.empty:
        return frame
    cells = frame[column].fillna("")
    present = cells[cells != ""]
    if present.empty:
        return frame
    parsed: dict[Any, dict[str, Any]] = {}
    for index, text in present.items():
        try:
            value = json.loads(text)
        except ValueError:
            continue  # a hand-edited cell: the JSON text stays in the column
        if isinstance(value, dict):
            parsed[index] = value
    if not parsed:
        return frame
    expanded = pd.DataFrame.from_dict(parsed, orient="index").reindex(frame.index)
    expanded.columns = [f"{column}.{name}" for name in expanded.columns]
    return pd.concat([frame, expanded], axis=1)


def _pandas_dtype(column: str) -> str:
    if column in _TIME_COLUMNS:
        return "datetime64[ns, UTC]"
    return "float64" if column in NUMERIC_COLUMNS else "object"


#: What ``_normalize_legacy`` reads to derive LET's columns for 0.1.x / CodeCarbon rows.
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


def _read_frame(store: Store, columns: Sequence[str] | None = None) -> pd.DataFrame:
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
    if skipped:
        # Arrow gives up on some rows Python's csv module reads (a quoted field holding a bare
        # carriage return next to a long one, say). Before calling them malformed, read the
        # file the slow, exact way; the store module's scanner also knows their line numbers.
        slow, bad = _python_rows(store, header, included)
        if slow is not None:
            if slow.num_rows > table.num_rows:
                table, typed = slow, False
            skipped = bad  # exact line numbers (Arrow's are unknown for some rows)
    import pandas as pd

    frame = _to_frame(table)
    if not typed:
        for column in NUMERIC_COLUMNS:
            if column in frame:
                frame[column] = pd.to_numeric(frame[column], errors="coerce")
    if replaced:
        warnings.warn(f"{store.path}: bytes that are not UTF-8 were read as U+FFFD; `lett doctor` "
                      "shows the lines", LetWarning, stacklevel=3)
    from let_core.schema import header_problem

    if torn:
        warnings.warn(f"{store.path}: its last line is torn ({torn} bytes, left by an interrupted "
                      "writer) and is not a row; the next append or `lett doctor --repair` moves it "
                      "to the quarantine file", LetWarning, stacklevel=3)

    damaged = header_problem(header)
    if damaged is not None:
        warnings.warn(f"{store.path}: the header is damaged ({damaged}); rows may be skipped or "
                      "misread. Run `lett doctor`.", LetWarning, stacklevel=3)
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
        blank = ~energy.between(0, MAX_ENERGY_KWH) & (errors == "")  # NaN fails between() too
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
    return (not 0 <= energy <= MAX_ENERGY_KWH  # NaN fails too
            and not (isinstance(error, str) and error.strip()))


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

    from let_core.csvfile import scan_lines

    with store.locked(exclusive=False, create=False) as fd:
        if fd is None or read_header(fd) != header:
            return None, []
        indices = [header.index(c) for c in included]
        columns: list[list[str]] = [[] for _ in indices]
        bad: list[int] = []
        for number, fields, valid in scan_lines(fd, header):
            if len(fields) != len(header):
                if fields:
                    bad.append(number)
                continue
            if not valid:
                fields = [f.encode("utf-8", "surrogateescape").decode("utf-8", "replace") for f in fields]
            for target, index in zip(columns, indices):
                target.append(fields[index])
    return pa.table({c: pa.array(v, pa.string()) for c, v in zip(included, columns)}), bad


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


def _to_frame(table: Any) -> pd.DataFrame:
    """Arrow columns as pandas columns without copies: text stays Arrow-backed, numbers numpy.

    ``Table.to_pandas`` converts a million text cells into Python objects and consolidates
    blocks, which costs more than parsing the CSV.
    """
    import pandas as pd
    import pyarrow as pa

    columns: dict[str, Any] = {}
    for name, column in zip(table.column_names, table.columns):
        if pa.types.is_string(column.type):
            columns[name] = pd.arrays.ArrowExtensionArray(column)
        else:
            columns[name] = column.to_numpy()
    return pd.DataFrame(columns, copy=False)


def _normalize_legacy(frame: pd.DataFrame) -> pd.DataFrame:
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


@frozen
class ResultsHandle:
    """A read handle on stored results, handed to reporters beside each finished run: the same
    sources and counting as ``load_results`` and ``paper_statement``. The core has appended the
    run to the central store before any reporter runs, so no reporter depends on another."""

    output_dir: str | os.PathLike[str] | None = None
    dataset: str | None = None

    def totals(self, project_name: str | None = None, user: str | None = None,
               hostname: str | None = None) -> Totals:
        return counted_totals(self.output_dir, project_name, user, hostname, dataset=self.dataset)

    def frame(self, project_name: str | None = None, user: str | None = None, hostname: str | None = None,
              columns: Sequence[str] | None = None) -> pd.DataFrame:
        return load_results(self.output_dir, project_name, user, hostname, dataset=self.dataset,
                            columns=columns)
