"""Arrow data as DuckDB hands it back, cast to the record schema.

Apart from ``store`` and ``sync`` because both read records out of DuckDB
(a scan, the rows of a sync round) and neither may import the other: this leaf
sits below both and imports nothing of the server.
"""

from __future__ import annotations

import pyarrow as pa

from aios_memory.schemas import RECORD_SCHEMA

__all__ = ["conform"]


def conform(batch: pa.RecordBatch) -> pa.RecordBatch:
    """DuckDB's Arrow types (blobs, views, time zones) cast to the record schema.

    Parameters
    ----------
    batch
        A batch of records with the record schema's columns, in its order.

    Returns
    -------
    pyarrow.RecordBatch
        The same rows with exactly ``RECORD_SCHEMA``.
    """
    return pa.RecordBatch.from_arrays(
        [batch.column(i).cast(f.type) for i, f in enumerate(RECORD_SCHEMA)], schema=RECORD_SCHEMA
    )
