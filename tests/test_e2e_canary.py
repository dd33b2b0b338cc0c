"""An attacker's look at the cloud: private memories must leave no trace in any of its files.

A device and a cloud (role "cloud", with the local embedder running, so it
embeds and indexes whatever it can read). A client writes private and secret
memories, each holding random canary words (in the text, the session and the
metadata), and public ones with canaries of their own. The device syncs to
the cloud; the cloud is stopped (files closed, database checkpointed); then
every byte of every file under its data directory (database, WAL, indexes,
token, logs) is searched for each private canary, raw and lowercased (the
keyword index lowercases), and for each private memory's embedding: any
32-byte window of the int8 vector the device made, of its float32 form, and
of the embedder's own float32 output. Since compression hides text from a
byte search (DuckDB's, zstd's, tantivy's term dictionary), the attacker also
reads the files the way the server would: every value of every DuckDB table
with every payload decompressed that can be, and every term of every keyword
index.

The same searches must find the public canaries on the cloud and the private
ones on the device, so each search is shown able to fail. Last, a second
device with the key imported syncs from the cloud and recalls every canary.
"""

from __future__ import annotations

import os
import secrets
import shutil
import string
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pytest
import tantivy

from aios_memory.client import MemoryClient
from aios_memory.client.codec.keys import KeyStore
from aios_memory.client.codec.text import Dictionary, decode_payload
from aios_memory.flight_server import LocalE5Embedder, RunningServer
from aios_memory.flight_server.store.duckdb_store import DB_FILE
from aios_memory.sync import FlightReplica, SyncReport, sync_once

WINDOW = 32
PRIVATE, PUBLIC = 12, 6
_CHUNK = 4 << 20


def canary() -> str:
    """A random word no text contains by chance; mixed case, so lowercasing changes it."""
    body = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(18))
    return f"Qz{body}7"


def sync(local: RunningServer, remote: RunningServer) -> SyncReport:
    with FlightReplica(local.uri, local.token) as a, FlightReplica(remote.uri, remote.token) as b:
        return sync_once(a, b)


# -- the attacker's tools --------------------------------------------------------------------------


def files_under(root: Path) -> Iterator[tuple[Path, bytes]]:
    """Every file under ``root``, as bytes."""
    for folder, _, names in os.walk(root):
        for name in names:
            path = Path(folder) / name
            yield path, path.read_bytes()


def database_values(path: Path) -> bytes:
    """Every value of every table of a DuckDB file, as bytes (past DuckDB's compression), and
    every record payload decompressed where the codec needs no key."""
    out = bytearray()
    con = duckdb.connect(str(path), read_only=True)
    try:
        for (table,) in con.execute("SELECT table_name FROM duckdb_tables()").fetchall():
            for row in con.execute(f'SELECT * FROM "{table}"').fetchall():
                for value in row:
                    out += _as_bytes(value) + b"\0"
        records = con.sql("SELECT * FROM records").to_arrow_table().to_pylist()
    finally:
        con.close()
    return bytes(out) + b"\0".join(_payload_texts(records))


def _payload_texts(records: list[dict[str, Any]]) -> list[bytes]:
    plain = [r for r in records if r["codec"] in ("none", "zstd")]
    texts = {
        r["id"]: decode_payload(r["codec"], r["payload"], r["raw_size"], max_bytes=1 << 24)
        for r in plain
    }
    dictionaries = {
        r["dict_id"]: Dictionary(r["dict_id"], texts[r["id"]])
        for r in plain
        if r["kind"] == "zstd-dictionary"
    }
    for r in records:
        if r["codec"] == "zstd-dict" and r["dict_id"] in dictionaries:
            texts[r["id"]] = dictionaries[r["dict_id"]].decompress(r["payload"], r["raw_size"])
    return list(texts.values())


def index_terms(directory: Path) -> bytes:
    """Every term of every field of a tantivy index (read from a copy: opening writes locks)."""
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch) / "index"
        shutil.copytree(directory, copy)
        index = tantivy.Index.open(str(copy))
        index.config_reader(reload_policy="Manual")  # no meta.json watcher thread
        searcher = index.searcher()
        terms = [
            term
            for field in ("id", "tier", "text")
            for term, _ in searcher.terms_with_prefix(field, "")
        ]
        # Dropped before the copy is removed: a reloading reader (its watcher sees meta.json go)
        # takes .tantivy-meta.lock again, and rmtree then finds the directory not empty.
        del searcher, index
    return "\n".join(terms).encode()


def _as_bytes(value: Any) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
        return np.asarray(value, np.int64).astype(np.int8).tobytes()
    if isinstance(value, list) and value and all(isinstance(v, float) for v in value):
        return np.asarray(value, np.float32).tobytes()
    return str(value).encode()


def windows_of(vector_bytes: bytes) -> set[bytes]:
    """Every ``WINDOW``-byte slice of a vector's bytes (leaving out flat runs that any file has)."""
    return {
        vector_bytes[i : i + WINDOW]
        for i in range(len(vector_bytes) - WINDOW + 1)
        if len(set(vector_bytes[i : i + 8])) > 1
    }


def window_hits(data: bytes, windows: set[bytes]) -> int:
    """How many offsets of ``data`` start one of ``windows``: 8-byte prefixes matched with
    numpy at every offset, then candidates compared in full."""
    if not windows or len(data) < WINDOW:
        return 0
    prefixes = np.unique(np.array([int.from_bytes(w[:8], "little") for w in windows], np.uint64))
    hits = 0
    for start in range(0, len(data) - WINDOW + 1, _CHUNK):
        part = np.frombuffer(data[start : start + _CHUNK + WINDOW - 1], np.uint8)
        n = len(part) - WINDOW + 1
        values = np.zeros(n, np.uint64)
        for k in range(8):
            values |= part[k : k + n].astype(np.uint64) << np.uint64(8 * k)
        for offset in np.nonzero(np.isin(values, prefixes))[0]:
            hits += data[start + offset : start + offset + WINDOW] in windows
    return hits


def search(
    root: Path, needles: dict[str, bytes], windows: dict[str, set[bytes]]
) -> dict[str, list[str]]:
    """``label -> files`` for every needle and vector found under ``root``: in every file's
    bytes, in every database value and decompressed payload, in every keyword index term."""
    found: dict[str, list[str]] = {}
    sources = list(files_under(root))
    if (root / DB_FILE).exists():
        sources.append((root / f"{DB_FILE} (every value)", database_values(root / DB_FILE)))
    for meta in root.rglob("meta.json"):
        sources.append((meta.parent / "(every term)", index_terms(meta.parent)))
    for path, data in sources:
        for label, needle in needles.items():
            if needle in data:
                found.setdefault(label, []).append(str(path.relative_to(root)))
        for label, wanted in windows.items():
            if window_hits(data, wanted):
                found.setdefault(label, []).append(str(path.relative_to(root)))
    return found


# -- the test ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_cloud_keeps_no_trace_of_private_memories(
    server_factory: Callable[..., Any], tmp_path: Path
) -> None:
    device_dir, cloud_dir = tmp_path / "device", tmp_path / "cloud"
    private = [
        {"canary": canary(), "session": canary(), "meta": canary(), "privacy": 2 + i % 2}
        for i in range(PRIVATE)
    ]
    public = [{"canary": canary(), "privacy": i % 2} for i in range(PUBLIC)]
    for m in private:
        m["text"] = f"Diary: the code word is {m['canary']}, tell nobody about the garden"
    for m in public:
        m["text"] = f"Shopping list: {m['canary']}, bread and tomatoes for the garden party"

    with (
        server_factory(data_dir=device_dir, embedder="local") as device,
        server_factory(data_dir=cloud_dir, role="cloud", embedder="local") as cloud,
    ):
        with MemoryClient(device.uri, device.token) as mem:
            for m in private:
                [m["id"]] = mem.remember(
                    m["text"],
                    tier="long_term",
                    privacy=m["privacy"],
                    session=m["session"],
                    metadata={"note": m["meta"]},
                    agent="diarist",
                )
            for m in public:
                [m["id"]] = mem.remember(m["text"], tier="long_term", privacy=m["privacy"])
            transfer, code = mem.sealer.keys.export_key("default")
        assert sync(device, cloud).sent == PRIVATE + PUBLIC
        vectors = _device_vectors(device)
        with MemoryClient(cloud.uri, cloud.token, keys=tmp_path / "no-keys") as outsider:
            assert outsider.stats()["memories"] == PRIVATE + PUBLIC
            for m in private:  # found by nothing on the cloud: it has no text and no vector
                assert outsider.recall(m["canary"], mode="keyword") == []
                hits = outsider.recall(m["text"], mode="vector", k=50)
                assert {h.id for h in hits} == {p["id"] for p in public}
            assert [h.id for h in outsider.recall(public[0]["canary"], mode="keyword")] == [
                public[0]["id"]
            ]

    embedder = LocalE5Embedder()
    needles, windows = {}, {}
    for n, m in enumerate(private):
        for part in ("canary", "session", "meta"):
            needles[f"private {n} {part}"] = m[part].encode()
            needles[f"private {n} {part} lowercased"] = m[part].lower().encode()
        codes, scale = vectors[m["id"]]
        windows[f"private {n} int8 vector"] = windows_of(codes.tobytes())
        windows[f"private {n} float32 vector"] = windows_of(
            (codes.astype(np.float32) * np.float32(scale)).tobytes()
        )
        windows[f"private {n} embedder output"] = windows_of(
            embedder.embed_passages([m["text"]])[0].astype(np.float32).tobytes()
        )
    for n, m in enumerate(public):
        needles[f"public {n} canary"] = m["canary"].encode()
        needles[f"public {n} canary lowercased"] = m["canary"].lower().encode()

    on_cloud = search(cloud_dir, needles, windows)
    leaks = {label: where for label, where in on_cloud.items() if label.startswith("private")}
    assert leaks == {}, f"private data found in the cloud's files: {leaks}"
    for n in range(PUBLIC):  # the search can fail: the cloud reads and indexes public ones
        assert f"public {n} canary" in on_cloud and f"public {n} canary lowercased" in on_cloud

    on_device = search(device_dir, needles, windows)
    for n in range(PRIVATE):  # the search can fail: the device indexed what it opened
        assert f"private {n} canary lowercased" in on_device, n
        assert f"private {n} int8 vector" in on_device, n

    phone_keys = KeyStore(tmp_path / "phone-keys")
    phone_keys.import_key(transfer, code)
    with (
        server_factory(data_dir=cloud_dir, role="cloud") as cloud,
        server_factory(
            data_dir=tmp_path / "phone", embedder="local", keys_dir=phone_keys.path
        ) as phone,
    ):
        assert sync(phone, cloud).received == PRIVATE + PUBLIC
        with MemoryClient(phone.uri, phone.token, keys=phone_keys) as mem:
            for m in private:
                [hit] = mem.recall(m["canary"], mode="keyword")
                assert (hit.id, hit.text, hit.session, hit.metadata, hit.agent) == (
                    m["id"],
                    m["text"],
                    m["session"],
                    {"note": m["meta"]},
                    "diarist",
                )
            # Every private memory has a vector on the phone. (Which near-duplicate diary line
            # ranks first for a query is the embedder's business: asking for all of them is not.)
            found = mem.recall("the code word in my diary", mode="vector", k=PRIVATE + PUBLIC)
            assert {m["id"] for m in private} <= {h.id for h in found}


def _device_vectors(device: RunningServer) -> dict[str, tuple[np.ndarray, float]]:
    """``id -> (int8 codes, scale)`` of every sealed vector the device made."""
    rows = (
        device.store._cursor()
        .execute(
            "SELECT r.id, s.embedding, s.embedding_scale FROM sealed_vectors s "
            "JOIN records r USING (seq)"
        )
        .fetchall()
    )
    return {
        memory_id: (np.asarray(codes, np.int8), float(scale)) for memory_id, codes, scale in rows
    }
