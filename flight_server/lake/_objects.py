"""Small objects beside the lake's tables: creation claims and the compaction lease.

Lance commits are safe between concurrent writers, but creating a dataset is
not: two replicas that create one tenant's dataset at once can both succeed,
the second as an overwrite that hides what the first committed meanwhile
(``tests/test_lake.py`` met it with three replicas starting together). So a
replica first claims the creation with a conditional put (S3 ``If-None-Match``,
or an exclusive create on a file system) through obstore, the Python binding of
the object store Lance itself uses. One claim wins; the others wait for the
dataset to appear.

The compaction lease makes "one compactor at a time" hold even when several
replicas are told to compact: a lease object naming its holder and expiry,
taken by a conditional create, or once expired by a conditional update
(``If-Match`` on its ETag). A local directory has no conditional update, so
there an expired lease is deleted and created again: two takers in that
instant could both compact, which Lance's commit makes safe, only wasteful.
"""

from __future__ import annotations

import json
import time
from typing import Any

import obstore
from obstore.exceptions import AlreadyExistsError, NotFoundError, PreconditionError
from obstore.store import LocalStore, S3Store

from .uri import LakeLocation

__all__ = ["LakeObjects"]


class LakeObjects:
    """Objects under a lake's root, by path relative to it."""

    def __init__(self, lake: LakeLocation) -> None:
        self._store = _store_of(lake)

    def create(self, path: str, data: bytes) -> bool:
        """Write ``path`` only if it does not exist; True if this call wrote it."""
        try:
            obstore.put(self._store, path, data, mode="create")
        except AlreadyExistsError:
            return False
        return True

    def read(self, path: str) -> bytes | None:
        try:
            return bytes(obstore.get(self._store, path).bytes())
        except (NotFoundError, FileNotFoundError):
            return None

    def datasets(self, prefix: str) -> list[str]:
        """Names of the ``*.lance`` folders right under ``prefix`` (one listing call)."""
        listed = obstore.list_with_delimiter(self._store, prefix.rstrip("/") + "/")
        return [
            p.rstrip("/").rsplit("/", 1)[-1]
            for p in listed["common_prefixes"]
            if p.rstrip("/").endswith(".lance")
        ]

    def take_lease(self, path: str, holder: str, seconds: float) -> bool:
        """Hold ``path`` for ``seconds`` (renewing it if already ours); False if another
        replica holds it unexpired."""
        body = json.dumps({"holder": holder, "expires": time.time() + seconds}).encode()
        if self.create(path, body):
            return True
        try:
            found = obstore.get(self._store, path)
            current, tag = json.loads(bytes(found.bytes())), found.meta.get("e_tag")
        except (NotFoundError, FileNotFoundError, ValueError):
            return self.create(path, body)
        if current.get("holder") != holder and current.get("expires", 0) > time.time():
            return False
        return self._replace(path, body, tag)

    def _replace(self, path: str, body: bytes, tag: str | None) -> bool:
        if isinstance(self._store, LocalStore) or tag is None:
            obstore.delete(self._store, path)
            return self.create(path, body)
        try:
            obstore.put(self._store, path, body, mode={"e_tag": tag})
        except PreconditionError:
            return False  # another replica took it first
        return True

    def age_seconds(self, path: str) -> float | None:
        """How long ago ``path`` was written (None if it does not exist)."""
        try:
            meta = obstore.head(self._store, path)
        except (NotFoundError, FileNotFoundError):
            return None
        return time.time() - meta["last_modified"].timestamp()


def _store_of(lake: LakeLocation) -> Any:
    if not lake.root.startswith("s3://"):
        return LocalStore(lake.root, mkdir=True)
    bucket, _, prefix = lake.root.removeprefix("s3://").partition("/")
    options = lake.options
    return S3Store(
        bucket,
        prefix=prefix or None,
        endpoint=options.get("aws_endpoint"),
        region=options.get("aws_region"),
        client_options={"allow_http": options.get("allow_http") == "true"},
    )
