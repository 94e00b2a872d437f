"""The read side of LET, one pass down (each module imports only those after it):

- ``deleting``: ``delete_results`` / ``lett delete``, from both sources, all or nothing where it can;
- ``loading``: ``load_results``, combining the two sources;
- ``cache``: the counted totals of the CSV store, kept current by reading only what was appended;
- ``calibration``: wall-socket calibrations, fitted and applied to estimates;
- ``csvsource``: the central CSV store as a frame (``let_core.dataset`` is the Parquet source);
- ``frames``: Arrow tables as pandas frames, for both sources;
- ``counting``: what stored runs count for, applying ``rule`` run by run or over a frame;
- ``rule``: each counting rule once, in the standard library only.

Importing this package is cheap; pandas and pyarrow load with the functions that need them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from let_core._lazy import lazy_exports

if TYPE_CHECKING:
    from let_core.results.cache import cached_totals
    from let_core.results.counting import (
        AGGREGATE_COLUMNS,
        TOTALS_COLUMNS,
        Totals,
        aggregate,
        counted_rows,
        frame_totals,
    )
    from let_core.results.loading import ResultsHandle, counted_totals, load_results

_EXPORTS = {
    "load_results": "let_core.results.loading",
    "counted_totals": "let_core.results.loading",
    "ResultsHandle": "let_core.results.loading",
    "cached_totals": "let_core.results.cache",
    "Totals": "let_core.results.counting",
    "aggregate": "let_core.results.counting",
    "counted_rows": "let_core.results.counting",
    "frame_totals": "let_core.results.counting",
    "TOTALS_COLUMNS": "let_core.results.counting",
    "AGGREGATE_COLUMNS": "let_core.results.counting",
}

# Spelled out (not list(_EXPORTS)): type checkers read __all__ literally.
__all__ = ["AGGREGATE_COLUMNS", "TOTALS_COLUMNS", "ResultsHandle", "Totals", "aggregate", "cached_totals",
           "counted_rows", "counted_totals", "frame_totals", "load_results"]
assert sorted(__all__) == sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
