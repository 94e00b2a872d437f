"""The totals cache: a run's statement costs the same with 10 or 10 million stored rows.

Per (project, user, host) the counting module's totals, and the byte offset of the store they
cover; each call reads only the bytes appended since. The cache lives under
``config.cache_dir()`` (never in a user's ``output_dir``), keyed by the store's path.

A cache is trusted only when it proves it belongs to the file: same inode, a digest of the
header line and a digest of the bytes just before the recorded offset (the last complete lines
it counted). A store that was deleted and recreated (inode reuse), restored from a backup,
edited or rewritten fails one of these and the cache is rebuilt; so is a cache file that does
not parse or has the wrong types. Group keys are JSON lists, not joined strings, so no
character inside a project, user or host name can collide with a separator.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import zlib
from pathlib import Path
from typing import Any, Iterator, Mapping

from let_core.config import cache_file
from let_core.results.counting import Accumulator, Totals
from let_core.results.loading import blank_energy, warn_blank_energy
from let_core.store import (FILTER_KEYS, Store, _check_filters, _data_end, _effective,
                            _header_length, _iter_rows, _matches, _read_header,
                            check_emissions_header)

_VERSION = 5  # 5: the job rule keys ranks by step and launch too
#: Stores larger than this (bytes not yet counted) are counted vectorised when there is no cache.
VECTORISED_ABOVE = 4 << 20
_TAIL = 4096  # bytes before the offset whose digest must match
#: A valid cache is rewritten only once this many bytes were appended after what it covers.
#: Below that the new rows are folded in memory: a tracked run's statement at stop is one
#: cache read plus its own few lines, not a read, a rewrite and a rename each time. The
#: totals are the same either way (the same rows go through the same Accumulator).
SAVE_ABOVE = 8 << 10

GroupKey = tuple[str, str, str]


def cache_path(store: Store) -> Path:
    return cache_file("totals", store.path)


def cached_totals(directory: str | os.PathLike[str] | None = None, **filters: str | None) -> Totals:
    """Totals of the runs in the store at ``directory`` that match the filters, kept current
    by reading only what was appended since the last call."""
    _check_filters(filters)
    store = Store(directory)
    with store._locked(exclusive=False, create=False) as fd:
        if fd is None:
            return Totals()
        check_emissions_header(fd, store.path)
        header = _read_header(fd)
        if header is None:
            return Totals()
        groups, offset, trusted = _load(store, fd, header)
        end = _data_end(fd, len(header))
        if offset < end:
            warned = False
            if not groups and end - offset > VECTORISED_ABOVE:
                # No usable cache over a large store: count it vectorised (pandas, pyarrow) in
                # a fraction of the time the row path needs. Appenders wait for our shared lock,
                # so the file holds exactly the bytes up to ``end``.
                groups = _vectorised(store)
            else:
                warned = _add_rows(_iter_rows(fd, header, offset, end=end), groups, store.path)
            # Saved past rows it warned about, so the warning is not repeated on every call.
            if not trusted or warned or end - offset > SAVE_ABOVE:
                _save(store, fd, header, end, groups)
    result = Totals()
    for key, value in groups.items():
        if _matches(dict(zip(FILTER_KEYS, key)), filters):
            result = result.merged(value.totals())
    return result


def _vectorised(store: Store) -> dict[GroupKey, Accumulator]:
    from let_core.results.counting import TOTALS_COLUMNS, frame_accumulators
    from let_core.results.loading import _normalize_legacy, _read_frame

    return frame_accumulators(_normalize_legacy(_read_frame(store, TOTALS_COLUMNS)))


def _add_rows(rows: Iterator[Mapping[str, str]], groups: dict[GroupKey, Accumulator],
              path: Path | None = None) -> bool:
    """Feed rows, run by run, into per-(project, user, host) totals; True when some rows had
    no usable energy (and were named in a warning, which is given once: the caller then saves
    the cache past them).

    A run's rows are contiguous: they are appended in one locked write. Task rows are parts
    of a run, already inside the run's own energy.
    """
    current: list[Mapping[str, str]] = []

    def finish() -> None:
        if current:
            key = tuple(str(current[0].get(k, "")) for k in FILTER_KEYS)
            groups.setdefault(key, Accumulator()).add_run(current)  # type: ignore[arg-type]
            current.clear()

    blank: list[Mapping[str, str]] = []
    for raw in rows:
        if path is not None and blank_energy(raw):
            blank.append(raw)
        row = _effective(dict(raw))
        if row.get("task"):
            continue
        if current and (row.get("run_id") != current[0].get("run_id") or not row.get("run_id")):
            finish()
        current.append(row)
    finish()
    if blank and path is not None:
        warn_blank_energy(path, blank)
    return bool(blank)


def _digest(fd: int, start: int, end: int) -> str:
    # Tells an edited, truncated or restored file from the one the cache counted, beside the
    # inode: a checksum of the bytes and their length, not a defence against forgery.
    # (hashlib would cost every tracked run 3 ms at import.)
    data = os.pread(fd, max(0, end - start), start)
    return f"{zlib.crc32(data):08x}-{len(data)}"


def _identity(fd: int, offset: int) -> dict[str, Any]:
    stat = os.fstat(fd)
    header_end = _header_length(fd)
    return {"inode": stat.st_ino, "device": stat.st_dev,
            "header": _digest(fd, 0, header_end),
            "tail": _digest(fd, max(header_end, offset - _TAIL), offset)}


def _load(store: Store, fd: int, header: list[str]) -> tuple[dict[GroupKey, Accumulator], int, bool]:
    """The cached groups, the offset they cover and True; empty groups from the header on and
    False when the cache is missing, damaged or not provably this file's."""
    fresh: tuple[dict[GroupKey, Accumulator], int, bool] = ({}, _header_length(fd), False)
    try:
        with open(cache_path(store), encoding="utf-8") as handle:
            cache = json.load(handle)
        offset = cache["offset"]
        size = os.fstat(fd).st_size
        if (cache["version"] != _VERSION or type(offset) is not int
                or not fresh[1] <= offset <= size or cache["store"] != str(store.path.absolute())):
            return fresh
        if offset > fresh[1] and os.pread(fd, 1, offset - 1) != b"\n":
            return fresh
        if cache["identity"] != _identity(fd, offset):
            return fresh
        groups: dict[GroupKey, Accumulator] = {}
        for key, value in cache["groups"]:
            if (not isinstance(key, list) or len(key) != len(FILTER_KEYS)
                    or not all(isinstance(part, str) for part in key)):
                return fresh
            groups[(key[0], key[1], key[2])] = Accumulator.from_json(value)
        return groups, offset, True
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return fresh


def _save(store: Store, fd: int, header: list[str], offset: int, groups: Mapping[GroupKey, Accumulator]) -> None:
    # Best effort: without a writable cache folder the totals are still right, just recomputed.
    # Each process writes its own temporary name; the newest complete cache wins.
    target = cache_path(store)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    cache = {"version": _VERSION, "store": str(store.path.absolute()), "offset": offset,
             "identity": _identity(fd, offset),
             "groups": [[list(key), value.to_json()] for key, value in groups.items()]}
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(cache, handle)
        os.replace(tmp, target)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
