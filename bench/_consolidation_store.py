"""The server side of ``consolidation.py``: import and consolidate through the CLI, ask the three
stores, and measure what the consolidated memories cost in bytes.

The three stores are views of one server (nothing is deleted to make them):

* ``raw``: the imported turns (tier ``working``);
* ``consolidated``: only the summaries and facts (tier ``long_term``, kind summary/fact), as if
  the raw turns had been forgotten;
* ``both``: both tiers, every kind.

Every recall is restricted to the question's conversation by its sessions (``session`` is
``conv-26/session_3`` on the turns and on what consolidates them).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TARGET_TIER = "long_term"
RAW_TIER = "working"
CONSOLIDATED_KINDS = ("summary", "fact")
_CLI = "import sys; from aios_memory.client.cli import main; sys.argv[0] = 'aimem'; main()"
STORES = {
    "raw": {"tier": RAW_TIER, "kinds": None},
    "consolidated": {"tier": TARGET_TIER, "kinds": CONSOLIDATED_KINDS},
    "both": {"tier": [RAW_TIER, TARGET_TIER], "kinds": None},
}


@dataclass
class Turns:
    """The raw turns as stored: dia_id by memory id, texts and UTF-8 bytes by session, and the
    sessions of each conversation."""

    dia_of: dict[str, str] = field(default_factory=dict)
    text_bytes: int = 0
    payload_bytes: int = 0
    texts: list[tuple[str, str]] = field(default_factory=list)  # (text, session)
    bytes_by_session: dict[str, int] = field(default_factory=dict)
    sessions: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class Retrieved:
    """One hit, reduced to what scoring needs."""

    kind: str
    text: str
    metadata: dict[str, Any]


def aimem(running: Any, *args: str, timeout: float = 86400.0) -> Any:
    """Run ``aimem ARGS --json`` against the running server; its JSON output.

    The CLI is the path under test, so it runs as its own process (stderr, with its
    progress, goes to ours).
    """
    env = {**os.environ, "AIMEM_SERVER": running.uri, "AIMEM_TOKEN": running.token}
    # Not the ``aimem`` script: a copied virtualenv's script may name another interpreter.
    # A generous call timeout: on a busy 2-core machine one import batch (embedded on the
    # server) can take longer than the default 30 s.
    command = [sys.executable, "-c", _CLI, *args, "--timeout", "600", "--json"]
    done = subprocess.run(
        command, env=env, stdout=subprocess.PIPE, stderr=None, text=True, timeout=timeout
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:2])} exited with {done.returncode}")
    return json.loads(done.stdout)


def trimmed_copy(path: Path, sessions: int | None, folder: Path) -> Path:
    """``path`` itself, or a copy under ``folder`` (same name) keeping its first ``sessions``."""
    if sessions is None:
        return path
    conversation = json.loads(path.read_text(encoding="utf-8"))
    # The dev files are flat (session_N beside qa); the original release nests them.
    inner = conversation.get("conversation", conversation)
    for key in list(inner):
        number = key.removeprefix("session_").split("_")[0]
        if key.startswith("session_") and number.isdigit() and int(number) > sessions:
            del inner[key]
    copy = folder / path.name
    copy.write_text(json.dumps(conversation), encoding="utf-8")
    return copy


def read_turns(client: Any) -> Turns:
    """Every raw turn in the working tier (the map from memory id to dia_id for provenance)."""
    turns = Turns()
    # Only the turns: an import also trains the tier's dictionary, a record of its own.
    for batch in client.iter_scan(RAW_TIER, kind="text"):
        for row in batch.to_pylist():
            meta = json.loads(row["metadata"] or "{}")
            turns.dia_of[row["id"]] = meta.get("dia_id", "")
            size = len(row["text"].encode("utf-8"))
            turns.text_bytes += size
            turns.bytes_by_session[row["session"]] = (
                turns.bytes_by_session.get(row["session"], 0) + size
            )
            turns.payload_bytes += len(row["payload"])
            turns.texts.append((row["text"], row["session"]))
            sessions = turns.sessions.setdefault(meta.get("conversation", ""), [])
            if row["session"] not in sessions:
                sessions.append(row["session"])
    return turns


def consolidated_rows(client: Any) -> list[dict[str, Any]]:
    """The summaries and facts in the target tier, as stored (text decoded beside)."""
    rows = []
    for kind in CONSOLIDATED_KINDS:
        for batch in client.iter_scan(TARGET_TIER, kind=kind):
            rows += batch.to_pylist()
    return rows


def ask(
    client: Any, store: str, query: str, sessions: list[str], k: int, mode: str = "hybrid"
) -> list[Retrieved]:
    """The top ``k`` of ``store`` for ``query`` within ``sessions`` (the question's
    conversation)."""
    view = STORES[store]
    where: dict[str, Any] = {"session": {"$in": sessions}}
    if view["kinds"]:
        where["kind"] = {"$in": list(view["kinds"])}
    hits = client.recall(query, k=k, tier=view["tier"], where=where, mode=mode)
    return [Retrieved(h.kind, h.text, dict(h.metadata)) for h in hits]


def compression(client: Any, turns: Turns, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Bytes of the consolidated memories as stored: as written, with a ``zstd-dict``
    dictionary trained the client's way, then with the ``lm`` codec (both by ``recompress``,
    the real path: the payloads measured are the ones the server keeps).

    Ratios are against the raw bytes of the sessions that were consolidated (a failed session
    has no summary and must not count as compressed to nothing)."""
    text_bytes = sum(len(r["text"].encode("utf-8")) for r in rows)
    covered = {r["session"] for r in rows if r["kind"] == "summary"}
    raw = sum(turns.bytes_by_session.get(s, 0) for s in covered)
    out: dict[str, Any] = {
        "sessions_covered": len(covered),
        "raw_text_bytes_covered": raw,
        "raw_text_bytes": turns.text_bytes,
        "raw_payload_bytes_zstd_dict": turns.payload_bytes,
        "memories": len(rows),
        "consolidated_text_bytes": text_bytes,
        "as_written_payload_bytes": _payload_bytes(client),
    }
    training = client.train_dictionary(TARGET_TIER, force=True)
    out["dictionary"] = training.as_dict()
    out["dictionary_bytes"] = training.dict_bytes if training.trained else 0
    for codec in ("zstd-dict", "lm"):
        start = time.perf_counter()
        client.recompress(TARGET_TIER, codec)
        stored = _payload_bytes(client)
        out[codec] = {
            "payload_bytes": stored,
            "x_vs_raw_text": _ratio(raw, stored),
            "recompress_s": round(time.perf_counter() - start, 1),
        }
    dict_total = out["zstd-dict"]["payload_bytes"] + out["dictionary_bytes"]
    out["zstd-dict"]["x_vs_raw_text_with_dictionary"] = _ratio(raw, dict_total)
    out["text_x_vs_raw_text"] = _ratio(raw, text_bytes)
    return out


def _payload_bytes(client: Any) -> int:
    total = 0
    for kind in CONSOLIDATED_KINDS:
        for batch in client.iter_records(TARGET_TIER, kind=kind):
            total += sum(len(p) for p in batch.column("payload").to_pylist())
    return total


def _ratio(raw: int, stored: int) -> float | None:
    return round(raw / stored, 2) if stored else None
