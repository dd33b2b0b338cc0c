"""How small can a memory be? Every codec, one memory at a time, on conversations it never saw.

Split by conversation: the first ``--train`` LoCoMo conversations (sorted by name; 3 of the 5
dev conversations) train the zstd dictionaries, and every figure is measured on the others.
Each memory is compressed alone, as the store keeps it, through the project's own code
(``client.codec.text.encode_text`` and ``Codebook.decode``), and every payload is decoded again
and compared byte for byte (``lossless.failures`` counts the ones that differ).

One JSON line per result (``bench`` = ``compression``), told apart by ``kind``:

- ``codec``: one codec over every test memory (``scope`` = ``test``), and every codec again
  over the ``--lm-memories`` test memories the model also codes (``scope`` = ``subset``), so
  the model is compared like for like;
- ``recall_decode``: what decoding lm-coded hits costs a reader, cold and from the cache;
- ``all_in``: bytes per memory on disk through a real server (embedder ``local``), with the
  default policy (``zstd-dict``) and after ``recompress(tier, "lm")``.

``--plot`` draws bytes per memory against decode ms per memory (log scales).

Example::

    .venv/bin/python bench/compression.py --data PATH/TO/locomo-dev \\
        --lm-memories 300 > bench/results/compression.jsonl
"""

from __future__ import annotations

import os

# llama.cpp's OpenMP threads spin while they wait; on a shared 2-core machine they fight the
# other processes for the cores and every model call is 3-10x slower (0.5 s against 1.5-6 s
# a memory here). Passive waiting changes no payload. Must be set before llama_cpp loads;
# run with OMP_WAIT_POLICY= (empty: libgomp's default) to measure the default.
os.environ.setdefault("OMP_WAIT_POLICY", "passive")

import json  # noqa: E402
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import zstandard

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    base_parser,
    connect,
    dir_bytes,
    emit,
    latency_ms,
    load_questions,
    locomo_turns,
    log,
    quick,
    running_server,
    time_each,
)
from disk_bytes import duckdb_breakdown, group  # noqa: E402

from aios_memory.client.codec.dictionaries import DEFAULT_DICT_BYTES, train_dictionary  # noqa: E402
from aios_memory.client.codec.text import (
    DECODED_CACHE_BYTES,
    Codebook,
    Dictionary,
    EncodedText,
    content_hash,
    encode_text,
)
from aios_memory.client.importers import read_locomo  # noqa: E402
from aios_memory.schemas import DEFAULT_LIMITS, DICTIONARY_KIND, AiosMemoryError, dictionary_id_of

BENCH = "compression"
TIER = "long_term"
MAX_BYTES = DEFAULT_LIMITS.max_text_bytes
DICT_KB = (16, 64, 112)
DEFAULT_KB = DEFAULT_DICT_BYTES // 1024  # the lm policy falls back to the tier's dictionary
HITS = 10
TARGET_DECODE_MS = 50.0
QUICK_LM = 12
QUICK_ALL_IN_LM = 30


@dataclass(frozen=True)
class Turn:
    """One memory to compress: its text, bytes and speaker (the ``agent`` the model sees)."""

    text: str
    raw: bytes
    agent: str | None
    item: Any


@dataclass
class Codec:
    """A way to store a turn: ``encode(turn) -> row``, ``decode(row) -> bytes``."""

    name: str
    encode: Callable[[Turn], dict[str, Any]]
    decode: Callable[[dict[str, Any]], bytes]
    info: dict[str, Any] = field(default_factory=dict)
    book: Codebook | None = None
    dictionary: Dictionary | None = None


# --- data -------------------------------------------------------------------------------


def load_turns(files: Sequence[Path], whole: bool = False) -> list[Turn]:
    """Every turn of ``files`` in order (in quick mode the first ``QUICK_TURNS`` of each,
    unless ``whole``: dictionaries train on whole conversations even then)."""
    read = read_locomo if whole else locomo_turns
    return [
        Turn(item.text, item.text.encode("utf-8"), item.agent, item)
        for path in files
        for item in read(path)
    ]


def spread(turns: Sequence[Turn], count: int) -> list[Turn]:
    """``count`` turns evenly spaced over ``turns`` (all of them if fewer)."""
    if count >= len(turns):
        return list(turns)
    return [turns[i * len(turns) // count] for i in range(count)]


def split(data: str, train: int) -> tuple[list[Path], list[Path]]:
    """The first ``train`` conversations train, the rest are measured (1 and 1 in quick mode)."""
    files = sorted(Path(data).glob("*.json"))
    if quick():
        files, train = files[:2], 1
    if not 0 < train < len(files):
        raise SystemExit(f"--train {train}: need between 1 and {len(files) - 1} of {len(files)}")
    return files[:train], files[train:]


# --- codecs -----------------------------------------------------------------------------


def row_of(encoded: Any, turn: Turn) -> dict[str, Any]:
    """The record fields ``Codebook.decode`` reads, for one encoded turn."""
    return {
        "codec": encoded.codec,
        "dict_id": encoded.dict_id,
        "payload": encoded.payload,
        "raw_size": encoded.raw_size,
        "content_hash": encoded.content_hash,
        "agent": turn.agent,
        "id": turn.item.metadata.get("dia_id"),
    }


def project_codec(
    name: str,
    policy: str,
    dictionary: Dictionary | None = None,
    lm: Any = None,
    info: dict[str, Any] | None = None,
) -> Codec:
    """``encode_text`` with ``policy``, decoded by a ``Codebook`` that knows the dictionary."""
    book = Codebook(lambda _id: dictionary, lm=(lambda: lm) if lm is not None else None)

    def encode(turn: Turn) -> dict[str, Any]:
        return row_of(
            encode_text(turn.text, codec=policy, dictionary=dictionary, lm=lm, agent=turn.agent),
            turn,
        )

    return Codec(
        name,
        encode,
        lambda row: book.decode(row, max_bytes=MAX_BYTES),
        info or {},
        book,
        dictionary,
    )


def raw_codec() -> Codec:
    """The text as it is. (``encode_text(codec="none")`` still picks zstd where smaller.)"""
    book = Codebook()

    def encode(turn: Turn) -> dict[str, Any]:
        return row_of(EncodedText("none", turn.raw, len(turn.raw), content_hash(turn.raw)), turn)

    return Codec("none", encode, lambda row: book.decode(row, max_bytes=MAX_BYTES), book=book)


def stock_zstd() -> Codec:
    """zstd level 3 with its stock frame (magic, content size, no fallback to raw)."""
    compressor, decompressor = zstandard.ZstdCompressor(level=3), zstandard.ZstdDecompressor()
    return Codec(
        "zstd-stock-frame",
        lambda t: {"payload": compressor.compress(t.raw)},
        lambda row: decompressor.decompress(row["payload"]),
    )


def trained(samples: list[bytes], kb: int) -> Dictionary:
    """A dictionary of ``kb`` KB trained as ``client.codec.dictionaries.train_dictionary`` trains
    (``zstandard.train_dictionary`` with its default parameters), on every sample."""
    data = zstandard.train_dictionary(kb * 1024, samples).as_bytes()
    return Dictionary(dictionary_id_of(content_hash(data)), data)


def client_dictionary(samples: list[bytes]) -> Dictionary | None:
    """What ``MemoryClient.train_dictionary`` would keep from these texts (its size cap too)."""
    data, report = train_dictionary(samples, None)
    log(f"  client train_dictionary: {report.reason} ({report.dict_bytes} bytes)")
    return Dictionary(report.dict_id, data) if data is not None else None


def fast_codecs(train: list[Turn]) -> list[Codec]:
    """Every codec but the model's, dictionaries trained on ``train``."""
    samples = [t.raw for t in train]
    codecs = [raw_codec(), project_codec("zstd", "zstd"), stock_zstd()]
    for kb in DICT_KB:
        dictionary = trained(samples, kb)
        codecs.append(
            project_codec(
                f"zstd-dict-{kb}k",
                "zstd-dict",
                dictionary,
                info={"dict_bytes": len(dictionary.data)},
            )
        )
    default = client_dictionary(samples)
    if default is not None:
        codecs.append(
            project_codec(
                "zstd-dict-client", "zstd-dict", default, info={"dict_bytes": len(default.data)}
            )
        )
    return codecs


def load_model() -> tuple[Any, float] | None:
    """The process's language-model codec and its load time, or None if it cannot load."""
    start = time.perf_counter()
    try:
        from aios_memory.client.codec._lm import load_lm_codec

        model = load_lm_codec()
    except (ImportError, AiosMemoryError) as exc:
        log(f"  lm codec unavailable: {exc}")
        return None
    return model, time.perf_counter() - start


# --- measuring --------------------------------------------------------------------------


def safe(decode: Callable[[dict[str, Any]], bytes]) -> Callable[[dict[str, Any]], bytes | None]:
    """``decode`` that returns None instead of raising (a failure, counted as not lossless)."""

    def run(row: dict[str, Any]) -> bytes | None:
        try:
            return decode(row)
        except (AiosMemoryError, zstandard.ZstdError) as exc:
            log(f"  decode failed for {row.get('id')}: {exc}")
            return None

    return run


def measure(
    codec: Codec, turns: Sequence[Turn], warm_up: bool = True
) -> tuple[dict[str, Any], list[dict[str, Any]], list[float]]:
    """Encode and decode every turn; the summary, the rows and the decode durations."""
    if warm_up:  # compressors are made on first use (a short text skips them): time the rest
        codec.decode(codec.encode(max(turns, key=lambda t: len(t.raw))))
    encode_s, rows = time_each(codec.encode, turns)
    decode_s, backs = time_each(safe(codec.decode), rows)
    failures = sum(back != turn.raw for back, turn in zip(backs, turns, strict=True))
    return summary(codec, turns, rows, encode_s, decode_s, failures), rows, decode_s


def summary(
    codec: Codec,
    turns: Sequence[Turn],
    rows: list[dict[str, Any]],
    encode_s: list[float],
    decode_s: list[float],
    failures: int,
) -> dict[str, Any]:
    """The figures of one codec line."""
    raw = sum(len(t.raw) for t in turns)
    stored = sum(len(r["payload"]) for r in rows)
    used = Counter(row.get("codec", codec.name) for row in rows)
    ratio = raw / stored
    return {
        "codec": codec.name,
        "memories": len(turns),
        "ratio": round(ratio, 4),
        "bits_per_byte": round(8 / ratio, 4),
        "bytes_per_memory": round(stored / len(turns), 2),
        "raw_bytes_per_memory": round(raw / len(turns), 2),
        "encode_ms": _ms(encode_s),
        "decode_ms": _ms(decode_s),
        "lossless": {"checked": len(turns), "failures": failures},
        "stored_as": dict(used),
        **codec.info,
    }


def _ms(seconds: Sequence[float]) -> dict[str, float] | None:
    if not len(seconds):
        return None
    found = latency_ms(seconds)
    return {"mean": found["mean_ms"], "p99": found["p99_ms"], "p50": found["p50_ms"]}


def run_codecs(
    codecs: list[Codec], turns: list[Turn], scope: str, params: dict[str, Any]
) -> list[dict[str, Any]]:
    """Measure and emit one line per codec on ``turns``."""
    lines = []
    for codec in codecs:
        log(f"  {scope}: {codec.name} on {len(turns)} memories")
        result, _, _ = measure(codec, turns)
        lines.append(emit(BENCH, params, kind="codec", scope=scope, **result))
    return lines


def run_lm(
    model: Any, load_s: float, dictionary: Dictionary, turns: list[Turn], params: dict[str, Any]
) -> list[dict[str, Any]]:
    """The model's line on the subset (with its fallbacks), then what recall pays to decode."""
    codec = project_codec(
        "lm",
        "lm",
        dictionary,
        model,
        info={
            "model": model.describe(),
            "fingerprint": model.fingerprint,
            "load_s": round(load_s, 2),
            "dict_bytes": len(dictionary.data),
        },
    )
    log(f"  subset: lm on {len(turns)} memories (encode, verify, decode)")
    result, rows, cold_s = measure(codec, turns, warm_up=False)
    result["fell_back"] = sum(1 for r in rows if r["codec"] != "lm")
    line = emit(BENCH, params, kind="codec", scope="subset", **result)
    recall = recall_decode(codec.book, rows, cold_s, turns)
    return [line, emit(BENCH, params, kind="recall_decode", **recall)]


def recall_decode(
    book: Codebook, rows: list[dict[str, Any]], cold_s: list[float], turns: list[Turn]
) -> dict[str, Any]:
    """Cold decode (the model's, measured above) against cached decode of the same lm rows.

    Hits are decoded one after another (``hits_from_table``), so ten cold hits cost the sum
    of ten consecutive cold decodes.
    """
    chosen = [i for i, row in enumerate(rows) if row["codec"] == "lm"]
    warm_s, backs = time_each(lambda i: book.decode(rows[i], max_bytes=MAX_BYTES), chosen)
    wrong = sum(back != turns[i].raw for back, i in zip(backs, chosen, strict=True))
    cold = [cold_s[i] for i in chosen]
    tens = [sum(cold[i : i + HITS]) for i in range(0, len(cold) - HITS + 1, HITS)]
    return {
        "codec": "lm",
        "memories": len(chosen),
        "cold_decode_ms": _ms(cold),
        "warm_decode_ms": _ms(warm_s),
        "hits": HITS,
        "hits_cold_ms": _ms(tens),
        "warm_failures": wrong,
        "cache_bytes": DECODED_CACHE_BYTES,
    }


# --- all-in bytes through a real server ---------------------------------------------------


@dataclass
class Store:
    """The measured server's data directory, the test memories in it and their ids."""

    data_dir: Path
    data: str
    test: list[Turn]
    ids: list[str] = field(default_factory=list)
    lm_cut: datetime | None = None
    codec_of: dict[str, str] = field(default_factory=dict)  # id -> codec as stored now


def held_out_dictionary_row(train: list[Turn]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train a dictionary the way a client does, in a throwaway server holding ``train``."""
    with (
        running_server(embedder="none", checkpoint_seconds=0) as running,
        connect(running, timeout=3600.0) as client,
    ):
        client.remember_many([t.item for t in train], tier=TIER)
        report = client.train_dictionary(TIER, force=True)
        rows = [
            row
            for batch in client.iter_records(TIER, kind=DICTIONARY_KIND)
            for row in batch.to_pylist()
        ]
    if not rows:
        raise SystemExit(f"the client kept no dictionary: {report.reason}")
    return rows[-1], report.as_dict()


def put_dictionary(client: Any, row: dict[str, Any]) -> None:
    """Store a dictionary record trained elsewhere, before any memory arrives.

    The same put ``MemoryClient.train_dictionary`` makes; there is no public call for it,
    and training in the measured server would store the training texts there too.
    """
    from aios_memory.client.codec.batches import rows_to_batch

    client._transport.put([rows_to_batch([{**row, "hlc": 0, "origin": ""}])])


def import_test(store: Store, row: dict[str, Any], lm_count: int) -> dict[str, Any]:
    """Import the test memories with the default policy into a fresh server that has the
    dictionary: the first ``lm_count`` in one call, the rest a second later, so that
    ``recompress(older_than=...)`` can take just the first ones."""
    items = [t.item for t in store.test]
    with (
        running_server(store.data_dir, embedder="local", checkpoint_seconds=0) as running,
        connect(running, timeout=3600.0) as client,
    ):
        put_dictionary(client, row)
        start = time.perf_counter()
        store.ids = client.remember_many(items[:lm_count], tier=TIER)
        store.lm_cut = datetime.now(timezone.utc)
        if lm_count < len(items):
            time.sleep(1.0)
            store.ids += client.remember_many(items[lm_count:], tier=TIER)
        seconds = time.perf_counter() - start
        return {
            "import_s": round(seconds, 1),
            **inspect(client, store),
            "recall": recall_times(running, store),
        }


def recompress_lm(store: Store) -> dict[str, Any]:
    """Reopen the data directory and ``recompress(tier, "lm")`` the first memories imported."""
    with (
        running_server(store.data_dir, embedder="local", checkpoint_seconds=0) as running,
        connect(running, timeout=3600.0) as client,
    ):
        assert store.lm_cut is not None
        older = datetime.now(timezone.utc) - store.lm_cut
        report = client.recompress(TIER, "lm", older_than=older, progress=_progress)
        return {
            "recompress": report.as_dict(),
            **inspect(client, store),
            "recall": recall_times(running, store),
        }


def _progress(report: Any) -> None:
    log(
        f"    recompress: {report.scanned} scanned, {report.reencoded} re-encoded, "
        f"{report.seconds} s"
    )


def inspect(client: Any, store: Store) -> dict[str, Any]:
    """Payload bytes and codecs as stored, server stats, and a checked sample of texts."""
    rows = [
        r for b in client.iter_records(TIER) for r in b.to_pylist() if r["kind"] != DICTIONARY_KIND
    ]
    store.codec_of = {row["id"]: row["codec"] for row in rows}
    sizes: dict[str, list[int]] = defaultdict(list)
    for row in rows:
        sizes[row["codec"]].append(len(row["payload"]))
    payload = sum(len(r["payload"]) for r in rows)
    return {
        "stored_as": {codec: len(found) for codec, found in sizes.items()},
        "payload_bytes_by_codec": {
            codec: round(float(np.mean(found)), 2) for codec, found in sizes.items()
        },
        "payload_bytes_per_memory": round(payload / len(rows), 2),
        "stats": client.stats(),
        "sample_checked": check_sample(client, store),
    }


def check_sample(client: Any, store: Store, count: int = 20) -> dict[str, int]:
    """``scan(ids=...)`` and ``get`` of ``count`` memories: texts equal to the originals?"""
    picked = [
        (store.ids[i], store.test[i].text)
        for i in range(0, len(store.ids), max(1, len(store.ids) // count))
    ]
    want = dict(picked)
    scanned = client.scan(TIER, ids=list(want)).to_pylist()
    got = client.get(list(want))
    bad = sum(r["text"] != want[r["id"]] for r in scanned) + sum(m.text != want[m.id] for m in got)
    return {"asked": len(want), "scanned": len(scanned), "got": len(got), "mismatches": bad}


def recall_times(running: Any, store: Store, queries: int = 20) -> dict[str, Any]:
    """Keyword recall (k=10) of ``queries`` LoCoMo questions from a fresh client (its decode
    cache empty), then the same questions again (lm hits come from the cache)."""
    questions = test_questions(store)[:queries]
    with connect(running, timeout=3600.0) as fresh:

        def ask(question: str) -> list[Any]:
            return fresh.recall(question, k=HITS, tier=TIER, mode="keyword")

        cold, hits = time_each(ask, questions)
        warm, _ = time_each(ask, questions)
    text_of = {i: t.text for i, t in zip(store.ids, store.test, strict=True)}
    found = [hit for hits_ in hits for hit in hits_]
    return {
        "queries": len(questions),
        "cold_ms": _ms(cold),
        "warm_ms": _ms(warm),
        "hits": len(found),
        "lm_hits": sum(store.codec_of.get(h.id) == "lm" for h in found),
        "text_mismatches": sum(h.text != text_of.get(h.id) for h in found),
    }


def test_questions(store: Store) -> list[str]:
    """Questions of the test conversations, taking turns between them."""
    known: dict[str, set[str]] = {}
    for turn in store.test:
        meta = turn.item.metadata
        known.setdefault(meta["conversation"], set()).add(meta["dia_id"])
    lists = [
        [q.text for q in load_questions(Path(store.data) / f"{name}.json", ids)]
        for name, ids in known.items()
    ]
    # Round-robin over the conversations, up to the shortest one's length.
    return [q for round_ in zip(*lists, strict=False) for q in round_]


def disk(data_dir: Path, memories: int) -> dict[str, Any]:
    """Every file in the (closed) data directory, per memory, and the DuckDB file compacted."""
    total, breakdown = dir_bytes(data_dir)
    database = data_dir / "memory.duckdb"
    blocks = duckdb_breakdown(database)
    compact = compacted_bytes(database, blocks["block_size"])
    return {
        "bytes_per_memory_all_in": round(total / memories, 1),
        "total_bytes": total,
        "breakdown": group(breakdown, memories),
        "duckdb": blocks,
        "duckdb_rows": table_rows(database),
        "files": breakdown,
        "duckdb_compacted_bytes": compact,
        "bytes_per_memory_all_in_compacted": round(
            (total - database.stat().st_size + compact) / memories, 1
        ),
    }


def table_rows(database: Path) -> dict[str, int]:
    """Rows in each table of the DuckDB file (old versions and sync logs show up here)."""
    import duckdb

    con = duckdb.connect(str(database), read_only=True)
    try:
        names = [r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()]
        return {name: con.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0] for name in names}
    finally:
        con.close()


def compacted_bytes(database: Path, block_size: int) -> int:
    """Size of a fresh copy of the DuckDB file (the same data without free blocks)."""
    import duckdb

    with tempfile.TemporaryDirectory(prefix="aimem-compact-") as folder:
        copy = Path(folder) / "copy.duckdb"
        con = duckdb.connect()
        try:
            con.execute(f"ATTACH '{database}' AS src (READ_ONLY)")
            con.execute(f"ATTACH '{copy}' AS dst (BLOCK_SIZE {block_size})")
            con.execute("COPY FROM DATABASE src TO dst")
            con.execute("DETACH dst")
        finally:
            con.close()
        return copy.stat().st_size


def all_in(
    train: list[Turn], test: list[Turn], data: str, lm_count: int, params: dict[str, Any]
) -> None:
    """Both all-in lines: the default policy, then (``lm_count`` > 0) after
    ``recompress(tier, "lm")`` of the first ``lm_count`` test memories."""
    log("all-in: training a dictionary in a throwaway server")
    row, training = held_out_dictionary_row(train)
    with tempfile.TemporaryDirectory(prefix="aimem-compress-") as folder:
        store = Store(Path(folder) / "data", data, test)
        log(f"all-in: importing {len(test)} test memories (embedder local)")
        first = import_test(store, row, lm_count)
        emit(
            BENCH,
            params,
            kind="all_in",
            codec="zstd-dict",
            memories=len(test),
            dictionary=training,
            **first,
            **disk(store.data_dir, len(test)),
        )
        if not lm_count:
            return
        log(f"all-in: recompress the first {lm_count} to lm")
        second = recompress_lm(store)
        lm_coded = second["stored_as"].get("lm", 0)
        emit(
            BENCH,
            params,
            kind="all_in",
            codec="lm",
            memories=len(test),
            lm_fraction=round(lm_coded / len(test), 4),
            **second,
            **disk(store.data_dir, len(test)),
        )


# --- the plot ---------------------------------------------------------------------------


def _points(lines: list[dict[str, Any]]) -> list[tuple[str, float, float, float]]:
    """(label, decode ms, bytes, ratio) per codec on the subset, and lm from its cache
    (from the run with the largest subset, where a file holds several runs)."""
    largest = max(ln["params"]["lm_memories"] for ln in lines)
    lines = [ln for ln in lines if ln["params"]["lm_memories"] == largest]
    found = [
        (ln["codec"], ln["decode_ms"]["mean"], ln["bytes_per_memory"], ln["ratio"])
        for ln in lines
        if ln.get("kind") == "codec" and ln["scope"] == "subset"
    ]
    lm = next((p for p in found if p[0] == "lm"), None)
    for line in lines:
        if line.get("kind") == "recall_decode" and lm is not None:
            found.append(("lm, cached", line["warm_decode_ms"]["mean"], lm[2], lm[3]))
    return found


def plot(lines: list[dict[str, Any]], path: Path) -> None:
    """Bytes per memory against mean decode ms per memory, one point per codec (subset)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=120)
    markers = "os^vD<>Pp*X"
    for number, (name, x, y, ratio) in enumerate(_points(lines)):
        ax.scatter(
            [max(x, 1e-4)],
            [y],
            s=42,
            marker=markers[number % len(markers)],
            label=f"{name}: {ratio:.2f}x, {y:.0f} B",
        )
    ax.axvline(TARGET_DECODE_MS, color="grey", linestyle="--", linewidth=1)
    ax.text(TARGET_DECODE_MS * 1.15, ax.get_ylim()[1] / 1.12, "50 ms target", fontsize=7)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("decode ms per memory (mean, one memory alone)")
    ax.set_ylabel("stored payload bytes per memory (mean)")
    memories = max((ln["params"]["lm_memories"] for ln in lines), default=0)
    ax.set_title(f"LoCoMo turns never trained on ({memories} memories, each alone)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    log(f"plot: {path}")


# --- main -------------------------------------------------------------------------------


def parse() -> Any:
    """The command line."""
    parser = base_parser(__doc__.split("\n")[0], data=True)
    parser.add_argument(
        "--train",
        type=int,
        default=3,
        help="how many conversations (sorted by name) train; the rest are tested",
    )
    parser.add_argument(
        "--lm-memories",
        type=int,
        default=300,
        help="test memories the model codes, spread over the test conversations",
    )
    parser.add_argument(
        "--all-in-lm",
        type=int,
        default=None,
        help="test memories the all-in server re-encodes with lm (default all)",
    )
    parser.add_argument("--skip-all-in", action="store_true", help="no server measurements")
    parser.add_argument(
        "--plot",
        default=str(Path(__file__).parent / "results" / "compression.png"),
        help="where to draw the plot",
    )
    parser.add_argument(
        "--replot",
        metavar="JSONL",
        help="only draw the plot again from the lines of an earlier run",
    )
    return parser.parse_args()


def main() -> None:
    """Codec lines on the test set and the subset, the model, then the all-in bytes."""
    args = parse()
    if args.replot:
        lines = [json.loads(ln) for ln in Path(args.replot).read_text().splitlines()]
        return plot([ln for ln in lines if ln.get("bench") == BENCH], Path(args.plot))
    started = time.perf_counter()
    train_files, test_files = split(args.data, args.train)
    train, test = load_turns(train_files, whole=True), load_turns(test_files)
    subset = spread(test, QUICK_LM if quick() else args.lm_memories)
    params = {
        "train": [p.stem for p in train_files],
        "test": [p.stem for p in test_files],
        "train_memories": len(train),
        "lm_memories": len(subset),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
    }
    log(f"train {params['train']} ({len(train)} turns), test {params['test']} ({len(test)})")
    codecs = fast_codecs(train)
    lines = run_codecs(codecs, test, "test", params) + run_codecs(codecs, subset, "subset", params)
    loaded = load_model()
    if loaded is not None:
        default = next(c for c in codecs if c.name == f"zstd-dict-{DEFAULT_KB}k").dictionary
        lines += run_lm(*loaded, default, subset, params)
    if not args.skip_all_in:
        lm_count = QUICK_ALL_IN_LM if quick() else (args.all_in_lm or len(test))
        lm_count = min(lm_count, len(test)) if loaded is not None else 0
        all_in(train, test, args.data, lm_count, params)
    plot(lines, Path(args.plot))
    log(f"done in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
