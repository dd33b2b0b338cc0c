"""Small objects beside the lake's tables, written at most once: claims.

Lance commits are safe between concurrent writers, but creating a dataset is
not: two replicas that create one tenant's dataset at once can both succeed,
the second as an overwrite that hides what the first committed meanwhile
(``tests/test_lake.py`` met it with three replicas starting together). So a
replica first claims the creation with a conditional put (S3 ``If-None-Match``,
or an exclusive create on a file system) through obstore, the Python binding of
the object store Lance itself uses. One claim wins; the others wait for the
dataset to appear.
"""

from __future__ import annotations

import time
from typing import Any

import obstore
from obstore.exceptions import AlreadyExistsError, NotFoundError
from obstore.store import LocalStore, S3Store

from ._lake_uri import LakeLocation

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
    return S3Store(bucket, prefix=prefix or None, endpoint=options.get("aws_endpoint"),
                   region=options.get("aws_region"),
                   client_options={"allow_http": options.get("allow_http") == "true"})
