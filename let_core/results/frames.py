"""Arrow tables as pandas frames, shared by the read side's two sources (the CSV store and
the Parquet dataset). pandas and pyarrow are imported inside the function."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd


def arrow_frame(table: Any) -> pd.DataFrame:
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
