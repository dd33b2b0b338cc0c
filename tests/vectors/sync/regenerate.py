"""Build the golden vectors of the aimem sync protocol v1 from the code (``sync/PROTOCOL.md``).

Run by hand, and only on purpose (a vector that changes is a wire change)::

    .venv/bin/python tests/vectors/sync/regenerate.py           # check: exit 1 if stale
    .venv/bin/python tests/vectors/sync/regenerate.py --write   # rewrite the JSON files

``tests/test_sync_protocol.py`` checks every vector against the code byte for
byte, from the inputs recorded in the files (it does not import this script).

Item sets are recipes, so the files stay small: item ``k`` of a set
``{name, start, stop, ts_base, per_ts}`` has id ``SHA-256("{name}/{k}")[:16]``
and ts ``ts_base + k // per_ts``, for ``start <= k < stop``. ``per_ts > 1``
puts several items on one timestamp, so bounds need id prefixes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from aios_memory.schemas import AiosMemoryError, SyncFinish, hlc_pack
from aios_memory.sync.protocol.frames import decode_frame, encode_frame
from aios_memory.sync.protocol.reconcile import (
    FINGERPRINT,
    IDLIST,
    INFINITY,
    SKIP,
    Bound,
    ItemSet,
    Message,
    Range,
    Reconciler,
    _varint,
    item_id,
)

HERE = Path(__file__).resolve().parent
MESSAGES, REFUSALS = HERE / "messages.json", HERE / "refusals.json"
MODES = {SKIP: "skip", FINGERPRINT: "fingerprint", IDLIST: "idlist"}
RECIPE = (
    'item k of a set {name, start, stop, ts_base, per_ts}: id = SHA-256("{name}/{k}")[:16], '
    "ts = ts_base + k // per_ts, for start <= k < stop"
)


# -- inputs -----------------------------------------------------------------------------------


def sid(text: str) -> bytes:
    """A deterministic 16-byte id: the first 16 bytes of SHA-256 of a small string."""
    return hashlib.sha256(text.encode()).digest()[:16]


def recipe(name: str, start: int, stop: int, ts_base: int = 1000, per_ts: int = 1) -> dict:
    return {"name": name, "start": start, "stop": stop, "ts_base": ts_base, "per_ts": per_ts}


def item_set(sets: list[dict]) -> ItemSet:
    items = [
        (s["ts_base"] + k // s["per_ts"], sid(f"{s['name']}/{k}"))
        for s in sets
        for k in range(s["start"], s["stop"])
    ]
    ts = np.array([t for t, _ in items], np.uint64)
    ids = np.frombuffer(b"".join(i for _, i in items), np.uint8).reshape(-1, 16)
    return ItemSet(ts, ids)


# -- JSON shapes of protocol values ------------------------------------------------------------


def bound_json(bound: Bound) -> dict:
    ts: Any = "infinity" if bound.ts == INFINITY else bound.ts
    return {"ts": ts, "prefix": bound.prefix.hex()}


def message_json(message: Message) -> dict:
    ranges = []
    for rng in message.ranges:
        entry: dict[str, Any] = {"upper": bound_json(rng.upper), "mode": MODES[rng.mode]}
        if rng.mode == FINGERPRINT:
            entry["fingerprint"] = rng.fingerprint.hex()
        elif rng.mode == IDLIST:
            entry["ids"] = [i.hex() for i in rng.ids]
        ranges.append(entry)
    return {
        "batches": message.batches,
        "ranges": ranges,
        "need": [i.hex() for i in message.need],
        "have": [i.hex() for i in message.have],
    }


def dry_answer(reconciler: Reconciler, message: Message) -> Message:
    """What a dry-run side sends back: its ranges, its needs, and ids in place of records."""
    outcome = reconciler.respond(message)
    offered = {reconciler.offered(i) for i in message.need} - {None}
    have = tuple(reconciler.items.id_at(i) for i in sorted(set(outcome.have) | offered))
    return Message(tuple(outcome.ranges), tuple(outcome.need), have)


# -- the valid vectors -------------------------------------------------------------------------


def varints() -> list[dict]:
    edges = [
        (0, "zero"),
        (1, "one"),
        (127, "largest one-byte"),
        (128, "smallest two-byte"),
        (16383, "largest two-byte"),
        (16384, "smallest three-byte"),
        (2**63, "2^63"),
        (2**64 - 1, "largest: 2^64-1, ten bytes"),
    ]
    return [
        {
            "name": f"varint {v}",
            "kind": "varint",
            "description": f"varint, {what}",
            "value": v,
            "hex": _varint(v).hex(),
        }
        for v, what in edges
    ]


def item_ids() -> list[dict]:
    memory, at = "0190b5c8-7c2e-7a11-8d4e-3f2a1b0c9d8e", 1_700_000_000_000
    cases = [
        (memory, "r00112233445566aa", hlc_pack(at, 0)),
        (memory, "r00112233445566aa", hlc_pack(at, 1)),
        (memory, "r99887766554433bb", hlc_pack(at, 1)),
        ("m", "", 0),
    ]
    return [
        {
            "name": f"item_id {n}",
            "kind": "item_id",
            "description": "SHA-256 of '{memory_id}\\n{origin}\\n{hlc}' (hlc in decimal), "
            "first 16 bytes",
            "memory_id": m,
            "origin": o,
            "hlc": h,
            "hex": item_id(m, o, h).hex(),
        }
        for n, (m, o, h) in enumerate(cases)
    ]


def fingerprints() -> list[dict]:
    cases = [
        ("empty", "the empty set: SHA-256(16 zero bytes || varint(0))", []),
        ("one id", "one id", [sid("fp/0")]),
        (
            "carry",
            "ff..ff + 02 00..00 (little-endian) wraps to 1: the sum is mod 2^128",
            [b"\xff" * 16, b"\x02" + b"\0" * 15],
        ),
        (
            "carry limbs",
            "carries cross every 32-bit limb: ff..ff + 01 00..00 = 0 mod 2^128",
            [b"\xff" * 16, b"\x01" + b"\0" * 15],
        ),
        (
            "several",
            "five SHA-256-derived ids; their sum overflows 2^128",
            [sid(f"fp/{k}") for k in range(5)],
        ),
        (
            "130",
            "130 ids: the count takes two varint bytes (81 02)",
            [sid(f"fp/{k}") for k in range(130)],
        ),
    ]
    out = []
    for name, description, ids in cases:
        total = sum(int.from_bytes(i, "little") for i in ids) % (1 << 128)
        ts = np.zeros(len(ids), np.uint64)
        arr = np.frombuffer(b"".join(ids), np.uint8).reshape(-1, 16)
        out.append(
            {
                "name": f"fingerprint {name}",
                "kind": "fingerprint",
                "description": description,
                "ids": [i.hex() for i in ids],
                "sum": total.to_bytes(16, "little").hex(),
                "hex": ItemSet(ts, arr).fingerprint(0, len(ids)).hex(),
            }
        )
    return out


def bounds() -> list[dict]:
    cases = [
        (
            "new ts",
            "the next item has a larger ts: the bound is that ts, no prefix",
            [[7, sid("b/0").hex()], [9, sid("b/1").hex()]],
        ),
        (
            "shared ts",
            "two items share ts 7 and differ in byte 0: a one-byte prefix",
            [[7, "10" + "00" * 15], [7, "20" + "ff" * 15]],
        ),
        (
            "shared ts, long prefix",
            "two items share ts 7 and the first 5 id bytes: a 6-byte prefix",
            [[7, "0102030405" + "06" + "00" * 10], [7, "0102030405" + "09" + "00" * 10]],
        ),
        (
            "shared ts, full prefix",
            "ids that differ only in the last byte: a 16-byte prefix",
            [[7, "ab" * 15 + "00"], [7, "ab" * 15 + "01"]],
        ),
    ]
    out = []
    for name, description, items in cases:
        ts = np.array([t for t, _ in items], np.uint64)
        ids = np.frombuffer(b"".join(bytes.fromhex(i) for _, i in items), np.uint8).reshape(-1, 16)
        bound = ItemSet(ts, ids).bound_between(1)
        message = Message((Range(bound, SKIP), Range(Bound(INFINITY), IDLIST, ids=())))
        out.append(
            {
                "name": f"bound {name}",
                "kind": "bound",
                "description": description,
                "items": items,
                "bound": bound_json(bound),
                "message": message_json(message),
                "hex": message.encode().hex(),
            }
        )
    return out


def messages() -> list[dict]:
    fp = sid("a fingerprint")
    cases = [
        ("empty", "no ranges, nothing needed: an idle message", Message()),
        ("idle with batches", "no ranges, 3 record batches follow", Message(batches=3)),
        (
            "skip to infinity",
            "one skip range up to infinity (bound 00 00)",
            Message((Range(Bound(INFINITY), SKIP),)),
        ),
        (
            "fingerprint and id list",
            "a fingerprint range, then an id list up to infinity; "
            "the second bound is a delta from the first",
            Message(
                (
                    Range(Bound(100), FINGERPRINT, fingerprint=fp),
                    Range(Bound(INFINITY), IDLIST, ids=(sid("x/0"), sid("x/1"))),
                )
            ),
        ),
        (
            "deltas",
            "bounds are deltas from the previous bound: 5, 5+prefix, 300, 2^63",
            Message(
                (
                    Range(Bound(5), SKIP),
                    Range(Bound(5, b"\x80"), SKIP),
                    Range(Bound(300), FINGERPRINT, fingerprint=fp),
                    Range(Bound(2**63), SKIP),
                    Range(Bound(INFINITY), SKIP),
                )
            ),
        ),
        (
            "largest ts",
            "the largest finite bound, 2^64-2, then infinity",
            Message((Range(Bound(INFINITY - 1), SKIP), Range(Bound(INFINITY), SKIP))),
        ),
        (
            "need and have",
            "no ranges; two ids needed, one id had (a dry run)",
            Message(need=(sid("n/0"), sid("n/1")), have=(sid("h/0"),)),
        ),
        (
            "everything",
            "ranges, need, have and batches together",
            Message(
                (
                    Range(Bound(1), IDLIST, ids=()),
                    Range(Bound(2, b"\x01\x02"), SKIP),
                    Range(Bound(INFINITY), IDLIST, ids=(sid("e/0"),)),
                ),
                need=(sid("e/1"),),
                have=(sid("e/2"),),
                batches=1,
            ),
        ),
    ]
    return [
        {
            "name": f"message {n}",
            "kind": "message",
            "description": d,
            "message": message_json(m),
            "hex": m.encode().hex(),
        }
        for n, d, m in cases
    ]


def initiates() -> list[dict]:
    cases = [
        ("empty set", "no items: one empty id list up to infinity", []),
        (
            "small set",
            "8 items (<= 64): the whole set as one id list",
            [recipe("a", 0, 8, 1000, 2)],
        ),
        ("65 items", "65 items (> 64): 16 fingerprint ranges", [recipe("c", 0, 65, 2000, 1)]),
        (
            "larger set",
            "200 items, 3 per ts: 16 fingerprint ranges, some bounds with id prefixes",
            [recipe("b", 0, 200, 5000, 3)],
        ),
    ]
    return [
        {
            "name": f"initiate {n}",
            "kind": "initiate",
            "description": d,
            "sets": sets,
            "hex": Reconciler(item_set(sets)).initiate().encode().hex(),
        }
        for n, d, sets in cases
    ]


def responds() -> list[dict]:
    cases = [
        (
            "id list",
            "the initiator sent its 8 ids; the responder lacks a/0 and a/1 (need) and "
            "holds d/0..d/2 the initiator lacks (have): no ranges back",
            [recipe("a", 0, 8, 1000, 2)],
            [recipe("a", 2, 8, 1000, 2), recipe("d", 0, 3, 1001, 1)],
        ),
        (
            "fingerprint to id list",
            "200 items vs 199 + 1 other: the mismatched ranges hold <= 64 "
            "responder items, so they come back as id lists, skips between them",
            [recipe("b", 0, 200, 5000, 3)],
            [
                recipe("b", 0, 50, 5000, 3),
                recipe("b", 51, 200, 5000, 3),
                recipe("d", 0, 1, 5040, 1),
            ],
        ),
        (
            "fingerprint split",
            "2000 items vs 1999 + 3 others: a mismatched range holds > 64 "
            "responder items, so it is split in 16 fingerprint ranges",
            [recipe("b", 0, 2000, 5000, 3)],
            [
                recipe("b", 0, 700, 5000, 3),
                recipe("b", 701, 2000, 5000, 3),
                recipe("e", 0, 3, 5233, 1),
            ],
        ),
        (
            "identical",
            "the same 200 items on both sides: nothing to say (idle)",
            [recipe("b", 0, 200, 5000, 3)],
            [recipe("b", 0, 200, 5000, 3)],
        ),
    ]
    out = []
    for name, description, mine, theirs in cases:
        incoming = Reconciler(item_set(mine)).initiate()
        responder = Reconciler(item_set(theirs))
        answer = dry_answer(responder, incoming)
        out.append(
            {
                "name": f"respond {name}",
                "kind": "respond",
                "description": description,
                "initiator_sets": mine,
                "responder_sets": theirs,
                "incoming": incoming.encode().hex(),
                "have": [i.hex() for i in answer.have],
                "need": [i.hex() for i in answer.need],
                "hex": answer.encode().hex(),
            }
        )
    return out


def transcripts() -> list[dict]:
    cases = [
        (
            "300 vs 300",
            "a dry-run round between two sets of 300 items that differ in 10 and 6: "
            "every message until one side's answer is idle",
            [recipe("t", 0, 290, 9000, 2), recipe("u", 0, 10, 9050, 1)],
            [recipe("t", 0, 290, 9000, 2), recipe("v", 0, 6, 9100, 1)],
        ),
        (
            "only on one side",
            "the responder holds all 200 items, the initiator 70 of them",
            [recipe("w", 0, 70, 100, 4)],
            [recipe("w", 0, 200, 100, 4)],
        ),
    ]
    out = []
    for name, description, mine, theirs in cases:
        sides = [Reconciler(item_set(theirs)), Reconciler(item_set(mine))]
        message, log, turn = sides[1].initiate(), [], 0
        log.append(message.encode().hex())
        while not message.idle:
            message = dry_answer(sides[turn % 2], message)
            log.append(message.encode().hex())
            turn += 1
        out.append(
            {
                "name": f"transcript {name}",
                "kind": "transcript",
                "description": description,
                "initiator_sets": mine,
                "responder_sets": theirs,
                "messages": log,
            }
        )
    return out


def frames() -> list[dict]:
    message = Message((Range(Bound(INFINITY), IDLIST, ids=(sid("f/0"),)),), batches=2)
    finish = SyncFinish(
        peer="r00112233445566aa",
        round="0190b5c8-7c2e-7a11-8d4e-3f2a1b0c9d8e",
        horizon=hlc_pack(1_700_000_000_000, 5),
    )
    return [
        {
            "name": "frame message",
            "kind": "frame",
            "description": "kind 0x01: a message",
            "frame": {"kind": "message", "message": message_json(message)},
            "hex": encode_frame(message).hex(),
        },
        {
            "name": "frame sync_finish",
            "kind": "frame",
            "description": "kind 0x02: a SyncFinish, compact JSON, keys in this order",
            "frame": {"kind": "control", "control": json.loads(finish.to_bytes())},
            "hex": encode_frame(finish).hex(),
        },
    ]


# -- the refusals ------------------------------------------------------------------------------


def refusals() -> list[dict]:
    small = Reconciler(item_set([recipe("a", 0, 3, 1000, 1)])).initiate().encode()
    skip10 = "0b0000"  # bound ts 10 (delta 10 + 1), no prefix, mode skip
    cases = [
        ("empty", "message", "", "SYNC_PROTOCOL", "ended in the middle"),
        ("wrong version", "message", "60000000", "SYNC_PROTOCOL", "version 0x60"),
        ("negentropy's version byte", "message", "61000000", "SYNC_PROTOCOL", "version 0x61"),
        ("truncated", "message", small[:-5].hex(), "SYNC_PROTOCOL", "ended in the middle"),
        ("trailing byte", "message", "4100000000" + "00", "SYNC_PROTOCOL", "trailing bytes"),
        (
            "varint of 11 bytes",
            "message",
            "41" + "80" * 10 + "00" + "000000",
            "SYNC_PROTOCOL",
            "longer than 64 bits",
        ),
        (
            "varint of 2^64",
            "message",
            "41" + "82" + "80" * 8 + "00" + "000000",
            "SYNC_PROTOCOL",
            "longer than 64 bits",
        ),
        ("range count over the data", "message", "410005", "SYNC_PROTOCOL", "announces 5"),
        (
            "id list count over the data",
            "message",
            "41000100000205",
            "SYNC_PROTOCOL",
            "announces 5",
        ),
        ("need count over the data", "message", "4100000300", "SYNC_PROTOCOL", "announces 3"),
        (
            "fingerprint cut short",
            "message",
            "41000100000101020304",
            "SYNC_PROTOCOL",
            "ended in the middle",
        ),
        (
            "prefix of 17 bytes",
            "message",
            "4100010011" + "00" * 17 + "000000",
            "SYNC_PROTOCOL",
            "longer than an id",
        ),
        ("unknown mode", "message", "41000100000300", "SYNC_PROTOCOL", "unknown range mode 3"),
        (
            "equal bounds",
            "message",
            "410002" + skip10 + "010000" + "0000",
            "SYNC_PROTOCOL",
            "not in ascending order",
        ),
        (
            "descending prefixes",
            "message",
            "410002" + "0b010500" + "01010400" + "0000",
            "SYNC_PROTOCOL",
            "not in ascending order",
        ),
        (
            "bound after infinity",
            "message",
            "410002" + "000000" + "010000" + "0000",
            "SYNC_PROTOCOL",
            "overflows 64 bits",
        ),
        (
            "bound past 2^64-2",
            "message",
            "410002" + skip10 + _varint(2**64 - 10).hex() + "0000" + "0000",
            "SYNC_PROTOCOL",
            "overflows 64 bits",
        ),
        ("empty frame", "frame", "", "SYNC_PROTOCOL", "empty sync frame"),
        ("frame kind 0x00", "frame", "00" + "4100000000", "SYNC_PROTOCOL", "frame kind 0x00"),
        ("frame kind 0x03", "frame", "03" + "4100000000", "SYNC_PROTOCOL", "frame kind 0x03"),
        ("message frame, bad message", "frame", "01" + "410005", "SYNC_PROTOCOL", "announces 5"),
        (
            "control frame, unknown type",
            "frame",
            "02" + b'{"v":1,"type":"sync_hello"}'.hex(),
            "SYNC_PROTOCOL",
            "unknown sync control message",
        ),
        (
            "control frame, not JSON",
            "frame",
            "02" + b"{not json".hex(),
            "INVALID_REQUEST",
            "not JSON",
        ),
        (
            "control frame, wire version 2",
            "frame",
            "02" + b'{"v":2,"type":"sync_finish"}'.hex(),
            "UNSUPPORTED_VERSION",
            "wire version 2",
        ),
        (
            "control frame, bad field",
            "frame",
            "02" + b'{"v":1,"type":"sync_finish","horizon":-1}'.hex(),
            "INVALID_REQUEST",
            "horizon",
        ),
    ]
    out = []
    for name, layer, data, code, says in cases:
        decode: Callable[[bytes], Any] = Message.decode if layer == "message" else decode_frame
        try:
            decode(bytes.fromhex(data))
        except AiosMemoryError as exc:
            if exc.code != code or says not in exc.message:
                raise SystemExit(f"refusal {name!r}: got {exc.code} {exc.message!r}") from None
        else:
            raise SystemExit(f"refusal {name!r} decoded")
        out.append({"name": name, "layer": layer, "hex": data, "code": code, "says": says})
    return out


# -- files -------------------------------------------------------------------------------------


def build() -> dict[Path, str]:
    vectors = (
        varints()
        + item_ids()
        + fingerprints()
        + bounds()
        + messages()
        + initiates()
        + responds()
        + transcripts()
        + frames()
    )
    header = {
        "protocol": "aimem sync protocol v1",
        "spec": "sync/PROTOCOL.md",
        "regenerate": "python tests/vectors/sync/regenerate.py --write",
    }
    files = {
        MESSAGES: {**header, "item_recipe": RECIPE, "vectors": vectors},
        REFUSALS: {
            **header,
            "description": "bytes every decoder must refuse; layer 'message' is "
            "Message.decode, 'frame' is decode_frame; code is the error code, says a "
            "part of its message",
            "vectors": refusals(),
        },
    }
    return {path: json.dumps(body, indent=1) + "\n" for path, body in files.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--write", action="store_true", help="rewrite the files (on purpose)")
    args = parser.parse_args(argv)
    files = build()
    if args.write:
        for path, text in files.items():
            path.write_text(text)
        print(f"wrote {', '.join(p.name for p in files)}")
        return 0
    stale = [p for p, text in files.items() if not p.exists() or p.read_text() != text]
    for path in stale:
        print(f"{path.name} differs from what the code produces", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
