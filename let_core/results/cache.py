"""The totals cache: a run's statement costs the same with 10 or 10 million stored rows.

Per (project, user, host) the counting rule's totals (``counting.Accumulator``), the byte
offset of the store they cover, and the run units they counted; each call reads only the
bytes appended since. The cache lives under ``config.cache_dir()`` (never in a user's
``output_dir``), keyed by the store's path.

A cache is trusted only when it proves it covers exactly the bytes it claims: the file's
state (device, inode, size, mtime) is the one it was saved at, or follows from it through
this process's own appends (``appendlog``); else a CRC-32 of every byte it covers must match
(an in-place edit, a truncate-and-regrow, a restored backup all fail it, and the store is
counted afresh). A run unit of the new tail that the cache already counted (a checkpoint or
rank whose rows straddle the cached part and the tail, checkpoints of runs interleaved) cannot
be added to totals: the whole store is then counted afresh, vectorised. A cache file that
does not parse or has the wrong types is rebuilt. Group keys are JSON lists, so no character
inside a project, user or host name can collide with a separator.
"""

from __future__ import annotations

import array
import bisect
import contextlib
import json
import os
import sys
import zlib
from pathlib import Path
from typing import Any, Iterator, Mapping

from let_core import appendlog
from let_core.atomicfile import read_regular, write_atomically
from let_core.config import cache_file
from let_core.csvfile import check_emissions_header, data_end, header_length, iter_rows, read_header, warn_damaged_header
from let_core.results.counting import Accumulator, Totals
from let_core.results.csvsource import blank_energy, normalize_legacy, read_frame, warn_blank_energy
from let_core.results.rule import run_unit
from let_core.schema import FILTER_KEYS, check_filters, effective, matches
from let_core.store import Store

_VERSION = 7  # 7: every launch of a job key kept (rule.Launches)
#: Stores larger than this (bytes not yet counted) are counted vectorised when there is no cache.
VECTORISED_ABOVE = 4 << 20
_CHUNK = 8 << 20
#: A cache is rewritten only once this many bytes were appended after what it covers (or above
#: WAIT_ABOVE, where a checksum would cost more than a save); below, the tail is added in memory
#: and the next reader proves the cache by its state or checksum. A save costs about what
#: re-adding four runs does, so a few runs (2 KiB) is where the two balance (bench_tracked_ab).
SAVE_ABOVE = 2 << 10
#: Above this store size a cache is saved only once the file clock has moved on (see _tick_passed).
WAIT_ABOVE = 4 << 20
#: Linux's CLOCK_REALTIME_COARSE, the clock file times are taken from (Python does not name it).
_REALTIME_COARSE = 5

GroupKey = tuple[str, str, str]


class _Recount(Exception):
    """A run unit of the tail was counted before: totals cannot be added to, only recounted."""


def cache_path(store: Store) -> Path:
    return cache_file("totals", store.path)


def unit_hash(unit: str) -> int:
    """A run unit's 32-bit key in the cache's index: the polynomial hash (base 31, modulo
    2**32) of its UTF-8 bytes, which ``unit_hashes`` computes for a whole column at once.
    A clash only makes a new unit look counted: the store is then recounted, never miscounted."""
    value = 0
    for byte in unit.encode("utf-8", "surrogatepass"):
        value = (value * 31 + byte) & 0xFFFFFFFF
    return value


def unit_hashes(units: Any) -> Any:
    """``unit_hash`` of every non-empty text of a pandas column, as a numpy uint32 array:
    each byte times 31 to the power of the bytes after it in its text, summed per text."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    array = pa.array(units.array) if hasattr(units.array, "__arrow_array__") else pa.array(units, from_pandas=True)
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    array = array.cast(pa.large_string()).fill_null("")
    array = array.filter(pc.not_equal(array, ""))
    if not len(array):
        return np.zeros(0, dtype=np.uint32)
    offsets = np.frombuffer(array.buffers()[1], dtype=np.int64, count=len(array) + 1, offset=array.offset * 8)
    lengths = np.diff(offsets)
    width = int(lengths[0])
    if not (lengths == width).all():  # texts of several widths (not UUIDs): one by one
        return np.array([unit_hash(text) for text in array.to_pylist()], dtype=np.uint32)
    # One width (run ids are UUIDs): a matrix of bytes, times the powers of 31 from the right.
    data = np.frombuffer(array.buffers()[2], dtype=np.uint8)[offsets[0]:offsets[-1]].reshape(len(array), width)
    powers = np.cumprod(np.r_[np.uint32(1), np.full(width - 1, 31, dtype=np.uint32)], dtype=np.uint32)[::-1]
    return (data.astype(np.uint32) * powers).sum(axis=1, dtype=np.uint32)


def cached_totals(directory: str | os.PathLike[str] | None = None, **filters: str | None) -> Totals:
    """Totals of the runs in the store at ``directory`` that match the filters, kept current
    by reading only what was appended since the last call."""
    check_filters(filters)
    store = Store(directory)
    with store.locked(exclusive=False, create=False) as fd:
        if fd is None:
            return Totals()
        check_emissions_header(fd, store.path)
        header = read_header(fd)
        if header is None:
            return Totals()
        warn_damaged_header(store.path, header)
        cache = _load(store, fd)
        end = data_end(fd, len(header))
        if cache.offset < end or not cache.valid:
            warned, covered, recounted = False, cache.offset, not cache.valid
            try:
                if not cache.groups and end - cache.offset > VECTORISED_ABOVE:
                    raise _Recount
                warned = _add_rows(iter_rows(fd, header, cache.offset, end=end), cache, store.path)
                cache.crc = zlib.crc32(os.pread(fd, end - cache.offset, cache.offset), cache.crc)
            except _Recount:
                # Appenders wait for our shared lock, so the file holds exactly the bytes up to ``end``.
                cache, recounted = _vectorised(store, fd, end), True
            cache.offset = end
            # Saved past rows it warned about, so the warning is not repeated. A cache its
            # checksum proved is not rewritten for a short tail: the next reader proves it the
            # same way, which below WAIT_ABOVE costs less than a save.
            if recounted or warned or end - covered > SAVE_ABOVE or end > WAIT_ABOVE:
                _save(store, fd, cache)
    result = Totals()
    for key, value in cache.groups.items():
        if matches(dict(zip(FILTER_KEYS, key)), filters):
            result = result.merged(value.totals())
    return result


class _Cache:
    """What the cache holds: per-group accumulators, the offset and CRC-32 of the bytes they
    cover, the sorted hashes of the run units counted, and how it proved itself: ``valid``
    once it covers its bytes (by the file's state or its checksum), ``trusted`` when the
    file's state alone proved it (no checksum needed)."""

    def __init__(self, offset: int, crc: int, groups: dict[GroupKey, Accumulator] | None = None,
                 units: array.array[int] | None = None, trusted: bool = True) -> None:
        self.offset, self.crc, self.trusted = offset, crc, trusted
        #: False for the empty cache that stands in for one missing, damaged or not this file's.
        self.valid = True
        self.groups: dict[GroupKey, Accumulator] = groups if groups is not None else {}
        self.units: array.array[int] = units if units is not None else array.array("I")

    def add_unit(self, unit: str) -> bool:
        """Add a run unit to the index; False (and nothing added) when it was counted before."""
        value = unit_hash(unit)
        at = bisect.bisect_left(self.units, value)
        if at < len(self.units) and self.units[at] == value:
            return False
        self.units.insert(at, value)
        return True


def covers_its_bytes(store: Store, fd: int) -> bool:
    """Whether the store's cache proves it covers exactly the bytes it claims (``lett doctor``)."""
    return _load(store, fd).valid


def _crc(fd: int, start: int, end: int, crc: int = 0) -> int:
    while start < end:
        data = os.pread(fd, min(_CHUNK, end - start), start)
        if not data:
            break
        crc, start = zlib.crc32(data, crc), start + len(data)
    return crc


def _vectorised(store: Store, fd: int, end: int) -> _Cache:
    from let_core.results.counting import TOTALS_COLUMNS, frame_accumulators, run_units
    frame = normalize_legacy(read_frame(store, TOTALS_COLUMNS))
    top = frame[frame["task"].fillna("") == ""] if "task" in frame else frame
    import numpy as np

    units = array.array("I", np.unique(unit_hashes(run_units(top))).tobytes())
    return _Cache(end, _crc(fd, 0, end), frame_accumulators(frame), units, trusted=True)


def _add_rows(rows: Iterator[Mapping[str, str]], cache: _Cache, path: Path | None = None) -> bool:
    """Feed rows, run unit by run unit, into per-(project, user, host) totals; True when some
    rows had no usable energy (and were named in a warning, which is given once: the caller
    then saves the cache past them). Raises _Recount on a unit counted before.

    LET appends a run's rows in one locked write, so they are contiguous; rows of a unit that
    are not (CodeCarbon checkpoints of runs interleaved, a later checkpoint appended after the
    cache was saved) are what _Recount hands to the vectorised count. LET's task rows are
    parts of a run, already inside the run's own energy.
    """
    current: list[Mapping[str, str]] = []
    groups = cache.groups

    def finish() -> None:
        if current:
            unit = _unit(current[0])
            if unit and not cache.add_unit(unit):
                raise _Recount
            key = tuple(str(current[0].get(k, "")) for k in FILTER_KEYS)
            groups.setdefault(key, Accumulator()).add_run(current)  # type: ignore[arg-type]
            current.clear()

    blank: list[Mapping[str, str]] = []
    for raw in rows:
        if path is not None and blank_energy(raw):
            blank.append(raw)
        row = effective(dict(raw))
        if row.get("task"):
            continue
        if current and (_unit(row) != _unit(current[0]) or not row.get("run_id")):
            finish()
        current.append(row)
    finish()
    if blank and path is not None:
        warn_blank_energy(path, blank)
    return bool(blank)


def _unit(row: Mapping[str, str]) -> str:
    run_id = row.get("run_id") or ""
    return run_unit(run_id, row.get("task_name") or "") if run_id else ""


def read_saved(path: Path) -> tuple[Any, bytes]:
    """A cache file's fields and the units' index after them: one JSON line (offsets,
    checksums, totals), then the index as raw bytes. Raises OSError, or ValueError when the
    line does not parse."""
    line, _, index = read_regular(path).partition(b"\n")
    return json.loads(line), index


def _load(store: Store, fd: int) -> _Cache:
    """The cache, proven to cover exactly its bytes; else an empty one from offset 0 (not trusted)."""
    fresh = _Cache(header_length(fd), _crc(fd, 0, header_length(fd)), trusted=False)
    fresh.valid = False
    try:
        cache, index = read_saved(cache_path(store))
        offset, crc, saved = cache["offset"], cache["crc"], tuple(cache["state"])
        now = appendlog.state(fd)
        if (cache["version"] != _VERSION or type(offset) is not int or type(crc) is not int
                or not fresh.offset <= offset <= now[2] or cache["store"] != str(store.path.absolute())
                or len(saved) != 4 or not all(type(v) is int for v in saved)):
            return fresh
        if offset > fresh.offset and os.pread(fd, 1, offset - 1) != b"\n":
            return fresh
        proven = not cache["racy"] and (saved == now or appendlog.only_own_appends(saved, now))  # type: ignore[arg-type]
        if not proven and _crc(fd, 0, offset) != crc:
            return fresh
        groups: dict[GroupKey, Accumulator] = {}
        for key, value in cache["groups"]:
            if (not isinstance(key, list) or len(key) != len(FILTER_KEYS)
                    or not all(isinstance(part, str) for part in key)):
                return fresh
            groups[(key[0], key[1], key[2])] = Accumulator.from_json(value)
        units = array.array("I")
        units.frombytes(index)
        if len(units) != cache["units"] or zlib.crc32(units.tobytes()) != cache["units_crc"]:
            return fresh
        return _Cache(offset, crc, groups, units, trusted=proven)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return fresh


def _tick_passed(mtime_ns: int, wait: bool) -> bool:
    """Whether the file system's clock has moved past ``mtime_ns`` (when ``wait``, waiting a
    tick at most).

    File times come from the kernel's coarse clock (one tick, 1-10 ms): a write in the same
    tick as the last one leaves the mtime as it was, so an unchanged state proves nothing
    until the clock has moved on (git's "racily clean" index entries). A cache saved in the
    same tick is marked racy and proves itself by its checksum next time.
    """
    import time

    if sys.platform != "linux":
        return False  # no coarse clock to ask: nothing proves the tick passed
    for _ in range(40 if wait else 1):
        try:
            now = time.clock_gettime_ns(_REALTIME_COARSE)
        except OSError:  # not Linux: no coarse clock to ask, so nothing proves the tick passed
            return False
        if now > mtime_ns:
            return True
        if wait:
            time.sleep(0.0005)
    return False


def _save(store: Store, fd: int, cache: _Cache) -> None:
    # Best effort: without a writable cache folder the totals are still right, just recomputed.
    # One file (see _load), replaced whole: a reader never pairs one cache with another's units.
    target = cache_path(store)
    data = cache.units.tobytes()
    state = appendlog.state(fd)
    # Waiting out the tick costs a millisecond or two; proving a racy cache by its checksum
    # next time costs less than that below WAIT_ABOVE bytes, and more above.
    racy = not _tick_passed(state[3], wait=state[2] > WAIT_ABOVE)
    body = {"racy": racy, "version": _VERSION, "store": str(store.path.absolute()), "offset": cache.offset,
            "crc": cache.crc,
            "state": list(state), "units": len(cache.units), "units_crc": zlib.crc32(data),
            "groups": [[list(key), value.to_json()] for key, value in cache.groups.items()]}
    with contextlib.suppress(OSError):
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(target, json.dumps(body).encode("utf-8") + b"\n" + data)
