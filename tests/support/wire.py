"""Raw Flight helpers for tests that must send what the SDK would refuse to build."""

from __future__ import annotations

import datetime
import json

import numpy as np
import pyarrow as pa
import pyarrow.flight as flight

from aios_memory.client.codec.text import encode_text
from aios_memory.schemas import PUT_PATH, RECORD_SCHEMA, PutAck, PutCommit, new_id


def options(token: str, timeout: float = 10) -> flight.FlightCallOptions:
    return flight.FlightCallOptions(
        headers=[(b"authorization", f"Bearer {token}".encode())], timeout=timeout
    )


def record_columns(
    texts: list[str],
    vectors: np.ndarray | None = None,
    *,
    tier: str = "working",
    model: str = "external",
    metadata: list[dict] | None = None,
) -> dict[str, list]:
    n = len(texts)
    encoded = [encode_text(t) for t in texts]
    if vectors is not None:
        scales = np.abs(vectors).max(axis=1) / 127
        quantized = np.rint(vectors / scales[:, None]).astype(np.int8)
    return {
        "id": [new_id() for _ in texts],
        "tenant": ["default"] * n,
        "tier": [tier] * n,
        "agent": [None] * n,
        "session": [None] * n,
        "kind": ["text"] * n,
        "created_at": [datetime.datetime.now(datetime.timezone.utc)] * n,
        "hlc": [0] * n,
        "origin": [""] * n,
        "privacy": [1] * n,
        "codec": [e.codec for e in encoded],
        "dict_id": [None] * n,
        "payload": [e.payload for e in encoded],
        "raw_size": [e.raw_size for e in encoded],
        "content_hash": [e.content_hash for e in encoded],
        "embedding": [q.tolist() for q in quantized] if vectors is not None else [None] * n,
        "embedding_scale": scales.tolist() if vectors is not None else [None] * n,
        "embed_model": [model] * n if vectors is not None else [None] * n,
        "metadata": [json.dumps(m) for m in metadata] if metadata else [None] * n,
        "deleted": [False] * n,
    }


def batch_of(columns: dict[str, list], schema: pa.Schema = RECORD_SCHEMA) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays(
        [pa.array(columns[f.name], f.type) for f in schema], schema=schema
    )


def put(
    uri: str,
    token: str,
    batches: list[pa.RecordBatch],
    *,
    commit: bool = True,
    schema: pa.Schema | None = None,
    timeout: float = 10,
) -> list[PutAck]:
    """One do_put; without ``commit`` the stream just ends, as a cut connection would."""
    client = flight.FlightClient(uri)
    try:
        writer, reader = client.do_put(
            flight.FlightDescriptor.for_path(PUT_PATH),
            schema or batches[0].schema,
            options(token, timeout),
        )
        for batch in batches:
            writer.write_batch(batch)
        acks = []
        if commit:
            rows = sum(b.num_rows for b in batches)
            writer.write_metadata(PutCommit(batches=len(batches), rows=rows).to_bytes())
            for _ in batches:
                buf = reader.read()
                if buf is None:
                    writer.close()  # only close() raises the server's error
                    raise AssertionError("the server sent no ack and no error")
                acks.append(PutAck.from_bytes(buf.to_pybytes()))
        writer.close()
        return acks
    finally:
        client.close()


def scan_all(uri: str, token: str, include_deleted: bool = True) -> pa.Table:
    from aios_memory.schemas import ScanRequest

    client = flight.FlightClient(uri)
    try:
        ticket = flight.Ticket(ScanRequest(include_deleted=include_deleted).to_bytes())
        return client.do_get(ticket, options(token)).read_all()
    finally:
        client.close()


def action(uri: str, token: str, name: str, body: bytes = b"") -> bytes:
    client = flight.FlightClient(uri)
    try:
        return list(client.do_action(flight.Action(name, body), options(token)))[
            0
        ].body.to_pybytes()
    finally:
        client.close()
