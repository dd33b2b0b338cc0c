"""One tenant's record versions in the lake: an append-only Lance dataset.

Every acknowledged write is one Lance commit of the versions it made (records
with their ``hlc`` and ``origin``, tombstones included); nothing is updated or
deleted in place, so concurrent writers never conflict beyond Lance's own
append rebase (``bench/spikes/spike_lance.py``: 3-4 processes, nothing lost or
duplicated). Which version of an id is current is decided by readers, by the
highest ``(hlc, origin)``, exactly as sync decides between replicas.

Rows carry Lance's stable row ids, so each row's ``_row_created_at_version``
survives compaction: a replica that has read up to version ``v`` asks for the
rows created after ``v`` and gets exactly the versions it has not seen, however
the files were merged meanwhile.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Any

import lance
import pyarrow as pa

from aios_memory.schemas import RECORD_SCHEMA, ServerInternalError

from ._objects import LakeObjects
from .uri import LakeLocation

__all__ = ["TenantLog"]

log = logging.getLogger("aios_memory.lake")

_CREATED = "_row_created_at_version"
# A creation claim with no dataset after this long is a claimant that died.
_CLAIM_EXPIRES = 30.0
# Old versions (manifests and the files only they use) kept for readers mid-scan.
_KEEP_VERSIONS_FOR = timedelta(minutes=10)


class TenantLog:
    """The Lance dataset of one tenant (``LakeLocation.dataset_uri``)."""

    def __init__(
        self, lake: LakeLocation, tenant: str, replica_id: str = "", *, uri: str | None = None
    ) -> None:
        self.uri = uri or lake.dataset_uri(tenant)
        self._claim = self.uri.removeprefix(lake.root + "/") + ".claim"
        self._objects = LakeObjects(lake)
        self._options = lake.lance_options
        self._replica_id = replica_id
        self._dataset: Any = None

    # -- reading ----------------------------------------------------------------------------
    def latest_version(self) -> int:
        """The newest committed version (0: nothing was ever written)."""
        dataset = self._open()
        return 0 if dataset is None else int(dataset.latest_version)

    def rows_after(self, seen: int) -> tuple[pa.Table, int]:
        """Every row committed after version ``seen``, and the version read up to."""
        dataset = self._open(latest=True)
        if dataset is None:
            return RECORD_SCHEMA.empty_table(), 0
        version = int(dataset.version)
        if version <= seen:
            return RECORD_SCHEMA.empty_table(), seen
        table = dataset.to_table(filter=f"{_CREATED} > {int(seen)}")
        return table.cast(RECORD_SCHEMA), version

    def _open(self, latest: bool = False) -> Any:
        try:
            if self._dataset is None:
                self._dataset = lance.dataset(self.uri, storage_options=self._options)
            elif latest and self._dataset.latest_version > self._dataset.version:
                self._dataset = self._dataset.checkout_version(self._dataset.latest_version)
        except (ValueError, FileNotFoundError) as exc:
            if "not found" in str(exc).lower() or isinstance(exc, FileNotFoundError):
                return None
            raise _lake_error("open", self.uri, exc) from None
        except OSError as exc:
            raise _lake_error("open", self.uri, exc) from None
        return self._dataset

    # -- writing ----------------------------------------------------------------------------
    def append(self, rows: pa.Table) -> int:
        """Commit ``rows`` (record versions); return the version that holds them. Only
        after this returns is a write durable, and only then is it acknowledged."""
        rows = rows.select(RECORD_SCHEMA.names).cast(RECORD_SCHEMA)
        try:
            if self._open() is None:
                self._create()
            self._dataset = lance.write_dataset(
                rows, self._dataset, mode="append", storage_options=self._options
            )
        except (OSError, ValueError) as exc:
            raise _lake_error("commit", self.uri, exc) from None
        return int(self._dataset.version)

    def _create(self) -> None:
        """Create the dataset, empty, once: the replica whose claim wins creates it, the
        others wait for it (a claimant that died leaves a claim no dataset follows; after
        ``_CLAIM_EXPIRES`` seconds anyone creates it)."""
        claim = f"{self._replica_id} {time.time():.3f}".encode()
        won = self._objects.create(self._claim, claim)
        deadline = time.monotonic() + _CLAIM_EXPIRES
        while not won and self._open() is None:
            if (
                time.monotonic() > deadline
                or (self._objects.age_seconds(self._claim) or 0) > _CLAIM_EXPIRES
            ):
                won = True
                break
            time.sleep(0.05)
        if won and self._open() is None:
            lance.write_dataset(
                RECORD_SCHEMA.empty_table(),
                self.uri,
                mode="create",
                storage_options=self._options,
                enable_stable_row_ids=True,
            )
            self._open()

    # -- compaction -------------------------------------------------------------------------
    def fragment_count(self) -> int:
        dataset = self._open(latest=True)
        return 0 if dataset is None else len(dataset.get_fragments())

    def compact(self) -> dict[str, Any]:
        """Merge small files into big ones (readers and writers carry on: Lance commits
        the rewrite like any other change), then drop files no version in the last
        ten minutes needs."""
        dataset = self._open(latest=True)
        if dataset is None:
            return {"fragments_removed": 0, "fragments_added": 0}
        start = time.perf_counter()
        metrics = dataset.optimize.compact_files(target_rows_per_fragment=1_000_000)
        dataset = self._open(latest=True)
        dataset.cleanup_old_versions(older_than=_KEEP_VERSIONS_FOR)
        return {
            "fragments_removed": metrics.fragments_removed,
            "fragments_added": metrics.fragments_added,
            "seconds": round(time.perf_counter() - start, 3),
        }


def _lake_error(what: str, uri: str, exc: Exception) -> ServerInternalError:
    return ServerInternalError(
        f"the lake could not {what} {uri}: {exc}. Nothing was "
        "acknowledged; retry once the object store is reachable."
    )
