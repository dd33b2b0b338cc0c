"""The Arrow schema of a memory record, version 1.

A memory is a sequence of versions; a record is one version. The store keeps
the winning version per ``(tenant, id)``: the highest ``(hlc, origin)``.
Everything else (vector and keyword indexes) is derived from records.

Fields
------
id              UUIDv7 text: time-ordered, made by the writer, stable across versions.
tenant          the user the memory belongs to.
tier            core | working | long_term | shared.
agent, session  who wrote it and in which conversation (nullable).
kind            "text" for now; scenes and dictionaries will add kinds.
created_at      when the memory was first made (UTC, microseconds).
hlc             hybrid logical clock of this version (48 bits ms, 16 bits counter).
                0 in a write from a client means "assign on commit".
origin          replica that made this version ("" from a client: the server's id).
privacy         0 public, 1 personal, 2 private, 3 secret.
codec, dict_id  how ``payload`` decodes (see ``codecs``); dict_id is for trained dictionaries.
payload         the text, compressed (and, later, encrypted) by the client.
raw_size        length of the decoded UTF-8 text in bytes.
content_hash    BLAKE2b-128 of the decoded UTF-8 text.
embedding       int8 vector; the float vector is ``embedding * embedding_scale``.
embedding_scale float32 scale of the int8 vector.
embed_model     which model made the vector; one dimension per (tenant, model).
metadata        a JSON object as text.
deleted         a tombstone: payload empty, no embedding.
"""

from __future__ import annotations

import pyarrow as pa

__all__ = [
    "RECORD_SCHEMA",
    "HIT_SCHEMA",
    "SCHEMA_VERSION",
    "TIERS",
    "LOCAL_TIERS",
    "SYNCED_TIERS",
    "PRIVACY_LEVELS",
    "DEFAULT_TENANT",
    "DEFAULT_KIND",
    "EXTERNAL_EMBED_MODEL",
    "OCCURRED_AT_KEY",
    "SOURCES_KEY",
    "CONSOLIDATED_SESSION_KEY",
    "SUMMARY_KIND",
    "FACT_KIND",
    "SUPERSEDED_FACT_KIND",
    "schema_version_of",
]

SCHEMA_VERSION = 1
TIERS = ("core", "working", "long_term", "shared")
LOCAL_TIERS = ("core", "working")
SYNCED_TIERS = ("long_term", "shared")
PRIVACY_LEVELS = {0: "public", 1: "personal", 2: "private", 3: "secret"}
DEFAULT_TENANT = "default"
DEFAULT_KIND = "text"
# embed_model of vectors a caller supplies without naming their model.
EXTERNAL_EMBED_MODEL = "external"
# When a memory happened (ISO 8601, UTC), beside ``created_at`` (when it was stored): a
# reserved metadata key, filtered as the field ``occurred_at``.
OCCURRED_AT_KEY = "aimem:occurred_at"
# Consolidation's provenance: the ids of the memories a summary or fact came from.
SOURCES_KEY = "aimem:sources"
# The session a summary or fact consolidates (its own ``session`` field holds the same).
CONSOLIDATED_SESSION_KEY = "aimem:consolidates"
SUMMARY_KIND = "summary"
FACT_KIND = "fact"
# A fact a newer one contradicted: kept, readable, pointing at its successor.
SUPERSEDED_FACT_KIND = "superseded_fact"

_META = {b"aios_memory.schema": b"record", b"aios_memory.version": str(SCHEMA_VERSION).encode()}

RECORD_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("tenant", pa.string(), nullable=False),
        pa.field("tier", pa.string(), nullable=False),
        pa.field("agent", pa.string()),
        pa.field("session", pa.string()),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("created_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("hlc", pa.uint64(), nullable=False),
        pa.field("origin", pa.string(), nullable=False),
        pa.field("privacy", pa.uint8(), nullable=False),
        pa.field("codec", pa.string(), nullable=False),
        pa.field("dict_id", pa.uint32()),
        pa.field("payload", pa.binary(), nullable=False),
        pa.field("raw_size", pa.uint32(), nullable=False),
        pa.field("content_hash", pa.binary(16), nullable=False),
        pa.field("embedding", pa.list_(pa.int8())),
        pa.field("embedding_scale", pa.float32()),
        pa.field("embed_model", pa.string()),
        pa.field("metadata", pa.string()),
        pa.field("deleted", pa.bool_(), nullable=False),
    ],
    metadata=_META,
)

# A search hit: the record as stored, plus its fused score.
HIT_SCHEMA = RECORD_SCHEMA.append(pa.field("score", pa.float64(), nullable=False)).with_metadata(
    {b"aios_memory.schema": b"hit", b"aios_memory.version": str(SCHEMA_VERSION).encode()}
)


def schema_version_of(schema: pa.Schema) -> int | None:
    """The record-schema version a schema declares, or None if it declares none."""
    raw = (schema.metadata or {}).get(b"aios_memory.version")
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None
