"""Which file of a data directory is the database, and moving to a rewritten one atomically.

``memory.duckdb`` is the database until its first compaction. A compaction writes a
new file, ``memory-<n>.duckdb`` (n counting rewrites), and makes ``memory.duckdb`` a
symbolic link to it in one ``rename``: at any instant the name points at either the
old file or the complete new one, so a ``kill -9`` anywhere leaves one of the two.

Why a new name rather than renaming the new file over the old one: DuckDB keeps one
database instance per path in a process, so reopening the same path would hand back
the old file's instance; and readers still streaming from the old file must finish
on it. A new path gets its own instance while the old one lives until its last
cursor is gone.

Every file DuckDB keeps beside a database is named after the path it was opened by
(``<path>.wal``), which is why the store always opens the link's target, never the
link: ``memory.duckdb.wal`` beside a link is a leftover of the file the link replaced.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

from aios_memory.flight_server._files import fsync_dir
from aios_memory.schemas import InvalidValueError

__all__ = ["DB_FILE", "current_path", "next_path", "install", "remove_leftovers", "wal_of"]

DB_FILE = "memory.duckdb"
_GENERATION = re.compile(r"^memory-(?P<n>\d+)\.duckdb$")
_LINK_TMP = DB_FILE + ".link-tmp"


def wal_of(path: Path) -> Path:
    """DuckDB's write-ahead log of the database opened at ``path``."""
    return path.with_name(path.name + ".wal")


def current_path(data_dir: Path) -> Path:
    """The database file to open: ``memory.duckdb``, or the rewrite it links to."""
    link = Path(data_dir) / DB_FILE
    if not link.is_symlink():
        return link
    target = Path(os.readlink(link))
    if target.is_absolute() or target.parent != Path(".") or _generation(target.name) is None:
        return link  # a link placed by hand: open it as it is (compaction refuses it)
    return link.parent / target


def generation_of(path: Path) -> int:
    """0 for ``memory.duckdb`` itself, n for ``memory-<n>.duckdb``."""
    return _generation(path.name) or 0


def next_path(data_dir: Path) -> Path:
    """Where the next rewrite of the database goes (the current one is never reused)."""
    current = current_path(data_dir)
    if current.is_symlink():
        raise InvalidValueError(
            f"{current} is a link to {os.readlink(current)} made by hand; compaction "
            "rewrites the database in its data directory and would replace the link. "
            "Move the database into the data directory (or compact it there) first.",
            field="data_dir",
        )
    return Path(data_dir) / f"memory-{generation_of(current) + 1}.duckdb"


def install(data_dir: Path, new: Path) -> None:
    """Make ``memory.duckdb`` name ``new`` (complete and synced) in one atomic step."""
    data_dir = Path(data_dir)
    tmp = data_dir / _LINK_TMP
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    os.symlink(new.name, tmp)
    os.replace(tmp, data_dir / DB_FILE)
    fsync_dir(data_dir)
    # The log of the plain file the link replaced: never the log of what it names now.
    with contextlib.suppress(FileNotFoundError):
        wal_of(data_dir / DB_FILE).unlink()


def remove_leftovers(data_dir: Path) -> list[Path]:
    """Delete what a finished or interrupted compaction left: other rewrites, their logs,
    a half-made link. Call only while holding the current database open (DuckDB's lock
    proves no other process uses the directory)."""
    data_dir = Path(data_dir)
    current = current_path(data_dir)
    doomed = [data_dir / _LINK_TMP]
    if current != data_dir / DB_FILE:
        doomed.append(wal_of(data_dir / DB_FILE))
    for path in data_dir.iterdir():
        base = path.name.removesuffix(".wal")
        if _generation(base) is not None and base != current.name:
            doomed.append(path)
    removed = []
    for path in doomed:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(path)
    return removed


def _generation(name: str) -> int | None:
    found = _GENERATION.match(name)
    return int(found.group("n")) if found else None
