"""What the privacy layers cost: access control, TLS, and sealing private memories.

One JSON line per result (``bench`` = ``privacy``), told apart by ``kind``:

- ``recall``: hybrid recall (keyword + a supplied query vector, k=10) over one tenant's
  memories, through four tokens in turn on the same server, query by query: the owner token,
  the tenant's own token with every right (its view is the whole tenant: no filter), the
  tenant's token at clearance 1 (a filtered view: the allowed rows are computed in SQL first),
  and another tenant reading the shared records that name it;
- ``auth``: a ``health`` call with the owner token against a signed token (HMAC check and a
  stat of the revocation list);
- ``transport``: the same recall over ``grpc://``, ``grpc+tls://`` and mutual TLS, three
  servers on copies of one data directory, interleaved;
- ``sealing``: sealing and opening one memory (AES-256-GCM through ``client.codec.sealing``) and the
  bytes it adds per record.

Example (without ``--data`` or ``AIMEM_BENCH_DATA`` the texts are generated)::

    .venv/bin/python bench/privacy.py --data PATH/TO/locomo-dev \\
        > bench/results/privacy.jsonl
"""

from __future__ import annotations

import contextlib
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    base_parser,
    conversation_files,
    data_name,
    emit,
    latency_ms,
    locomo_turns,
    log,
    quick,
    running_server,
)

from aios_memory.client import MemoryClient  # noqa: E402
from aios_memory.schemas import TIERS  # noqa: E402

DIM = 384
BENCH = "privacy"


def texts_for(data: str | None, n: int, seed: int) -> list[str]:
    """``n`` texts: LoCoMo turns when ``--data`` is given (repeated), else generated."""
    if data:
        pool = [t.text for path in conversation_files(data) for t in locomo_turns(path)]
    else:
        rng = random.Random(seed)
        words = [
            "lunch",
            "paper",
            "trip",
            "sister",
            "bike",
            "garden",
            "piano",
            "coffee",
            "office",
            "dog",
            "rain",
            "book",
        ]
        pool = [" ".join(rng.choice(words) for _ in range(12)) for _ in range(2000)]
    return [pool[i % len(pool)] + ("" if i < len(pool) else f" #{i}") for i in range(n)]


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    vectors = rng.standard_normal((n, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def seed_store(running: Any, texts: list[str], rng: np.random.Generator) -> None:
    """alice's memories across tiers and privacy levels; a quarter shared, half naming bob."""
    with MemoryClient(running.uri, running.token, tenant="alice", timeout=600, encrypt_at=4) as mem:
        for start in range(0, len(texts), 2000):
            chunk = texts[start : start + 2000]
            for offset, tier in enumerate(TIERS):
                part = chunk[offset::4]
                readers = ["bob"] if tier == "shared" and start % 4000 == 0 else None
                mem.remember(
                    part,
                    tier=tier,
                    privacy=(start // 2000) % 4,
                    embeddings=unit(rng, len(part)),
                    readers=readers,
                )
        wait_for_vectors(mem)


def wait_for_vectors(mem: MemoryClient, timeout: float = 600.0) -> None:
    """Until every vector is in its graph (searches meanwhile scan a pending tail)."""
    deadline = time.monotonic() + timeout
    while mem.stats()["vectors_pending"] and time.monotonic() < deadline:
        time.sleep(0.5)


def tokens(running: Any) -> dict[str, tuple[str, str]]:
    """name -> (token, tenant addressed) for the four views compared."""
    from aios_memory.flight_server.auth.tokens import TokenAuthority

    authority = TokenAuthority(running.data_dir)
    full, _ = authority.create("alice", "full", TIERS, TIERS, 3, None)
    scoped, _ = authority.create("alice", "agent", TIERS, TIERS, 1, None)
    reader, _ = authority.create("bob", "reader", TIERS, TIERS, 3, None)
    return {
        "owner": (running.token, "alice"),
        "tenant_whole": (full, "alice"),
        "tenant_clearance_1": (scoped, "alice"),
        "other_tenant_reader": (reader, "alice"),
    }


def interleaved(calls: dict[str, Callable[[int], Any]], n: int) -> dict[str, list[float]]:
    """Run every call once per round, in a rotating order, ``n`` rounds."""
    seconds: dict[str, list[float]] = {name: [] for name in calls}
    names = list(calls)
    for i in range(n):
        for name in names[i % len(names) :] + names[: i % len(names)]:
            started = time.perf_counter()
            calls[name](i)
            seconds[name].append(time.perf_counter() - started)
    return seconds


def bench_access(
    running: Any, queries: list[str], vectors: np.ndarray, params: dict[str, Any]
) -> None:
    clients = {
        name: MemoryClient(running.uri, token, tenant=tenant, timeout=60)
        for name, (token, tenant) in tokens(running).items()
    }
    hits: dict[str, list[int]] = {name: [] for name in clients}

    def recall(name: str) -> Callable[[int], Any]:
        def call(i: int) -> None:
            found = clients[name].recall(queries[i], embedding=vectors[i], k=10)
            hits[name].append(len(found))

        return call

    for name in clients:  # warm caches and the allowed-row cache's first miss
        recall(name)(0)
    seconds = interleaved({name: recall(name) for name in clients}, len(queries))
    for name, values in seconds.items():
        emit(
            BENCH,
            params,
            kind="recall",
            view=name,
            mean_hits=float(np.mean(hits[name])),
            **latency_ms(values),
        )
    owner, signed = tokens(running)["owner"][0], tokens(running)["tenant_whole"][0]
    health = {
        name: MemoryClient(running.uri, token, timeout=60)
        for name, token in (("owner_token", owner), ("signed_token", signed))
    }
    seconds = interleaved(
        {name: (lambda i, c=c: c.health()) for name, c in health.items()}, len(queries) * 2
    )
    for name, values in seconds.items():
        emit(BENCH, params, kind="auth", token=name, **latency_ms(values))


@contextlib.contextmanager
def transports(source: Path, folder: Path) -> Iterator[dict[str, MemoryClient]]:
    """Plain, TLS and mutual-TLS servers on copies of ``source``, with a client each."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from support.certs import make_authority

    authority = make_authority(folder / "certs", "bench")
    server, device = authority.server_pair(), authority.client_pair()
    settings = {
        "plain": {},
        "tls": {"tls_cert": server.cert, "tls_key": server.key},
        "mtls": {"tls_cert": server.cert, "tls_key": server.key, "tls_client_ca": authority.cert},
    }
    with contextlib.ExitStack() as stack:
        clients = {}
        for name, extra in settings.items():
            copy = folder / name
            shutil.copytree(source, copy)
            running = stack.enter_context(running_server(copy, embedder="none", **extra))
            tls = {} if name == "plain" else {"tls_root_certs": authority.cert}
            if name == "mtls":
                tls.update(tls_cert=device.cert, tls_key=device.key)
            clients[name] = stack.enter_context(
                MemoryClient(running.uri, running.token, tenant="alice", timeout=60, **tls)
            )
        yield clients


def bench_transport(
    source: Path, queries: list[str], vectors: np.ndarray, params: dict[str, Any]
) -> None:
    with (
        tempfile.TemporaryDirectory(prefix="aimem-tls-") as folder,
        transports(source, Path(folder)) as clients,
    ):
        for client in clients.values():  # the first search opens (rebuilds) the indexes
            client.recall(queries[0], embedding=vectors[0], k=10)
            wait_for_vectors(client)
        seconds = interleaved(
            {
                name: (lambda i, c=c: c.recall(queries[i], embedding=vectors[i], k=10))
                for name, c in clients.items()
            },
            len(queries),
        )
    for name, values in seconds.items():
        emit(BENCH, params, kind="transport", transport=name, **latency_ms(values))


def sealed_rows(texts: list[str], rng: np.random.Generator) -> list[dict[str, Any]]:
    """Record rows as the client makes them (zstd-coded text, an int8 vector, metadata)."""
    from datetime import datetime, timezone

    from aios_memory.client.codec.text import encode_text
    from aios_memory.client.codec.vectors import quantize
    from aios_memory.schemas import new_id

    vectors, scales = quantize(unit(rng, len(texts)))
    rows = []
    for text, vector, scale in zip(texts, vectors, scales, strict=True):
        encoded = encode_text(text)
        rows.append(
            {
                "id": new_id(),
                "tenant": "alice",
                "tier": "long_term",
                "agent": "bench",
                "session": "s1",
                "kind": "text",
                "created_at": datetime.now(timezone.utc),
                "hlc": 0,
                "origin": "",
                "privacy": 2,
                "codec": encoded.codec,
                "dict_id": None,
                "payload": encoded.payload,
                "raw_size": encoded.raw_size,
                "content_hash": encoded.content_hash,
                "embedding": vector.tolist(),
                "embedding_scale": float(scale),
                "embed_model": "e5-small",
                "metadata": '{"topic": "bench"}',
                "deleted": False,
            }
        )
    return rows


def bench_sealing(texts: list[str], params: dict[str, Any]) -> None:
    """Seal and open each memory once; bytes a record carries before and after."""
    import secrets

    from aios_memory.client.codec.keys import TenantKey
    from aios_memory.client.codec.sealing import open_row, seal_row

    key = TenantKey("alice", 1, secrets.token_bytes(32))
    rows = sealed_rows(texts[:2000], np.random.default_rng(11))
    sealed, seal_s, open_s = [], [], []
    for number, row in enumerate(rows):
        started = time.perf_counter()
        sealed.append(seal_row(row, key, number + 1, "c-bench"))
        seal_s.append(time.perf_counter() - started)
    for row in sealed:
        started = time.perf_counter()
        opened = open_row(row, lambda tenant, key_id: key)
        open_s.append(time.perf_counter() - started)
        assert opened["content_hash"] != row["content_hash"]  # the text's hash, not the blob's
    plain = [
        len(r["payload"])
        + len(r["embedding"])
        + 4
        + len(r["metadata"])
        + 2 * 8
        + len(r["agent"])
        + len(r["session"])
        for r in rows
    ]
    emit(BENCH, params, kind="sealing", op="seal", **latency_ms(seal_s))
    emit(BENCH, params, kind="sealing", op="open", **latency_ms(open_s))
    emit(
        BENCH,
        params,
        kind="sealing",
        op="bytes",
        n=len(rows),
        plain_private_bytes_mean=float(np.mean(plain)),
        sealed_payload_bytes_mean=float(np.mean([len(r["payload"]) for r in sealed])),
        overhead_bytes_mean=float(np.mean([len(s["payload"]) for s in sealed]) - np.mean(plain)),
    )


def main() -> None:
    parser = base_parser(__doc__.split("\n")[0], data=True, data_optional=True)
    parser.add_argument("--memories", type=int, default=20_000)
    parser.add_argument("--queries", type=int, default=300)
    args = parser.parse_args()
    n, q = (2000, 40) if quick() else (args.memories, args.queries)
    data = data_name(args.data) if args.data else "generated"
    params = {"memories": n, "queries": q, "k": 10, "dim": DIM, "data": data}
    rng = np.random.default_rng(7)
    texts = texts_for(args.data, n, 7)
    queries = [" ".join(t.split()[:4]) for t in random.Random(3).sample(texts, q)]
    vectors = unit(rng, q)
    bench_sealing(texts, params)
    with tempfile.TemporaryDirectory(prefix="aimem-privacy-") as folder:
        source = Path(folder) / "data"
        with running_server(source, embedder="none", checkpoint_seconds=0) as running:
            log(f"seeding {n} memories")
            seed_store(running, texts, rng)
            bench_access(running, queries, vectors, params)
        bench_transport(source, queries, vectors, params)


if __name__ == "__main__":
    main()
