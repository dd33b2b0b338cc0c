"""The keys that seal private memories, kept on the user's own machine.

A key store is a directory (``AIMEM_KEYS``, default ``~/.config/aimem/keys``,
mode 0700)::

    device.json            this device's id, and where its device key lives
    device.key             the device key, 32 random bytes, mode 0600 (unless in the OS keyring)
    tenants/<tenant>.json  the tenant's data keys, each wrapped (AES-256-GCM) by the device key,
                           the current key's id and the tenant's threshold (``encrypt_at``)

A tenant's data key is random and never leaves a device unwrapped, except
as its recovery code (shown once, see ``take_recovery_code``) or wrapped by a
one-time transfer code (``export_key`` / ``import_key``). A tenant may hold
several keys (one made here before another device's was imported): records
name the key that sealed them, new records use the current one.

The device key goes to the OS keyring when the ``keyring`` package is
installed with a usable backend (``AIMEM_KEYRING=0`` turns that off), else to
``device.key``. Servers only read a key store; clients create what they need.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from aios_memory.schemas import PRIVACY_LEVELS, InvalidValueError, KeyMissingError, TamperedError

from ._key_codes import (
    KEY_BYTES,
    key_id_of,
    new_transfer_code,
    parse_recovery_code,
    recovery_code,
    unwrap_transfer,
    wrap_for_transfer,
)
from ._key_files import keyring_get, keyring_set, private_dir, stamp, write_private

try:
    import fcntl
except ImportError:  # Windows: one writer at a time is then up to the user
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "KeyStore",
    "TenantKey",
    "default_keys_dir",
    "check_encrypt_at",
    "DEFAULT_ENCRYPT_AT",
    "ENCRYPT_NEVER",
]

DEFAULT_ENCRYPT_AT = 2
# A threshold no privacy level reaches: nothing is sealed.
ENCRYPT_NEVER = max(PRIVACY_LEVELS) + 1
_FILE_VERSION = 1


def default_keys_dir() -> Path:
    """``AIMEM_KEYS``, else ``~/.config/aimem/keys``."""
    configured = os.environ.get("AIMEM_KEYS")
    return (
        Path(configured).expanduser() if configured else Path("~/.config/aimem/keys").expanduser()
    )


def check_encrypt_at(value: Any) -> int:
    """``value`` as a threshold (0..4; 4 seals nothing), or ``InvalidValueError``."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= ENCRYPT_NEVER:
        raise InvalidValueError(
            f"encrypt_at must be 0..{ENCRYPT_NEVER} (records at or above "
            f"this privacy are sealed; {ENCRYPT_NEVER} seals none), "
            f"not {value!r}",
            field="encrypt_at",
        )
    return value


@dataclass(frozen=True)
class TenantKey:
    """One data key of a tenant: ``key_id`` names it in the records it seals."""

    tenant: str
    key_id: int
    key: bytes = field(repr=False)
    encrypt_at: int = DEFAULT_ENCRYPT_AT


class KeyStore:
    """The key store in ``path`` (default ``default_keys_dir()``); see the module docstring.

    Parameters
    ----------
    path : Path, optional
        The directory.
    use_keyring : bool, optional
        Put a new device key in the OS keyring when one is usable (default:
        unless ``AIMEM_KEYRING=0``).
    """

    def __init__(
        self, path: str | os.PathLike[str] | None = None, *, use_keyring: bool | None = None
    ) -> None:
        self.path = Path(path).expanduser() if path is not None else default_keys_dir()
        self.use_keyring = (
            os.environ.get("AIMEM_KEYRING", "1") != "0" if use_keyring is None else use_keyring
        )
        self._device_key: bytes | None = None
        self._device_body: dict[str, Any] | None = None
        self._keys: dict[tuple[str, int | None], tuple[Any, TenantKey]] = {}
        # tenant -> (the file's stamp, its body): a rename-on-write gives every version a new inode
        self._cache: dict[str, tuple[Any, dict[str, Any] | None]] = {}
        self._thread_lock = threading.RLock()
        self._depth = 0

    def __repr__(self) -> str:
        return f"KeyStore({str(self.path)!r})"

    # -- reading ------------------------------------------------------------------------------
    def version(self) -> tuple[Any, ...]:
        """Changes whenever a key or the device is added or changed (every write renames)."""
        paths = [self.path / "device.json", *sorted((self.path / "tenants").glob("*.json"))]
        return tuple(found for found in map(stamp, paths) if found is not None)

    def key(self, tenant: str, key_id: int | None = None) -> TenantKey | None:
        """The tenant's key ``key_id`` (default: its current key), or None if not here."""
        found = stamp(self._tenant_path(tenant))
        cached = self._keys.get((tenant, key_id))
        if cached is not None and cached[0] == found:
            return cached[1]  # servers open every row: unwrap once per key file version
        body = self._tenant(tenant)
        if body is None:
            return None
        wanted = body["current"] if key_id is None else key_id
        entry = body["keys"].get(str(wanted))
        if entry is None:
            return None
        key = TenantKey(
            tenant, wanted, self._unwrap(tenant, wanted, entry["wrapped"]), body["encrypt_at"]
        )
        self._keys[(tenant, key_id)] = (found, key)
        return key

    def encrypt_at(self, tenant: str) -> int | None:
        """The tenant's threshold, or None when this store has no key for it."""
        body = self._tenant(tenant)
        return None if body is None else int(body["encrypt_at"])

    def device_id(self) -> str:
        """This device's stable id (made with the device key on first use)."""
        return str(self._device(create=True)["device_id"])

    def describe(self) -> list[dict[str, Any]]:
        """One JSON-ready dict per tenant this store has keys for."""
        out = []
        for file in sorted((self.path / "tenants").glob("*.json")):
            body = self._tenant(file.stem)
            if body is not None:
                current = body["keys"][str(body["current"])]
                out.append(
                    {
                        "tenant": file.stem,
                        "key_id": f"{body['current']:08x}",
                        "keys": len(body["keys"]),
                        "encrypt_at": body["encrypt_at"],
                        "recovery_code_shown": current["recovery_shown"],
                        "created_at": current["created_at"],
                    }
                )
        return out

    # -- making and moving keys ---------------------------------------------------------------
    def create(self, tenant: str, encrypt_at: int = DEFAULT_ENCRYPT_AT) -> TenantKey:
        """A new random data key for ``tenant``; refuses if the tenant has one."""
        with self._locked():
            if self._tenant(tenant, fresh=True) is not None:
                raise InvalidValueError(
                    f"tenant {tenant!r} already has a key in {self.path} (see `aimem keys "
                    "list`); a second would split its memories between two keys",
                    tenant=tenant,
                )
            return self._install(tenant, os.urandom(KEY_BYTES), encrypt_at, shown=False)

    def take_recovery_code(self, tenant: str) -> str:
        """The recovery code of the tenant's current key, once: a second call refuses."""
        with self._locked():
            body = self._require(tenant)
            entry = body["keys"][str(body["current"])]
            if entry["recovery_shown"]:
                raise InvalidValueError(
                    f"the recovery code of tenant {tenant!r} (key {body['current']:08x}) was "
                    f"already shown ({entry['recovery_shown']}); it is shown only once so that "
                    "no later process can read it. Keep a second device with `aimem keys "
                    "export`, or use the code you wrote down.",
                    tenant=tenant,
                )
            key = self.key(tenant)
            assert key is not None
            entry["recovery_shown"] = _now()
            self._write_tenant(tenant, body)
            return recovery_code(tenant, key.key)

    def recover(self, tenant: str, code: str, encrypt_at: int = DEFAULT_ENCRYPT_AT) -> TenantKey:
        """Install the key a recovery code holds, as the tenant's current key."""
        key = parse_recovery_code(tenant, code)
        with self._locked():
            return self._install(tenant, key, encrypt_at, shown=True)

    def export_key(self, tenant: str) -> tuple[bytes, str]:
        """``(transfer file bytes, one-time transfer code)`` for the tenant's current key."""
        key = self.key(tenant)
        if key is None:
            raise _missing(tenant, self.path)
        code = new_transfer_code()
        return wrap_for_transfer(tenant, key.key, key.encrypt_at, code), code

    def import_key(self, blob: bytes, code: str) -> TenantKey:
        """Install the key of a transfer file as its tenant's current key."""
        tenant, key, encrypt_at = unwrap_transfer(blob, code)
        with self._locked():
            return self._install(tenant, key, encrypt_at, shown=True)

    def _install(self, tenant: str, key: bytes, encrypt_at: int, *, shown: bool) -> TenantKey:
        encrypt_at = check_encrypt_at(encrypt_at)
        body = self._tenant(tenant, fresh=True) or {
            "v": _FILE_VERSION,
            "tenant": tenant,
            "keys": {},
        }
        key_id = key_id_of(key)
        entry = body["keys"].get(str(key_id))
        if entry is None:
            entry = {
                "wrapped": self._wrap(tenant, key_id, key),
                "created_at": _now(),
                "recovery_shown": False,
            }
            body["keys"][str(key_id)] = entry
        if shown and not entry["recovery_shown"]:
            entry["recovery_shown"] = "brought here by a recovery code or a transfer"
        body["current"], body["encrypt_at"] = key_id, encrypt_at
        self._write_tenant(tenant, body)
        return TenantKey(tenant, key_id, key, encrypt_at)

    # -- the device key ---------------------------------------------------------------------
    def _device(self, create: bool) -> dict[str, Any]:
        if self._device_body is not None:
            return self._device_body
        path = self.path / "device.json"
        if not path.exists() and create:
            with self._locked():
                if not path.exists():
                    self._make_device()
        try:
            body = json.loads(path.read_text())
        except (OSError, ValueError):
            raise KeyMissingError(
                f"the key store {self.path} has no device key "
                f"({path} is missing or unreadable); run `aimem keys init` or "
                "`aimem keys import`"
            ) from None
        if not isinstance(body, dict) or body.get("device_key") not in ("file", "keyring"):
            raise TamperedError(f"{path} is not a device file written by aimem")
        self._device_body = body
        return body

    def _make_device(self) -> None:
        key, device_id = os.urandom(KEY_BYTES), secrets.token_hex(8)
        where = "keyring" if self.use_keyring and keyring_set(device_id, key) else "file"
        if where == "file":
            write_private(self.path / "device.key", key)
        body = {"v": _FILE_VERSION, "device_id": device_id, "device_key": where}
        write_private(self.path / "device.json", json.dumps(body).encode())

    def _device_secret(self) -> bytes:
        if self._device_key is None:
            body = self._device(create=False)
            if body["device_key"] == "keyring":
                key = keyring_get(str(body["device_id"]))
            else:
                try:
                    key = (self.path / "device.key").read_bytes()
                except OSError:
                    key = None
            if key is None or len(key) != KEY_BYTES:
                raise KeyMissingError(
                    f"the device key of {self.path} is missing from the "
                    f"{body['device_key']}; the tenant keys it wraps cannot be opened. Bring "
                    "them back with `aimem keys recover` or `aimem keys import`."
                )
            self._device_key = key
        return self._device_key

    def _wrap(self, tenant: str, key_id: int, key: bytes) -> str:
        self._device(create=True)
        nonce = os.urandom(12)
        sealed = AESGCM(self._device_secret()).encrypt(nonce, key, _wrap_ad(tenant, key_id))
        return base64.b64encode(nonce + sealed).decode()

    def _unwrap(self, tenant: str, key_id: int, wrapped: str) -> bytes:
        try:
            raw = base64.b64decode(wrapped, validate=True)
            key = AESGCM(self._device_secret()).decrypt(
                raw[:12], raw[12:], _wrap_ad(tenant, key_id)
            )
        except (InvalidTag, ValueError):
            raise TamperedError(
                f"the key file of tenant {tenant!r} in {self.path} does not open with this "
                "device's key: it was copied from another device or changed. On the device "
                "that has the key run `aimem keys export`, then `aimem keys import` here (or "
                "`aimem keys recover`).",
                tenant=tenant,
            ) from None
        if key_id_of(key) != key_id:
            raise TamperedError(
                f"the key file of tenant {tenant!r} holds a key that does not match its id",
                tenant=tenant,
            )
        return key

    # -- tenant files ---------------------------------------------------------------------
    def _tenant(self, tenant: str, fresh: bool = False) -> dict[str, Any] | None:
        path = self._tenant_path(tenant)
        found = stamp(path)
        cached = self._cache.get(tenant)
        if fresh or cached is None or cached[0] != found:
            cached = (found, self._read_tenant(tenant) if found is not None else None)
            self._cache[tenant] = cached
        return None if cached[1] is None else json.loads(json.dumps(cached[1]))

    def _read_tenant(self, tenant: str) -> dict[str, Any] | None:
        path = self._tenant_path(tenant)
        try:
            text = path.read_text()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise KeyMissingError(f"cannot read {path}: {exc.strerror}", tenant=tenant) from None
        try:
            body = json.loads(text)
            ok = (
                body["tenant"] == tenant
                and str(body["current"]) in body["keys"]
                and isinstance(body["encrypt_at"], int)
                and all(isinstance(entry["wrapped"], str) for entry in body["keys"].values())
            )
        except (ValueError, KeyError, TypeError):
            ok = False
        if not ok:
            raise TamperedError(
                f"{path} is not a key file written by aimem for tenant "
                f"{tenant!r}; restore it with `aimem keys recover --tenant "
                f"{tenant}` or `aimem keys import`",
                tenant=tenant,
            )
        return dict(body)

    def _require(self, tenant: str) -> dict[str, Any]:
        body = self._tenant(tenant, fresh=True)
        if body is None:
            raise _missing(tenant, self.path)
        return body

    def _write_tenant(self, tenant: str, body: dict[str, Any]) -> None:
        write_private(self._tenant_path(tenant), json.dumps(body, indent=1).encode())

    def _tenant_path(self, tenant: str) -> Path:
        if not tenant or "/" in tenant or "\\" in tenant or tenant.startswith("."):
            raise InvalidValueError(f"{tenant!r} is not a tenant name", tenant=tenant)
        return self.path / "tenants" / f"{tenant}.json"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One writer at a time across processes (two clients must not make two keys);
        re-entrant within this object."""
        with self._thread_lock:
            if self._depth:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            private_dir(self.path / "tenants")
            with open(self.path / ".lock", "a+b") as handle:
                if fcntl is not None:
                    fcntl.flock(handle, fcntl.LOCK_EX)
                self._depth = 1
                try:
                    yield
                finally:
                    self._depth = 0
                    if fcntl is not None:
                        fcntl.flock(handle, fcntl.LOCK_UN)


def _missing(tenant: str, path: Path) -> KeyMissingError:
    return KeyMissingError(
        f"tenant {tenant!r} has no key in {path}: run `aimem keys init --tenant {tenant}` on "
        "the first device, or bring the key from another device with `aimem keys export` "
        "there and `aimem keys import` here",
        tenant=tenant,
    )


def _wrap_ad(tenant: str, key_id: int) -> bytes:
    return json.dumps(["aimem-wrap", _FILE_VERSION, tenant, key_id], separators=(",", ":")).encode()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
