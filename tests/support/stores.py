"""Store backends for the contract suite, and the records and reads it speaks in.

``Backend`` opens stores of one kind (``DuckDBStore`` in a folder, ``LakeStore`` on a
prefix of a real S3 bucket) and closes every store it opened, so no test leaves a
DuckDB file or a Lance dataset open at exit. Records are built as a client would
send them and go through ``prepare_write``, as the server's put does.
"""

from __future__ import annotations

import datetime
import json
import secrets
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from aios_memory.client.codec.dictionaries import dictionary_row
from aios_memory.client.codec.text import Codebook, Dictionary, encode_text
from aios_memory.flight_server.ingest import prepare_write
from aios_memory.flight_server.lake.store import LakeStore
from aios_memory.flight_server.lake.uri import parse_lake
from aios_memory.flight_server.store.base import Store, WriteResult
from aios_memory.flight_server.store.duckdb_store import DuckDBStore
from aios_memory.schemas import (
    CODEC_ZSTD,
    DEFAULT_LIMITS,
    DEFAULT_SYNC_TIERS,
    DICTIONARY_KIND,
    EXTERNAL_EMBED_MODEL,
    RECORD_SCHEMA,
    ScanRequest,
    SearchRequest,
    View,
)
from support.s3_server import lake_uri
from support.wire import batch_of, record_columns

BACKENDS = ("duckdb", "lake")
TENANT = "ana"


class Backend:
    """Stores of one kind under ``root``; ``place`` names one store's data (a DuckDB folder,
    a lake prefix), so that two places are two unrelated stores."""

    def __init__(self, kind: str, root: Path, endpoint: str | None = None) -> None:
        self.kind, self.root, self.endpoint = kind, root, endpoint
        self._prefix = f"contract-{secrets.token_hex(6)}"
        self._open: list[Store] = []
        self._caches = 0

    def open(self, place: str = "main") -> Store:
        """A store on ``place``; the lake's gets a cache folder no store used before."""
        # Both sync what a server's stores sync by default (``ServerSettings.sync_tiers``).
        if self.kind == "duckdb":
            store: Store = DuckDBStore(self.root / place, sync_tiers=DEFAULT_SYNC_TIERS)
        else:
            assert self.endpoint is not None
            self._caches += 1
            store = LakeStore(
                parse_lake(lake_uri(self.endpoint, f"{self._prefix}/{place}")),
                self.root / f"{place}-cache-{self._caches}",
                sync_tiers=DEFAULT_SYNC_TIERS,
            )
        self._open.append(store)
        return store

    def reopen(self, store: Store, place: str = "main") -> Store:
        """Close ``store`` and open ``place`` again: the DuckDB store on the same folder, the
        lake store on a new cache folder (rebuilt from the lake alone)."""
        self.close(store)
        return self.open(place)

    def close(self, store: Store) -> None:
        self._open.remove(store)
        store.close()

    def close_all(self) -> None:
        while self._open:
            self.close(self._open[-1])


# -- records ------------------------------------------------------------------------------------
def memories(
    texts: list[str],
    vectors: np.ndarray | None = None,
    *,
    metadata: list[dict[str, Any]] | None = None,
    codec: str = CODEC_ZSTD,
    dictionary: Dictionary | None = None,
    **fields: Any,
) -> dict[str, list[Any]]:
    """Columns of ``texts`` as a client sends them (tenant ``TENANT``, tier long_term);
    ``fields`` override a column with a list, or with one value for every row."""
    n = len(texts)
    columns = record_columns(texts, vectors, metadata=metadata, model=EXTERNAL_EMBED_MODEL)
    fields = {"tenant": TENANT, "tier": "long_term", **fields}
    for name, value in fields.items():
        columns[name] = list(value) if isinstance(value, (list, tuple)) else [value] * n
    encoded = [encode_text(t, codec=codec, dictionary=dictionary) for t in texts]
    for name in ("codec", "payload", "raw_size", "content_hash", "dict_id"):
        columns[name] = [getattr(e, name) for e in encoded]
    return columns


def write(store: Store, *batches: dict[str, list[Any]], reencode: bool = False) -> WriteResult:
    """One put of ``batches`` (client batches), through ``prepare_write`` as the server does."""
    prepared = prepare_write(
        [batch_of(b) for b in batches],
        None,
        DEFAULT_LIMITS,
        payloads=store.payloads,
        reencode=reencode,
    )
    return store.put(prepared)


def hlcs(result: WriteResult) -> dict[str, int]:
    """id -> hlc of every ack of one put."""
    return {i: h for ids, stamps in result for i, h in zip(ids, stamps, strict=True)}


# -- reads --------------------------------------------------------------------------------------
def scan(
    store: Store, *, view: View | None = None, batch_rows: int = 65_536, **request: Any
) -> pa.Table:
    request.setdefault("tenant", TENANT)
    message = ScanRequest.from_bytes(ScanRequest(**request).to_bytes())  # checked, as served
    batches = list(store.scan(message, batch_rows, view=view))
    return pa.Table.from_batches(batches, schema=RECORD_SCHEMA)


def search(
    store: Store, vector: np.ndarray | None = None, *, view: View | None = None, **request: Any
) -> pa.Table:
    """Hits of a search; ``vector`` (a unit vector) is the caller's query embedding."""
    request.setdefault("tenant", TENANT)
    if vector is not None:
        request["embedding"] = vector.tolist()
    message = SearchRequest.from_bytes(SearchRequest(**request).to_bytes())
    model = EXTERNAL_EMBED_MODEL if vector is not None else None
    query = None if vector is None else np.asarray(vector, np.float32)
    return store.search(message, query, model, view=view)


def ids(table: pa.Table) -> list[str]:
    return table.column("id").to_pylist()


def texts(table: pa.Table, dictionary: Dictionary | None = None) -> dict[str, str]:
    """id -> checked text of the live memories of ``table`` (``dictionary``: the one that
    ``zstd-dict`` payloads were made with)."""
    book = Codebook(lambda i: dictionary if dictionary and dictionary.dict_id == i else None)
    return {
        r["id"]: book.text(r, max_bytes=1 << 20)
        for r in table.to_pylist()
        if not r["deleted"] and r["kind"] != DICTIONARY_KIND
    }


def metadata_of(row: dict[str, Any]) -> dict[str, Any]:
    return json.loads(row["metadata"]) if row["metadata"] else {}


def dictionary_record(data: bytes, **fields: Any) -> tuple[dict[str, list[Any]], Dictionary]:
    """Columns of one dictionary record holding ``data``, and the dictionary itself."""
    row = dictionary_row(
        data, tenant=TENANT, tier="long_term", privacy=1, metadata={}, created_at=_now()
    )
    row.update(fields)
    return {name: [value] for name, value in row.items()}, Dictionary(row["dict_id"], data)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)
