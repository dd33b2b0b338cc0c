"""The revocation store: which tokens are revoked, kept so that losing a file cannot undo it.

It is made together with the signing key and kept as two copies,
``DATA/revocations.1.json`` and ``DATA/revocations.2.json``; each revocation
writes both in turn (temporary file, fsync, rename), and only then is it
acknowledged. So each copy holds every acknowledged revocation, and a deleted,
cut or damaged copy loses nothing: the other is read, and the next write heals
it. Two copies rather than an append-only log because every write then
*replaces* both files whole: a damaged copy never needs a repair step, and
``aimem token revoke`` works on it unchanged.

Each copy carries a sequence number and an HMAC under a key derived from the
signing key, so a hand edit, a flipped byte or a copy from another data
directory is not taken for a revocation list. When neither copy is valid the
store fails closed: every scoped token is refused with ``AuthStateError``
naming the files and the fix (the owner token still works).

A rebuilt store (``aimem token repair``, or ``revoke`` on a lost store) also
carries ``not_before``: a scoped token issued before that second is refused,
because the lost copies may have revoked it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aios_memory.flight_server._files import atomic_write_bytes
from aios_memory.schemas import AuthStateError

__all__ = ["COPIES", "LEGACY_FILE", "Revocations", "RevocationStore", "DamagedCopy"]

COPIES = ("revocations.1.json", "revocations.2.json")
LEGACY_FILE = "revoked.json"  # the first format: a plain JSON list, undone by deleting it
_VERSION = 2


@dataclass(frozen=True)
class Revocations:
    """One state of the store: revoked token ids, and the issue time before which all are."""

    ids: frozenset[str] = frozenset()
    not_before: int | None = None
    seq: int = 0

    def refuses(self, token_id: str, issued_at: int) -> bool:
        """True when the token ``token_id`` issued at ``issued_at`` is revoked."""
        return token_id in self.ids or (self.not_before is not None and issued_at < self.not_before)

    def with_ids(self, ids: set[str] | frozenset[str]) -> Revocations:
        """The next state: these ids revoked too."""
        return Revocations(self.ids | frozenset(ids), self.not_before, self.seq + 1)


@dataclass
class DamagedCopy:
    """A copy that could not be read, and why."""

    path: Path
    reason: str = field(default="missing")


class RevocationStore:
    """Reads and writes the two copies of one data directory's revocations."""

    def __init__(self, data_dir: Path, signing_key: bytes) -> None:
        self.data_dir = Path(data_dir)
        self.paths = tuple(self.data_dir / name for name in COPIES)
        self._mac_key = hmac.new(signing_key, b"aimem-revocations-v2", hashlib.sha256).digest()

    def stamp(self) -> tuple[tuple[int, int, int] | None, ...]:
        """What changes when either copy is written (a stat each), to re-read only then.

        The inode is in it because every write is a rename: two writes within one
        mtime tick that leave the same size still differ."""
        stamps: list[tuple[int, int, int] | None] = []
        for path in self.paths:
            try:
                info = path.stat()
            except FileNotFoundError:
                stamps.append(None)
            else:
                stamps.append((info.st_ino, info.st_mtime_ns, info.st_size))
        return tuple(stamps)

    def read(self) -> tuple[Revocations | None, list[DamagedCopy]]:
        """The newest valid state (None when no copy is valid) and the copies that are not."""
        best: Revocations | None = None
        damaged: list[DamagedCopy] = []
        for path in self.paths:
            try:
                state = self._decode(path.read_bytes())
            except FileNotFoundError:
                damaged.append(DamagedCopy(path))
            except ValueError as exc:
                damaged.append(DamagedCopy(path, str(exc)))
            else:
                best = state if best is None or state.seq > best.seq else best
        return best, damaged

    def load(self) -> Revocations:
        """The newest valid state; ``AuthStateError`` (fail closed) when no copy is valid."""
        state, damaged = self.read()
        if state is None:
            raise self.lost_error(damaged)
        return state

    def lost_error(self, damaged: list[DamagedCopy]) -> AuthStateError:
        """The refusal for a store with no valid copy, naming each file and the fix."""
        what = "; ".join(f"{d.path} is {d.reason}" for d in damaged)
        return AuthStateError(
            f"the revocation store is lost ({what}), so no scoped token can be trusted: "
            "restore either file from a backup, or run `aimem token repair --data "
            f"{self.data_dir}` (it rebuilds the store and refuses every scoped token made "
            "before now)",
            file=str(self.paths[0]),
        )

    def write(self, state: Revocations) -> None:
        """Write ``state`` to both copies in turn, each durable before the next."""
        data = self._encode(state)
        for path in self.paths:
            atomic_write_bytes(path, data, mode=0o600)

    def salvage(self) -> set[str]:
        """Every token id any copy or the first-format file still names, checked or not.

        Only for rebuilding a lost store: revoking more than was revoked is the safe side.
        """
        ids: set[str] = set()
        for path in (*self.paths, self.data_dir / LEGACY_FILE):
            try:
                body = json.loads(path.read_bytes())
            except (OSError, ValueError):
                continue
            listed = body.get("revoked") if isinstance(body, dict) else body
            if isinstance(listed, list):
                ids.update(str(item) for item in listed if isinstance(item, str))
        return ids

    # -- the file format ----------------------------------------------------------------------
    def _mac(self, body: dict[str, Any]) -> str:
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
        return hmac.new(self._mac_key, canonical, hashlib.sha256).hexdigest()

    def _encode(self, state: Revocations) -> bytes:
        body: dict[str, Any] = {
            "v": _VERSION,
            "seq": state.seq,
            "not_before": state.not_before,
            "revoked": sorted(state.ids),
        }
        return json.dumps({**body, "mac": self._mac(body)}, sort_keys=True).encode() + b"\n"

    def _decode(self, data: bytes) -> Revocations:
        try:
            body = json.loads(data)
            mac = body.pop("mac")
        except (ValueError, AttributeError, KeyError, TypeError):
            raise ValueError("damaged (not a revocation list)") from None
        if not isinstance(mac, str) or not hmac.compare_digest(mac, self._mac(body)):
            raise ValueError("damaged (its checksum does not match this data directory's key)")
        if body.get("v") != _VERSION:
            raise ValueError(f"of an unknown version {body.get('v')!r}")
        return Revocations(frozenset(body["revoked"]), body["not_before"], int(body["seq"]))
