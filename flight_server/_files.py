"""Durable file writes and checksummed manifests for derived artefacts.

hnswlib's ``save_index`` overwrites in place with no fsync and no error on a
full disk (a 262 KB stub of an 809 KB index was measured here), and loading a
corrupt file can segfault. So every derived file is written to a temporary
name, fsynced, renamed, and listed with its SHA-256 in a manifest that is
itself written the same way; nothing is loaded before its hash matches.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

__all__ = [
    "atomic_write_bytes",
    "fsync_dir",
    "sha256_file",
    "write_manifest",
    "read_manifest",
    "verify_files",
    "dir_bytes",
    "fsync_file",
]

MANIFEST = "manifest.json"


def fsync_dir(path: Path) -> None:
    """Make a rename or create in the directory ``path`` durable; given a file, its bytes."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# The same call makes a file's own bytes durable.
fsync_file = fsync_dir


def atomic_write_bytes(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` so that a crash leaves the old file or the new one."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(directory: Path, files: list[str], **facts: Any) -> None:
    """Record the hashes of ``files`` (relative to ``directory``) and some facts."""
    for name in files:
        with open(directory / name, "rb") as f:
            os.fsync(f.fileno())
    entries = {
        name: {"sha256": sha256_file(directory / name), "size": (directory / name).stat().st_size}
        for name in files
    }
    body = {"format": 1, "files": entries, **facts}
    atomic_write_bytes(directory / MANIFEST, json.dumps(body, sort_keys=True).encode())


def read_manifest(directory: Path) -> dict[str, Any] | None:
    """The manifest in ``directory``, or None when it is missing or unreadable."""
    try:
        body = json.loads((directory / MANIFEST).read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(body, dict) or body.get("format") != 1:
        return None
    return body


def verify_files(directory: Path, manifest: dict[str, Any]) -> bool:
    """True when every file the manifest lists exists with its size and hash."""
    for name, entry in manifest.get("files", {}).items():
        path = directory / name
        try:
            if path.stat().st_size != entry["size"] or sha256_file(path) != entry["sha256"]:
                return False
        except (OSError, KeyError, TypeError):
            return False
    return True


def dir_bytes(directory: Path) -> int:
    """Bytes of every file below ``directory``.

    The index writers create and remove temporary files while this walks (tantivy's commits),
    so a file or folder gone between its listing and its ``stat`` counts as nothing. A
    link counts as itself, not as what it names (``memory.duckdb`` after a compaction)."""
    total = 0
    for folder, _, names in os.walk(directory):  # os.walk skips folders that vanish
        for name in names:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except FileNotFoundError:
                continue
    return total
