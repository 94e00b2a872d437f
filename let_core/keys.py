"""Exact integer codes for text keys (run ids), fast enough for millions of rows.

Deduplicating a result set and summing it per run both start by telling which rows share a run
id. Hashing a million Python-level strings costs 0.15-0.3 s on a small machine, which is more
than reading the Parquet columns. Run ids are almost always UUIDs, texts of one fixed width, and
Arrow keeps them in one contiguous buffer; read as fixed-size records, each row becomes a few
64-bit words that numpy mixes into one hash in a few milliseconds. Hash equality is then
checked against the bytes, so the codes are exact: a collision only sends us to the general
path (pandas' factorize), never merges two runs.

numpy and pandas are imported inside the functions: importing let_core stays cheap.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

_MIX = 0x9E3779B97F4A7C15  # 2**64 / golden ratio: spreads each word over all hash bits


# The last Arrow column coded, and its codes. load_results deduplicates by run id and the
# statement then groups by run id the very same (immutable) Arrow column: coding it once
# saves a tenth of a second per million rows. A weak reference, so no column is kept alive.
_last: tuple[weakref.ref[Any], np.ndarray] | None = None


def text_codes(values: pd.Series) -> np.ndarray:
    """One int64 code per row, equal exactly where the texts are equal; -1 for missing or empty
    text. Codes count 0, 1, ... in order of first appearance (``duplicated`` relies on it).
    The result is read-only (it may be shared with the previous caller)."""
    import numpy as np
    import pandas as pd

    global _last
    source = _arrow_source(values.array)
    cached = _last
    if source is not None and cached is not None and cached[0]() is source:
        return cached[1]
    codes = _fixed_width_codes(source) if source is not None else None
    if codes is None:
        codes, uniques = pd.factorize(values)
        codes = np.asarray(codes, dtype=np.int64)
        empty = np.flatnonzero(np.asarray(uniques == "", dtype=bool))
        if len(empty):
            codes[codes == empty[0]] = -1
    codes.setflags(write=False)
    if source is not None:
        _last = (weakref.ref(source), codes)
    return codes


def row_codes(values: pd.Series) -> tuple[np.ndarray, int]:
    """``text_codes`` where rows without a text get a code of their own (a run without a run id
    is a run by itself); returns the codes and one more than the largest."""
    import numpy as np

    codes = text_codes(values)
    missing = codes < 0
    top = int(codes.max()) + 1 if len(codes) else 0
    count = int(np.count_nonzero(missing))
    if count:
        codes = codes.copy()
        codes[missing] = top + np.arange(count)
        top += count
    return codes, top


def duplicated(frame: pd.DataFrame, keys: tuple[str, ...]) -> np.ndarray:
    """True for every row repeating an earlier row's ``keys`` (the first is kept), where the first
    key is a non-empty text. Only rows whose first key repeats are compared on all keys."""
    import numpy as np
    import pandas as pd

    first = text_codes(frame[keys[0]])
    present = first >= 0
    result = np.zeros(len(frame), dtype=bool)
    if not present.any():
        return result
    if present.all() and int(first.max()) + 1 == len(first):
        return result  # codes are dense (0, 1, ... in order of appearance): each text once
    counts = np.bincount(first[present])
    repeated = present.copy()
    repeated[present] = counts[first[present]] > 1
    rows = np.flatnonzero(repeated)
    if not len(rows):
        return result
    # Every run twice (the CSV store and the dataset both hold it) is the usual case: one
    # integer per row, from each key's codes, instead of hashing the texts again together.
    combined = first[rows].astype(np.int64)
    for key in keys[1:]:
        codes = text_codes(frame[key].iloc[rows]) + 1  # -1 (missing or "") becomes 0
        width = int(codes.max()) + 1
        if int(combined.max()) >= (1 << 62) // width:
            subset = frame[list(keys)].iloc[rows].reset_index(drop=True)
            result[rows] = subset.duplicated(keep="first").to_numpy()
            return result
        combined = combined * width + codes
    result[rows] = pd.Series(combined).duplicated(keep="first").to_numpy()
    return result


def _arrow_source(array: Any) -> Any:
    """The Arrow data behind a pandas column, or None for numpy-backed columns."""
    import pandas as pd

    if not isinstance(array, pd.arrays.ArrowExtensionArray):
        return None
    return array.__arrow_array__()


def _fixed_width_codes(chunked: Any) -> np.ndarray | None:
    """Codes for an Arrow text column whose values all have one width; None if it does not apply."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    if isinstance(chunked, pa.ChunkedArray):
        data = chunked.combine_chunks() if chunked.num_chunks != 1 else chunked.chunk(0)
    else:
        data = chunked
    offset_type: type[np.signedinteger]
    if pa.types.is_string(data.type) or pa.types.is_binary(data.type):
        offset_type = np.int32
    elif pa.types.is_large_string(data.type) or pa.types.is_large_binary(data.type):
        offset_type = np.int64
    else:
        return None
    n = len(data)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if data.null_count:
        return None
    buffers = data.buffers()
    offsets = np.frombuffer(buffers[1], dtype=offset_type, count=n + 1,
                            offset=data.offset * np.dtype(offset_type).itemsize)
    width = int(offsets[1] - offsets[0])
    if int(offsets[-1] - offsets[0]) != width * n or not (np.diff(offsets) == width).all():
        return None
    if width == 0:
        return np.full(n, -1, dtype=np.int64)
    # Each value as one record of 64-bit words plus a 4-, 2- and 1-byte tail: a view, no copy.
    tail = [(f"t{size}", f"<u{size}") for size in (4, 2, 1) if width % 8 & size]
    layout = np.dtype([(f"w{i}", "<u8") for i in range(width // 8)] + tail)
    records = np.frombuffer(buffers[2], dtype=layout, count=n, offset=int(offsets[0]))
    fields = [records[name] for name in layout.names or ()]
    mixed = np.zeros(n, dtype=np.uint64)
    for field in fields:
        np.bitwise_xor(mixed, field, out=mixed)  # (read in place from the records, no copy)
        mixed *= np.uint64(_MIX)  # wraps modulo 2**64, as intended
    # Usually every row is a run of its own: sorting the hashes (a few ms, against 30-40 ms
    # for hashing them into a table) shows it, and distinct hashes are distinct ids. The codes
    # are then what factorize gives, numbered in order.
    ordered = np.sort(mixed)
    if not (ordered[1:] == ordered[:-1]).any():
        return np.arange(n, dtype=np.int64)
    codes, uniques = pd.factorize(mixed)
    codes = np.asarray(codes, dtype=np.int64)
    # Exactness: rows sharing a hash must share their bytes with the hash's first row.
    counts = np.bincount(codes, minlength=len(uniques))
    shared = np.flatnonzero(counts[codes] > 1)
    if len(shared):
        first = np.empty(len(uniques), dtype=np.int64)
        first[codes[::-1]] = np.arange(n - 1, -1, -1)  # the last write per code is its first row
        representative = first[codes[shared]]
        for field in fields:
            if not np.array_equal(field[shared], field[representative]):
                return None  # a 64-bit collision between different ids: take the exact path
    return codes


# Codes of text columns read dictionary-encoded (the Parquet dataset's names and kinds), by
# the column's Arrow data: counting then groups by them without hashing a million texts
# again. Entries go with their column (weak references); the codes are small integers.
_dictionaries: dict[int, tuple[weakref.ref[Any], np.ndarray, list[str]]] = {}


def remember_dictionary(values: pd.Series, encoded: Any) -> None:
    """Keep the codes of ``values`` (an Arrow-backed text column) from ``encoded``, the same
    column dictionary-encoded (an Arrow chunked array), for ``dictionary_codes``."""
    import numpy as np
    import pyarrow as pa

    source = _arrow_source(values.array)
    if source is None or len(source) != len(encoded):
        return
    unified = encoded.unify_dictionaries()
    dictionary = unified.chunk(0).dictionary if unified.num_chunks else pa.array([], pa.string())
    labels = dictionary.to_pylist()
    if dictionary.null_count or len(set(labels)) != len(labels):
        return  # not what Parquet writes; counting then codes the texts itself
    # Missing values and "" are one label "", as in every other grouping of text here.
    blank = labels.index("") if "" in labels else len(labels)
    if blank == len(labels):
        labels.append("")
    indices = pa.chunked_array([chunk.indices for chunk in unified.chunks], pa.int32())
    dtype = np.int8 if len(labels) <= 127 else np.int16 if len(labels) <= 32767 else np.int32
    codes = indices.fill_null(blank).to_numpy().astype(dtype)
    codes.setflags(write=False)
    key = id(source)
    _dictionaries[key] = (weakref.ref(source, lambda _, key=key: _dictionaries.pop(key, None)), codes,
                          [str(label) for label in labels])


def dictionary_codes(values: pd.Series) -> tuple[np.ndarray, list[str]] | None:
    """Codes and labels of a column ``remember_dictionary`` saw ("" for missing values, every
    label once; codes read-only), or None for any other column."""
    source = _arrow_source(values.array)
    entry = None if source is None else _dictionaries.get(id(source))
    if entry is None or entry[0]() is not source:
        return None
    return entry[1], entry[2]
