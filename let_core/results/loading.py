"""Stored runs as a DataFrame, from every source LET reads: the central CSV store, the
Parquet dataset (a folder, ``LET_DATASET`` or a URI such as ``s3://bucket/let``), or both.

Reads LET 1.x, LET 0.1.x and plain CodeCarbon files alike. pandas and pyarrow are imported
here, never on the tracking path.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from attrs import frozen

from let_core.config import default_dataset_root, is_uri
from let_core.errors import StoreError
from let_core.results.csvsource import normalize_legacy, read_frame
from let_core.schema import NUMERIC_COLUMNS, STORE_COLUMNS, filter_dict
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
    filters = filter_dict(project_name, user, hostname)
    located = [sources(one, dataset) for one in _store_dirs(output_dir)]
    import pandas as pd

    frames = []
    for store, _ in located:
        try:
            present = store.path.exists()
        except PermissionError:  # a folder the user may not enter: stat() fails, not "missing"
            present = False
        if present:
            frame = normalize_legacy(read_frame(store, columns))
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
    if times:  # assign() would copy and consolidate every column (50 ms per 300k rows)
        frame = frame.copy(deep=False)
        for column, parsed in times.items():
            frame[column] = parsed
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


def dataset_present(root: str) -> bool:
    """Whether a Parquet dataset exists at ``root`` (a folder or URI), as ``load_results`` sees it."""
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
    return f"{store.path} and the dataset {shown}" if dataset_present(root) else (
        f"{store.path} (no Parquet dataset at {shown})")


def counted_totals(output_dir: str | os.PathLike[str] | None = None, project_name: str | None = None,
                   user: str | None = None, hostname: str | None = None, *,
                   dataset: str | os.PathLike[str] | None = None) -> Totals:
    """What the runs ``load_results`` would return count for (``counting``): from the totals
    cache when the CSV store is the only source, else vectorised over the projected columns."""
    from let_core.results.cache import cached_totals
    from let_core.results.counting import TOTALS_COLUMNS, frame_totals

    store, root = sources(output_dir, dataset)
    filters = filter_dict(project_name, user, hostname)
    if not dataset_present(root):
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
    # Arrow parses texts that all carry a zone offset (LET's own rows) 40x faster than pandas
    # (0.4 s per 300k rows, most of a statement over a Parquet dataset); a column it refuses
    # (CodeCarbon's times without an offset, damage) is left to pandas' rules.
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        texts = pa.array(values, from_pandas=True)
        texts = pc.if_else(pc.equal(texts, ""), pa.scalar(None, texts.type), texts)
        parsed = texts.cast(pa.timestamp("ns", tz="UTC"))
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        texts = values.astype(object).where(values.notna() & (values != ""), None)
        return pd.to_datetime(texts, errors="coerce", utc=True, format="ISO8601")
    return pd.Series(parsed.to_pandas().array, index=values.index, name=values.name)


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
