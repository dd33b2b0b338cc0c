"""What does a sync round cost as the set grows and as the difference grows?

Two sides hold ``n`` records that differ in ``d`` of them (half only on the
device, half only on the cloud; ``d = 1`` is one record only on the device).
For each (n, d) this measures the bytes on the link that are not records,
the round trips and the seconds of one reconciliation, beside a naive full
exchange of every item (``ts`` u64 + 16-byte id, 24 bytes an item).

Two paths:

- ``protocol``: in process, pure ``sync.protocol.reconcile``. Two ``Reconciler`` s
  exchange encoded messages exactly as ``sync/session.py`` relays them and
  ``flight_server/sync/session.py`` answers them (records are not moved;
  a message announces the record batches it would carry). The difference
  found is checked against the true one. Seconds cover the exchange only
  (encode, decode, answer); building the ``ItemSet`` s is reported apart.
- ``servers``: two real servers on 127.0.0.1 (embedder ``none``, the cloud
  with role ``cloud``), seeded in process through ``DuckDBStore.put`` with
  identical replica rows (same id, hlc, origin, payload) before they start,
  then ``sync_once`` twice (the second must move nothing). The naive figures
  on this path are computed, not measured.

Example::

    .venv/bin/python bench/sync_reconcile.py --n 100000,1000000 \\
        --d 0,1,100,10000 --paths protocol,servers
"""

from __future__ import annotations

import contextlib
import datetime
import math
import shutil
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import base_parser, emit, log, quick  # noqa: E402

BENCH = "sync_reconcile"
ITEM_BYTES = 24  # naive: ts (u64) + 16-byte id per item
ID_BYTES = 16
FRAME_KIND_BYTES = 1  # sync/protocol/frames.py: every message frame starts with a kind byte
BATCH_ROWS = 2048  # DuckDBStore.sync_rows' default: records per batch a message announces
SEED_CHUNK = 50_000
TARGET_BYTES, TARGET_ROUND_TRIPS = 4096, 3
BASE_MS = 1_700_000_000_000  # Nov 2023: hlcs of past writes, so every server clock is ahead


# -- data --------------------------------------------------------------------------------------


@dataclass
class Split:
    """Positions (into one ordered universe of items) of what each side holds."""

    total: int  # items in the union
    only_a: np.ndarray  # positions only on side A (the device, the initiator)
    only_b: np.ndarray  # positions only on side B (the cloud, the responder)

    def sides(self) -> tuple[np.ndarray, np.ndarray]:
        """Sorted positions held by A and by B."""
        on_a = np.ones(self.total, bool)
        on_b = np.ones(self.total, bool)
        on_a[self.only_b] = False
        on_b[self.only_a] = False
        return np.flatnonzero(on_a), np.flatnonzero(on_b)


def split(n: int, d: int, rng: np.random.Generator) -> Split:
    """A holds ``n`` items; ``ceil(d/2)`` of them only on A, ``d // 2`` others only on B."""
    d_a, d_b = (d + 1) // 2, d // 2
    total = n + d_b
    picked = rng.choice(total, d_a + d_b, replace=False)
    return Split(total, np.sort(picked[:d_a]), np.sort(picked[d_a:]))


def hlcs(total: int, rng: np.random.Generator) -> np.ndarray:
    """Increasing hybrid-clock values ``ms << 16 | counter``, written in bursts.

    Half the writes land in the same millisecond as the one before (the
    counter goes up), the rest after a gap of 1 ms to 1 minute.
    """
    gap = np.where(rng.random(total) < 0.5, 0, rng.integers(1, 60_000, total))
    gap[0] = 0
    ms = BASE_MS + np.cumsum(gap)
    position = np.arange(total)
    run_start = np.maximum.accumulate(np.where(gap > 0, position, 0))
    counter = position - run_start
    assert counter.max() < 1 << 16
    return (ms.astype(np.uint64) << np.uint64(16)) | counter.astype(np.uint64)


# -- the protocol path -------------------------------------------------------------------------


class Side:
    """One end of a round, answering as ``SyncSession.step`` does, records left out."""

    def __init__(self, items: Any) -> None:
        from aios_memory.sync.protocol.reconcile import Reconciler

        self.items, self.reconciler = items, Reconciler(items)
        self.sent: set[int] = set()  # ItemSet indexes of the records this side would send

    def step(self, message: Any) -> Any:
        from aios_memory.sync.protocol.reconcile import Message

        outcome = self.reconciler.respond(message)
        offered = (self.reconciler.offered(ident) for ident in message.need)
        send = sorted(set(outcome.have) | {i for i in offered if i is not None})
        self.sent.update(send)
        return Message(
            tuple(outcome.ranges), tuple(outcome.need), batches=math.ceil(len(send) / BATCH_ROWS)
        )


def relay(a: Side, b: Side) -> dict[str, Any]:
    """One round as ``sync_once`` relays it: A starts, B answers, until one side is idle.

    Bytes count what crosses the A-B link (every frame to B and back; A's
    final idle message is never sent, as in ``sync/session.py``).
    """
    from aios_memory.sync.protocol.reconcile import Message

    def wire(message: Message) -> Message:
        nonlocal link_bytes, messages
        data = message.encode()
        link_bytes += FRAME_KIND_BYTES + len(data)
        messages += 1
        return Message.decode(data)

    link_bytes = messages = round_trips = 0
    start = time.perf_counter()
    message = wire(a.reconciler.initiate())
    while True:
        round_trips += 1
        reply = wire(b.step(message))
        if reply.idle:
            break
        message = a.step(reply)
        if message.idle:
            break
        message = wire(message)
    seconds = time.perf_counter() - start
    return {
        "reconcile_bytes": link_bytes,
        "round_trips": round_trips,
        "messages": messages,
        "seconds": round(seconds, 4),
    }


def naive(ts_a: np.ndarray, ids_a: np.ndarray, ids_b: np.ndarray) -> dict[str, Any]:
    """A sends every (ts, id); B finds both differences and answers with the ids it needs.

    B's computation: lexsort of both sides' ids (as two big-endian u64 words)
    concatenated; an id with no equal neighbour is on one side only. Measured
    here about 2x faster than ``np.isin`` on 16-byte void keys both ways, and
    than Python sets of bytes. Records are left out, as on the protocol path.
    """
    start = time.perf_counter()
    sent = np.empty(len(ts_a), [("ts", "<u8"), ("id", "V16")])
    sent["ts"], sent["id"] = ts_a, ids_a.view("V16").ravel()
    payload = sent.tobytes()
    received = np.frombuffer(payload, sent.dtype)
    theirs = np.frombuffer(received["id"].tobytes(), ">u8").reshape(-1, 2)
    mine = ids_b.view(">u8").reshape(-1, 2)
    words = np.concatenate([theirs, mine])
    order = np.lexsort((words[:, 1], words[:, 0]))
    ordered = words[order]
    equal = (ordered[1:] == ordered[:-1]).all(axis=1)
    paired = np.zeros(len(words), bool)
    paired[1:] |= equal
    paired[:-1] |= equal
    lone = order[~paired]
    need = lone[lone < len(theirs)]  # A has, B lacks: B asks for these ids
    have = lone[lone >= len(theirs)] - len(theirs)  # B has, A lacks: B sends these records
    reply = ids_a[need].tobytes()
    seconds = time.perf_counter() - start
    link = len(payload) + len(reply) + 2 * FRAME_KIND_BYTES
    return {
        "reconcile_bytes": link,
        "round_trips": 1,
        "seconds": round(seconds, 4),
        "found_a": int(len(need)),
        "found_b": int(len(have)),
    }


def protocol_case(n: int, d: int, seed: int) -> list[dict[str, Any]]:
    """Reconciliation and naive exchange of one (n, d), checked against the true difference."""
    from aios_memory.sync.protocol.reconcile import ItemSet

    rng = np.random.default_rng([seed, n, d])
    plan = split(n, d, rng)
    ts = hlcs(plan.total, rng)
    ids = rng.integers(0, 256, (plan.total, ID_BYTES), dtype=np.uint8)
    on_a, on_b = plan.sides()
    start = time.perf_counter()
    set_a, set_b = ItemSet(ts[on_a], ids[on_a]), ItemSet(ts[on_b], ids[on_b])
    prepare = time.perf_counter() - start
    a, b = Side(set_a), Side(set_b)
    result = relay(a, b)
    truth_a = {ids[i].tobytes() for i in plan.only_a}
    truth_b = {ids[i].tobytes() for i in plan.only_b}
    found_a = {set_a.id_at(i) for i in a.sent}
    found_b = {set_b.id_at(i) for i in b.sent}
    if found_a != truth_a or found_b != truth_b:
        raise AssertionError(
            f"n={n} d={d}: reconciliation found {len(found_a)}+{len(found_b)} "
            f"differences, the truth is {len(truth_a)}+{len(truth_b)} "
            f"(equal: {found_a == truth_a}, {found_b == truth_b})"
        )
    flat = naive(ts[on_a], ids[on_a], ids[on_b])
    if (flat["found_a"], flat["found_b"]) != (len(truth_a), len(truth_b)):
        raise AssertionError(f"n={n} d={d}: naive found {flat['found_a']}+{flat['found_b']}")
    sizes = {
        "items_a": len(on_a),
        "items_b": len(on_b),
        "only_a": len(truth_a),
        "only_b": len(truth_b),
    }
    params = {"n": n, "d": d, "seed": seed}
    recon = emit(
        BENCH,
        params,
        path="protocol",
        method="reconcile",
        n=n,
        d=d,
        **sizes,
        **result,
        prepare_seconds=round(prepare, 4),
        verified=True,
        meets_target=_meets(result),
    )
    log(
        f"  protocol n={n:,} d={d:,}: {result['reconcile_bytes']:,} B, "
        f"{result['round_trips']} round trips, {result['seconds']:.3f} s "
        f"(naive {flat['reconcile_bytes']:,} B, {flat['seconds']:.3f} s)"
    )
    flat_line = emit(
        BENCH,
        params,
        path="protocol",
        method="naive",
        n=n,
        d=d,
        **sizes,
        reconcile_bytes=flat["reconcile_bytes"],
        round_trips=flat["round_trips"],
        seconds=flat["seconds"],
        verified=True,
        naive_compute="numpy lexsort of both id sets (2 x u64 words) concatenated",
    )
    return [recon, flat_line]


def _meets(result: dict[str, Any]) -> bool:
    return result["reconcile_bytes"] < TARGET_BYTES and result["round_trips"] <= TARGET_ROUND_TRIPS


# -- the servers path --------------------------------------------------------------------------


def _uuid7ish(ms: np.ndarray, rng: np.random.Generator) -> list[str]:
    """UUIDv7-shaped ids (ms in the top 48 bits, seeded random bits below)."""
    rand = rng.integers(0, 2**62, len(ms), dtype=np.int64)
    rand_a = rng.integers(0, 1 << 12, len(ms), dtype=np.int64)
    out = []
    for m, a, r in zip(ms.tolist(), rand_a.tolist(), rand.tolist(), strict=True):
        value = ((m & ((1 << 48) - 1)) << 80) | (0x7 << 76) | (a << 64) | (0b10 << 62) | r
        out.append(str(uuid.UUID(int=value)))
    return out


def record_batch(ts: np.ndarray, origins: list[str], rng: np.random.Generator) -> Any:
    """Replica rows (hlc and origin set, tier long_term, no vector) with short texts."""
    import pyarrow as pa

    from aios_memory.client.codec.text import encode_text
    from aios_memory.schemas import RECORD_SCHEMA

    n = len(ts)
    ms = (ts >> np.uint64(16)).astype(np.int64)
    words = rng.integers(0, 100_000, (n, 3))
    texts = [
        f"note {a} about project {b}: remember to follow up on item {c}"
        for a, b, c in words.tolist()
    ]
    encoded = [encode_text(t) for t in texts]
    created = [
        datetime.datetime.fromtimestamp(m / 1000, datetime.timezone.utc) for m in ms.tolist()
    ]
    columns = {
        "id": _uuid7ish(ms, rng),
        "tenant": ["default"] * n,
        "tier": ["long_term"] * n,
        "agent": [None] * n,
        "session": [None] * n,
        "kind": ["text"] * n,
        "created_at": created,
        "hlc": ts,
        "origin": origins,
        "privacy": [1] * n,
        "codec": [e.codec for e in encoded],
        "dict_id": [None] * n,
        "payload": [e.payload for e in encoded],
        "raw_size": [e.raw_size for e in encoded],
        "content_hash": [e.content_hash for e in encoded],
        "embedding": [None] * n,
        "embedding_scale": [None] * n,
        "embed_model": [None] * n,
        "metadata": [None] * n,
        "deleted": [False] * n,
    }
    return pa.RecordBatch.from_arrays(
        [pa.array(columns[f.name], f.type) for f in RECORD_SCHEMA], schema=RECORD_SCHEMA
    )


def seed_stores(dir_a: Path, dir_b: Path, n: int, d: int, seed: int) -> dict[str, Any]:
    """Write the same replica rows into both stores (and each side's own rows into its own).

    Rows held by both sides were written half by A and half by B (their
    origin says which); rows on one side only were written by that side.
    """
    from aios_memory.flight_server import DuckDBStore
    from aios_memory.flight_server.ingest import prepare_write
    from aios_memory.schemas import DEFAULT_LIMITS

    rng = np.random.default_rng([seed, n, d, 1])
    plan = split(n, d, rng)
    ts = hlcs(plan.total, rng)
    where = np.zeros(plan.total, np.int8)  # 0 both, 1 only A, 2 only B
    where[plan.only_a], where[plan.only_b] = 1, 2
    stores = [DuckDBStore(dir_a), DuckDBStore(dir_b)]
    replica_ids = [s.replica_id for s in stores]
    started = time.perf_counter()
    seconds = [0.0, 0.0]
    try:
        for first in range(0, plan.total, SEED_CHUNK):
            part = slice(first, min(first + SEED_CHUNK, plan.total))
            side = where[part]
            writer = np.where(side == 2, 1, np.where(side == 1, 0, rng.integers(0, 2, len(side))))
            batch = record_batch(ts[part], [replica_ids[w] for w in writer.tolist()], rng)
            for k, (store, skip) in enumerate(zip(stores, (2, 1), strict=True)):
                rows = batch.filter(np.asarray(side != skip))
                t0 = time.perf_counter()
                store.put(prepare_write([rows], None, DEFAULT_LIMITS))
                seconds[k] += time.perf_counter() - t0
            log(f"    seeded {part.stop:,}/{plan.total:,} ({time.perf_counter() - started:.0f} s)")
    finally:
        for store in stores:
            store.close()
    return {
        "seed_seconds_a": round(seconds[0], 2),
        "seed_seconds_b": round(seconds[1], 2),
        "only_a": len(plan.only_a),
        "only_b": len(plan.only_b),
        "items_a": plan.total - len(plan.only_b),
        "items_b": plan.total - len(plan.only_a),
    }


def servers_case(n: int, d: int, seed: int, workdir: Path) -> list[dict[str, Any]]:
    """Seed two data directories, start two servers, ``sync_once`` twice; one line each."""
    from aios_memory.flight_server import ServerSettings, start_server
    from aios_memory.sync import FlightReplica, sync_once

    case = workdir / f"n{n}-d{d}"
    dir_a, dir_b = case / "device", case / "cloud"
    log(f"  servers n={n:,} d={d:,}: seeding")
    sizes = seed_stores(dir_a, dir_b, n, d, seed)
    params = {"n": n, "d": d, "seed": seed}
    common = {
        "token": "bench-secret",
        "host": "127.0.0.1",
        "port": 0,
        "embedder": "none",
        "checkpoint_seconds": 0,
    }
    lines = []
    started = time.perf_counter()
    with (
        start_server(ServerSettings(data_dir=dir_a, **common)) as device,
        start_server(ServerSettings(data_dir=dir_b, role="cloud", **common)) as cloud,
    ):
        log(f"    servers up in {time.perf_counter() - started:.1f} s")
        with (
            FlightReplica(device.uri, device.token) as a,
            FlightReplica(cloud.uri, cloud.token) as b,
        ):
            for attempt in ("first", "rerun"):
                with counting_item_sets() as builds:
                    report = sync_once(a, b)
                fields = {
                    k: getattr(report, k)
                    for k in (
                        "reconcile_bytes",
                        "bytes_sent",
                        "bytes_received",
                        "round_trips",
                        "seconds",
                        "sent",
                        "received",
                        "local_items",
                        "cloud_items",
                    )
                }
                fields["item_set_builds"] = len(builds)
                fields["item_set_build_seconds"] = round(sum(builds), 4)
                expected = (0, 0) if attempt == "rerun" else (sizes["only_a"], sizes["only_b"])
                if (report.sent, report.received) != expected:
                    raise AssertionError(
                        f"n={n} d={d} {attempt}: sent/received "
                        f"{report.sent}/{report.received}, expected {expected}"
                    )
                log(
                    f"    {attempt}: {report.reconcile_bytes:,} B reconcile, "
                    f"{report.bytes_sent + report.bytes_received:,} B in all, "
                    f"{report.round_trips} round trips, {report.seconds:.2f} s "
                    f"({len(builds)} item sets built in {sum(builds):.2f} s), "
                    f"sent {report.sent} received {report.received}"
                )
                lines.append(
                    emit(
                        BENCH,
                        params,
                        path="servers",
                        method="reconcile",
                        attempt=attempt,
                        n=n,
                        d=d,
                        **sizes,
                        **fields,
                        meets_target=_meets(fields),
                        verified=True,
                    )
                )
    item_seconds = item_set_seconds(dir_a)
    record_bytes = lines[0]["bytes_sent"] + lines[0]["bytes_received"] - lines[0]["reconcile_bytes"]
    ids_bytes = sizes["items_a"] * ITEM_BYTES + sizes["only_a"] * ID_BYTES
    lines.append(
        emit(
            BENCH,
            params,
            path="servers",
            method="naive",
            attempt="computed",
            n=n,
            d=d,
            **sizes,
            computed=True,
            reconcile_bytes=ids_bytes,
            round_trips=1,
            record_bytes=record_bytes,
            total_bytes=ids_bytes + record_bytes,
            note="computed, not measured: items_a x 24 bytes + the ids B needs x 16, "
            "plus the same record bytes as the measured first round",
        )
    )
    emit(
        BENCH,
        params,
        path="servers",
        method="item_set",
        n=n,
        d=d,
        item_set_seconds=item_seconds,
        note="DuckDBStore.sync_items on the device's store after the rounds, cold process "
        "cache: the SQL SHA-256 per row and the ItemSet sort, paid by every round",
    )
    shutil.rmtree(case, ignore_errors=True)
    return lines


@contextlib.contextmanager
def counting_item_sets() -> Iterator[list[float]]:
    """Seconds of each item set the servers build from DuckDB meanwhile (cache misses).

    Wraps ``flight_server.sync._state.item_arrays`` (the SQL with a SHA-256 per row) for
    the duration; both servers run in this process, so both are counted.
    """
    from aios_memory.flight_server.sync import _state as _sync_state

    original, builds = _sync_state.item_arrays, []

    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            builds.append(time.perf_counter() - start)

    _sync_state.item_arrays = timed
    try:
        yield builds
    finally:
        _sync_state.item_arrays = original


def item_set_seconds(data_dir: Path) -> float:
    """Seconds one side spends building its item set from DuckDB (no cache)."""
    from aios_memory.flight_server import DuckDBStore

    store = DuckDBStore(data_dir)
    try:
        start = time.perf_counter()
        items, _ = store.sync_items("default", store.sync_tiers, 0)
        seconds = time.perf_counter() - start
        log(f"    item set of {len(items):,} from DuckDB: {seconds:.2f} s")
        return round(seconds, 3)
    finally:
        store.close()


# -- main --------------------------------------------------------------------------------------


def _ints(text: str) -> list[int]:
    return [int(x.replace("_", "")) for x in text.split(",") if x]


def main() -> None:
    """Run each path for every (n, d)."""
    parser = base_parser(__doc__.split("\n")[0])
    parser.add_argument(
        "--n",
        type=_ints,
        default=[100_000, 1_000_000],
        help="set sizes, comma separated (default 100000,1000000)",
    )
    parser.add_argument(
        "--d",
        type=_ints,
        default=[0, 1, 100, 10_000],
        help="differences, comma separated (default 0,1,100,10000)",
    )
    parser.add_argument(
        "--servers-n",
        type=_ints,
        default=None,
        help="set sizes for the servers path (default: --n)",
    )
    parser.add_argument(
        "--paths",
        default="protocol,servers",
        help="protocol, servers or both (default protocol,servers)",
    )
    parser.add_argument("--seed", type=int, default=0, help="data seed")
    parser.add_argument(
        "--workdir",
        default=None,
        help="where the servers path puts its data directories (default a "
        "temporary folder, removed afterwards)",
    )
    args = parser.parse_args()
    if quick():
        args.n, args.d, args.servers_n = [2000], [0, 1, 100], [2000]
    paths = {p.strip() for p in args.paths.split(",") if p.strip()}
    if paths - {"protocol", "servers"}:
        raise SystemExit(f"unknown paths: {', '.join(sorted(paths - {'protocol', 'servers'}))}")
    if "protocol" in paths:
        log("protocol path")
        for n in args.n:
            for d in args.d:
                protocol_case(n, d, args.seed)
    if "servers" in paths:
        log("servers path")
        failed = []
        with tempfile.TemporaryDirectory(prefix="aimem-sync-bench-", dir=args.workdir) as tmp:
            for n in args.servers_n or args.n:
                for d in args.d:
                    try:
                        servers_case(n, d, args.seed, Path(tmp))
                    except Exception as exc:  # report it, go on with the other cases, fail
                        log(traceback.format_exc())
                        failed.append((n, d))
                        emit(
                            BENCH,
                            {"n": n, "d": d, "seed": args.seed},
                            path="servers",
                            method="reconcile",
                            n=n,
                            d=d,
                            error=f"{type(exc).__name__}: {exc}"[:2000],
                        )
        if failed:
            raise SystemExit(f"servers path failed for (n, d) = {failed}")


if __name__ == "__main__":
    main()
