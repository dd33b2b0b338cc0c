"""Opening, migrating and repairing a data directory's auth state (key + revocation store).

The signing key and the revocation store are made together; from then on a
missing store is an error, not an empty list (``revocations``). A data
directory of the first format (a raw ``signing.key`` and a plain
``revoked.json``) is migrated on open: the store is written from
``revoked.json`` first, then the key in its checksummed format, then
``revoked.json`` is removed, so a crash at any step leaves a directory that
migrates again to the same result.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from pathlib import Path
from typing import Any

from aios_memory.schemas import AuthStateError

from .key_files import KEY_BYTES, read_signing_key, write_signing_key
from .revocations import LEGACY_FILE, Revocations, RevocationStore

__all__ = ["SIGNING_KEY_FILE", "ISSUED_FILE", "open_signing_key", "repair", "rebuilt_state"]

SIGNING_KEY_FILE = "signing.key"
ISSUED_FILE = "tokens.jsonl"

log = logging.getLogger("aios_memory.server")


def open_signing_key(data_dir: Path) -> bytes:
    """The data directory's signing key: made (with an empty store) on first use, migrated
    from the first format, or ``AuthStateError`` naming the file and the fix."""
    path = data_dir / SIGNING_KEY_FILE
    if not path.exists():
        _refuse_missing_key(data_dir, path)
        data_dir.mkdir(parents=True, exist_ok=True)
        key = secrets.token_bytes(KEY_BYTES)
        write_signing_key(path, key)
        RevocationStore(data_dir, key).write(Revocations(seq=1))
        return key
    key, legacy = read_signing_key(path)
    if legacy:
        try:
            _migrate(data_dir, key)
        except AuthStateError as exc:  # serve on: the owner token still works, scoped fail closed
            log.error("auth: %s", exc.message)
    return key


def _refuse_missing_key(data_dir: Path, path: Path) -> None:
    """A key is made only where none ever was: tokens or revocations without it mean loss."""
    traces = [
        RevocationStore(data_dir, b"").paths,
        (data_dir / ISSUED_FILE, data_dir / LEGACY_FILE),
    ]
    if any(p.exists() for group in traces for p in group):
        raise AuthStateError(
            f"{path} is missing but tokens were made with it: restore it from a backup; "
            f"if there is none, `aimem token repair --data {data_dir} --new-key` makes a new "
            "one and every scoped token made before must be made again",
            file=str(path),
        )


def _migrate(data_dir: Path, key: bytes) -> None:
    legacy = data_dir / LEGACY_FILE
    store = RevocationStore(data_dir, key)
    current, _ = store.read()  # a migration cut short by a crash left this behind
    ids = set(current.ids) if current else set()
    if legacy.exists():
        ids |= _legacy_ids(legacy)
    store.write(Revocations(frozenset(ids), None, (current.seq if current else 0) + 1))
    write_signing_key(data_dir / SIGNING_KEY_FILE, key)
    legacy.unlink(missing_ok=True)
    log.info("auth state of %s migrated to checksummed files (%d revoked)", data_dir, len(ids))


def _legacy_ids(path: Path) -> set[str]:
    try:
        ids = json.loads(path.read_bytes())
        if isinstance(ids, list) and all(isinstance(i, str) for i in ids):
            return set(ids)
    except ValueError:
        pass
    raise AuthStateError(
        f"{path} is damaged, so the tokens it revoked are unknown: restore it from a backup, "
        f"or run `aimem token repair --data {path.parent}` (it refuses every scoped token "
        "made before now)",
        file=str(path),
    )


def rebuilt_state(
    store: RevocationStore, issued: set[str], now: float | None = None
) -> Revocations:
    """A state for a store with no valid copy: everything any file still names, every token
    issued here, and every token issued before this second refused."""
    moment = int(time.time() if now is None else now)
    return Revocations(frozenset(store.salvage() | issued), moment, 1)


def repair(data_dir: Path, new_key: bool, issued: set[str]) -> dict[str, Any]:
    """Bring the auth state back to a usable one, losing no revocation; say what was done."""
    path = data_dir / SIGNING_KEY_FILE
    try:
        key, legacy = read_signing_key(path)
        key_state = "migrated" if legacy else "ok"
    except (FileNotFoundError, AuthStateError) as exc:
        if not new_key:
            if isinstance(exc, AuthStateError):
                raise
            raise AuthStateError(
                f"{path} is missing: restore it from a backup, or pass --new-key to make a new "
                "one (every scoped token made before must be made again)",
                file=str(path),
            ) from None
        key, legacy, key_state = secrets.token_bytes(KEY_BYTES), False, "new"
    if legacy:
        try:
            _migrate(data_dir, key)
            legacy = False
        except AuthStateError:
            pass  # a damaged revoked.json: the store is rebuilt below
    store = RevocationStore(data_dir, key)
    state, damaged = store.read()
    if key_state == "new":
        # Tokens of the old key fail their signature check; none of the old list applies.
        state, what = Revocations(seq=1), "new"
    elif state is None:
        state, what = rebuilt_state(store, issued), "rebuilt"
    else:
        state, what = state.with_ids(set()), "healed" if damaged else "ok"
    if what != "ok" or legacy:
        store.write(state)
    if key_state != "ok":
        write_signing_key(path, key)
        (data_dir / LEGACY_FILE).unlink(missing_ok=True)
    return {
        "signing_key": key_state,
        "revocations": what,
        "revoked": len(state.ids),
        "refused_before": state.not_before,
    }
