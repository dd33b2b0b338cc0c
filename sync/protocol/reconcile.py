"""Range-based set reconciliation (Meyer, arXiv 2212.13567): pure, no I/O, no clock.

Each side holds a set of items ``(ts, id)``: ``ts`` a uint64 (the version's
hlc), ``id`` 16 bytes (``item_id`` of the version). Both sides sort them by
``(ts, id)``. A message lists adjacent ranges of that order; each range says
"skip", "my fingerprint here is F" or "my ids here are ...". A side that
receives a fingerprint equal to its own skips the range; a different one it
splits into ``BRANCHING`` smaller ranges, or, when it holds at most
``IDLIST_MAX`` items there, answers with its ids. A side that receives ids
knows the difference in that range: what it must send and what it needs.
So the cost follows the number of differences, not the size of the set.

The wire shapes follow negentropy v1 (bounds, modes, varints, the additive
fingerprint) with 16-byte ids and two lists more (``need``, ``have``) so the
records can travel in the same exchange. ``sync/PROTOCOL.md`` is the spec.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from dataclasses import dataclass, field

import numpy as np

from aios_memory.schemas import SyncProtocolError

__all__ = [
    "PROTOCOL_VERSION",
    "ID_BYTES",
    "BRANCHING",
    "IDLIST_MAX",
    "FIRST_BRANCHING_MAX",
    "INFINITY",
    "MAX_MESSAGE_BYTES",
    "Bound",
    "Range",
    "Message",
    "ItemSet",
    "Reconciler",
    "item_id",
    "SKIP",
    "FINGERPRINT",
    "IDLIST",
]

# Our own byte: negentropy v1's 0x61 would let a negentropy peer misparse our layout.
PROTOCOL_VERSION = 0x41
ID_BYTES = 16
BRANCHING = 16
# A mismatched range holding at most this many of the answerer's items is answered with ids:
# 64 x 16 bytes keeps one id list near 1 KB, and lets 1M items finish in three fingerprint levels.
IDLIST_MAX = 64
FIRST_BRANCHING_MAX = 128
INFINITY = 2**64 - 1
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
SKIP, FINGERPRINT, IDLIST = 0, 1, 2


def item_id(memory_id: str, origin: str, hlc: int) -> bytes:
    """The 16-byte id of one version: SHA-256 of ``id \\n origin \\n hlc`` (decimal), truncated."""
    return hashlib.sha256(f"{memory_id}\n{origin}\n{hlc}".encode()).digest()[:ID_BYTES]


# -- the wire ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bound:
    """An exclusive upper bound: a timestamp and an id prefix (implicitly zero-padded)."""

    ts: int
    prefix: bytes = b""

    def key(self) -> tuple[int, bytes]:
        return self.ts, self.prefix.ljust(ID_BYTES, b"\0")


INFINITE_BOUND = Bound(INFINITY)


@dataclass(frozen=True)
class Range:
    """``upper`` bound, ``mode`` (SKIP, FINGERPRINT, IDLIST) and its payload."""

    upper: Bound
    mode: int
    fingerprint: bytes = b""
    ids: tuple[bytes, ...] = ()


@dataclass(frozen=True)
class Message:
    """One reconciliation message.

    ``ranges`` cover the item space in order; ``need`` are ids the sender
    lacks and wants (ids the peer sent in an id list); ``have`` (dry runs only)
    are ids the sender would send;
    ``batches`` is how many record batches follow this message.
    """

    ranges: tuple[Range, ...] = ()
    need: tuple[bytes, ...] = ()
    have: tuple[bytes, ...] = ()
    batches: int = 0

    @property
    def idle(self) -> bool:
        """True when the message asks nothing and carries nothing: the round is over."""
        return (
            not self.need
            and not self.have
            and not self.batches
            and all(r.mode == SKIP for r in self.ranges)
        )

    def encode(self) -> bytes:
        out = bytearray([PROTOCOL_VERSION])
        out += _varint(self.batches)
        out += _varint(len(self.ranges))
        last = 0
        for rng in self.ranges:
            last = _encode_bound(out, rng.upper, last)
            out += _varint(rng.mode)
            if rng.mode == FINGERPRINT:
                out += rng.fingerprint
            elif rng.mode == IDLIST:
                out += _varint(len(rng.ids))
                out += b"".join(rng.ids)
        _encode_items(out, self.need)
        _encode_items(out, self.have)
        return bytes(out)

    @classmethod
    def decode(cls, data: bytes) -> Message:
        """Parse a message, refusing anything malformed with ``SyncProtocolError``."""
        if len(data) > MAX_MESSAGE_BYTES:
            raise SyncProtocolError(
                f"a sync message of {len(data)} bytes is over the limit of {MAX_MESSAGE_BYTES}"
            )
        reader = _Reader(data)
        version = reader.byte()
        if version != PROTOCOL_VERSION:
            raise SyncProtocolError(
                f"sync protocol version 0x{version:02x} is not supported (this side speaks "
                f"0x{PROTOCOL_VERSION:02x}); upgrade the older side",
                version=version,
            )
        batches = reader.varint()
        ranges, last = [], 0
        for _ in range(reader.count()):
            upper, last = _decode_bound(reader, last)
            ranges.append(_decode_range(reader, upper))
        need, have = _decode_items(reader), _decode_items(reader)
        if not reader.done():
            raise SyncProtocolError("trailing bytes after a sync message")
        _check_ascending([r.upper.key() for r in ranges])
        return cls(tuple(ranges), need, have, batches)


def _varint(value: int) -> bytes:
    """Base-128, most significant digit first, high bit set on all but the last byte."""
    if not 0 <= value < 2**64:
        raise SyncProtocolError(f"{value} does not fit an unsigned 64-bit varint")
    digits = [value & 0x7F]
    value >>= 7
    while value:
        digits.append((value & 0x7F) | 0x80)
        value >>= 7
    return bytes(reversed(digits))


def _encode_bound(out: bytearray, bound: Bound, last: int) -> int:
    if bound.ts < last or len(bound.prefix) > ID_BYTES:
        raise SyncProtocolError("a message's bounds must ascend and prefixes fit an id")
    if bound.ts == INFINITY:
        out += _varint(0)
        last = INFINITY
    else:
        out += _varint(1 + bound.ts - last)
        last = bound.ts
    out += _varint(len(bound.prefix))
    out += bound.prefix
    return last


def _encode_items(out: bytearray, ids: tuple[bytes, ...]) -> None:
    out += _varint(len(ids))
    out += b"".join(ids)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise SyncProtocolError("a sync message ended in the middle of a field")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def byte(self) -> int:
        return self.take(1)[0]

    def varint(self) -> int:
        value = 0
        for _ in range(10):
            b = self.byte()
            value = (value << 7) | (b & 0x7F)
            if not b & 0x80:
                if value >= 2**64:
                    break
                return value
        raise SyncProtocolError("a varint in a sync message is longer than 64 bits")

    def count(self) -> int:
        # Every counted element takes at least one byte: a count beyond the rest is a lie.
        n = self.varint()
        if n > len(self.data) - self.pos:
            raise SyncProtocolError(f"a sync message announces {n} elements it cannot hold")
        return n

    def done(self) -> bool:
        return self.pos == len(self.data)


def _decode_bound(reader: _Reader, last: int) -> tuple[Bound, int]:
    encoded = reader.varint()
    if encoded == 0:
        ts = INFINITY
    else:
        ts = last + encoded - 1
        if ts >= INFINITY:
            raise SyncProtocolError("a bound's timestamp overflows 64 bits")
    size = reader.varint()
    if size > ID_BYTES:
        raise SyncProtocolError(f"a bound's id prefix of {size} bytes is longer than an id")
    return Bound(ts, reader.take(size)), ts


def _decode_range(reader: _Reader, upper: Bound) -> Range:
    mode = reader.varint()
    if mode == SKIP:
        return Range(upper, SKIP)
    if mode == FINGERPRINT:
        return Range(upper, FINGERPRINT, fingerprint=reader.take(16))
    if mode == IDLIST:
        n = reader.count()
        return Range(upper, IDLIST, ids=tuple(reader.take(ID_BYTES) for _ in range(n)))
    raise SyncProtocolError(f"unknown range mode {mode}")


def _decode_items(reader: _Reader) -> tuple[bytes, ...]:
    return tuple(reader.take(ID_BYTES) for _ in range(reader.count()))


def _check_ascending(keys: list[tuple[int, bytes]]) -> None:
    if any(b <= a for a, b in itertools.pairwise(keys)):
        raise SyncProtocolError("the ranges of a sync message are not in ascending order")


# -- the item set --------------------------------------------------------------------------


class ItemSet:
    """Items sorted by ``(ts, id)`` with prefix sums, so any range's fingerprint is O(1).

    Parameters
    ----------
    ts : array of uint64
    ids : array of shape (n, 16), uint8
        In any order; the set sorts both (``order`` maps back to the input rows).
    """

    def __init__(self, ts: np.ndarray, ids: np.ndarray) -> None:
        ts = np.asarray(ts, np.uint64)
        ids = np.ascontiguousarray(ids, np.uint8).reshape(-1, ID_BYTES)
        if len(ts) != len(ids):
            raise ValueError("ts and ids differ in length")
        if len(ts) and int(ts.max()) == INFINITY:
            raise ValueError("the largest uint64 is reserved for 'infinity'")
        big = ids.view(">u8").reshape(-1, 2)  # big-endian words sort like the bytes
        self.order = np.lexsort((big[:, 1], big[:, 0], ts))
        self._index(ts[self.order], ids[self.order])

    @classmethod
    def presorted(cls, ts: np.ndarray, ids: np.ndarray) -> ItemSet:
        """An item set of items already in ``(ts, id)`` order (``order`` is the identity)."""
        items = cls.__new__(cls)
        items.order = np.arange(len(ts))
        items._index(np.asarray(ts, np.uint64), np.ascontiguousarray(ids, np.uint8))
        return items

    def changed(self, keep: np.ndarray, add: ItemSet) -> tuple[ItemSet, np.ndarray, np.ndarray]:
        """This set less the items ``keep`` is false for, plus ``add``'s items.

        Returns the new set, where each kept item went and where each of
        ``add``'s (in its sorted order) went: callers move their aligned
        arrays the same way. O(n) copies and no sort of the whole set.
        """
        ts, ids = self.ts[keep], self.ids[keep]
        at = np.searchsorted(ts, add.ts, "left")
        ties = np.nonzero(ts[np.minimum(at, len(ts) - 1)] == add.ts)[0] if len(ts) else ()
        for k in ties:  # runs of one ts are short: settle ties by id
            while (
                at[k] < len(ts)
                and ts[at[k]] == add.ts[k]
                and ids[at[k]].tobytes() < add.id_at(int(k))
            ):
                at[k] += 1
        merged = ItemSet.presorted(np.insert(ts, at, add.ts), np.insert(ids, at, add.ids, axis=0))
        added_at = at + np.arange(len(add))
        kept_at = np.delete(np.arange(len(merged)), added_at)
        return merged, kept_at, added_at

    def _index(self, ts: np.ndarray, ids: np.ndarray) -> None:
        self.ts, self.ids = ts, ids.reshape(-1, ID_BYTES)
        self._words = self.ids.view(">u8").reshape(-1, 2)
        same = (self.ts[1:] == self.ts[:-1]) & np.all(self._words[1:] == self._words[:-1], axis=1)
        if same.any():
            raise ValueError("an item set holds every item once")
        limbs = self.ids.view("<u4").reshape(-1, 4).astype(np.uint64)
        # 32-bit limbs summed in 64 bits stay exact for up to 2**32 items.
        self._prefix = np.zeros((len(self.ts) + 1, 4), np.uint64)
        np.cumsum(limbs, axis=0, out=self._prefix[1:])

    def __len__(self) -> int:
        return len(self.ts)

    def id_at(self, i: int) -> bytes:
        return self.ids[i].tobytes()

    def ids_between(self, lo: int, hi: int) -> list[bytes]:
        """The ids of items ``lo .. hi - 1`` (one copy, then slices: the hot path of id lists)."""
        raw = self.ids[lo:hi].tobytes()
        return [raw[k : k + ID_BYTES] for k in range(0, len(raw), ID_BYTES)]

    def item_at(self, i: int) -> tuple[int, bytes]:
        return int(self.ts[i]), self.id_at(i)

    def lower_index(self, bound: Bound) -> int:
        """Index of the first item not below ``bound``."""
        if bound.ts == INFINITY:
            return len(self.ts)
        lo = int(np.searchsorted(self.ts, np.uint64(bound.ts), "left"))
        hi = int(np.searchsorted(self.ts, np.uint64(bound.ts), "right"))
        target = bound.key()[1]
        while lo < hi and self.id_at(lo) < target:  # runs of one ts are short
            lo += 1
        return lo

    def fingerprint(self, lo: int, hi: int) -> bytes:
        """SHA-256 of (sum of ids mod 2**128, little-endian) + varint(count), first 16 bytes."""
        limbs = (self._prefix[hi] - self._prefix[lo]).tolist()
        total = sum(int(v) << (32 * k) for k, v in enumerate(limbs)) % (1 << 128)
        return hashlib.sha256(total.to_bytes(16, "little") + _varint(hi - lo)).digest()[:16]

    def bound_between(self, i: int) -> Bound:
        """The shortest bound with item ``i - 1`` below it and item ``i`` not below it."""
        ts = int(self.ts[i])
        if i == 0 or int(self.ts[i - 1]) != ts:
            return Bound(ts)
        prev, cur = self.id_at(i - 1), self.id_at(i)
        shared = next(k for k in range(ID_BYTES) if prev[k] != cur[k])
        return Bound(ts, cur[: shared + 1])


# -- the state machine ---------------------------------------------------------------------


@dataclass
class Outcome:
    """What answering one message produced: the ranges to send back, and the difference found.

    ``have`` are indexes into the ItemSet of items the peer lacks; ``need``
    are ids the peer has (it sent them in an id list) and this side lacks.
    """

    ranges: list[Range] = field(default_factory=list)
    have: list[int] = field(default_factory=list)
    need: list[bytes] = field(default_factory=list)


class Reconciler:
    """One side of a reconciliation over an ``ItemSet`` (which must not change meanwhile)."""

    def __init__(
        self, items: ItemSet, branching: int = BRANCHING, idlist_max: int = IDLIST_MAX
    ) -> None:
        if not 2 <= branching <= idlist_max + 1:
            # More parts than items would make empty parts with equal bounds.
            raise ValueError("branching must be 2 .. idlist_max + 1")
        self.items, self.branching, self.idlist_max = items, branching, idlist_max
        self._offered: dict[bytes, int] = {}  # ids this side sent in id lists -> index

    def offered(self, ident: bytes) -> int | None:
        """Index of an id this side sent in an id list (what a peer's ``need`` names), or None."""
        return self._offered.get(ident)

    def initiate(self) -> Message:
        """The first message: the whole set split so that three levels reach id lists."""
        n = len(self.items)
        first = math.ceil(n / (self.branching**2 * self.idlist_max))
        first = min(max(first, self.branching), FIRST_BRANCHING_MAX)
        out: list[Range] = []
        self._split(out, 0, n, INFINITE_BOUND, first)
        return Message(tuple(out))

    def respond(self, message: Message) -> Outcome:
        """Answer every range of ``message``; see the module docstring for the rules."""
        outcome, lower, lower_bound = Outcome(), 0, Bound(0)
        for rng in message.ranges:
            upper = self.items.lower_index(rng.upper)
            if upper < lower:
                raise SyncProtocolError("a sync message's ranges go backwards")
            if rng.mode == FINGERPRINT:
                if self.items.fingerprint(lower, upper) != rng.fingerprint:
                    _pad(outcome.ranges, lower_bound)
                    self._split(outcome.ranges, lower, upper, rng.upper, self.branching)
            elif rng.mode == IDLIST:
                self._diff(outcome, lower, upper, rng.ids)
            lower, lower_bound = upper, rng.upper
        return outcome

    def _split(self, out: list[Range], lo: int, hi: int, upper: Bound, parts: int) -> None:
        n = hi - lo
        if n <= self.idlist_max:
            ids = tuple(self.items.ids_between(lo, hi))
            self._offered.update(zip(ids, range(lo, hi), strict=True))
            out.append(Range(upper, IDLIST, ids=ids))
            return
        edges = [lo + (n * k) // parts for k in range(parts + 1)]
        for start, end in itertools.pairwise(edges):
            bound = upper if end == hi else self.items.bound_between(end)
            out.append(Range(bound, FINGERPRINT, fingerprint=self.items.fingerprint(start, end)))

    def _diff(self, outcome: Outcome, lo: int, hi: int, theirs: tuple[bytes, ...]) -> None:
        mine = dict(zip(self.items.ids_between(lo, hi), range(lo, hi), strict=True))
        their_set = set(theirs)
        outcome.have += [i for ident, i in mine.items() if ident not in their_set]
        outcome.need += [ident for ident in theirs if ident not in mine]


def _pad(out: list[Range], lower_bound: Bound) -> None:
    """Ranges are adjacent: cover what was skipped since the last emitted range."""
    last = out[-1].upper if out else Bound(0)
    if last.key() < lower_bound.key():
        out.append(Range(lower_bound, SKIP))
