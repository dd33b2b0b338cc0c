"""Files and the OS keyring under a key store: private, atomic, and change-stamped."""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path
from typing import Any

__all__ = ["private_dir", "write_private", "stamp", "keyring_set", "keyring_get"]

_KEYRING_SERVICE = "aimem"


def stamp(path: Path) -> tuple[str, int, int] | None:
    """``(name, inode, mtime)`` of ``path``, or None if absent: every atomic write changes it."""
    try:
        found = path.stat()
    except OSError:
        return None
    return (path.name, found.st_ino, found.st_mtime_ns)


def private_dir(path: Path) -> None:
    """``path`` and its parent key store as directories only this user can open."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    for folder in (path.parent, path):
        if folder.stat().st_mode & 0o077:
            folder.chmod(0o700)


def write_private(path: Path, data: bytes) -> None:
    """Write ``path`` atomically with mode 0600 (temp file, fsync, rename, fsync the folder)."""
    private_dir(path.parent)
    temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def _keyring() -> Any:
    """The ``keyring`` module when it has a usable backend, else None."""
    try:
        import keyring
        from keyring.backends import fail
    except ImportError:
        return None
    try:
        backend = keyring.get_keyring()
    except Exception:  # a broken keyring configuration: fall back to the file
        return None
    if isinstance(backend, fail.Keyring) or getattr(backend, "priority", 0) <= 0:
        return None
    return keyring


def keyring_set(device_id: str, key: bytes) -> bool:
    """Keep the device key in the OS keyring; False when there is none or it refuses."""
    module = _keyring()
    if module is None:
        return False
    try:
        module.set_password(
            _KEYRING_SERVICE, f"device-key:{device_id}", base64.b64encode(key).decode()
        )
    except Exception:  # locked or refusing keyring: the 0600 file is the fallback
        return False
    return keyring_get(device_id) == key


def keyring_get(device_id: str) -> bytes | None:
    """The device key from the OS keyring, or None."""
    module = _keyring()
    if module is None:
        return None
    try:
        value = module.get_password(_KEYRING_SERVICE, f"device-key:{device_id}")
        return base64.b64decode(value) if value else None
    except Exception:
        return None
