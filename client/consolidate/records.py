"""The records one session's consolidation writes, in one put.

Summary, facts and the rewrites of the facts they supersede travel together, so the
server commits them whole: a session is consolidated completely or not at all, and
its summary's digest (written last in the same put) is what marks it done.

A memory written again keeps its id (a new version of the same memory): the
summary of a session consolidated before, a fact stated again word for word, and a
superseded fact, which stays readable with ``kind="superseded_fact"`` and a pointer
to what replaced it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol

from aios_memory.client.importers import MemoryInput
from aios_memory.schemas import (
    CONSOLIDATED_SESSION_KEY,
    FACT_KIND,
    OCCURRED_AT_KEY,
    SOURCES_KEY,
    SUMMARY_KIND,
    SUPERSEDED_FACT_KIND,
    canonical_time,
)

__all__ = ["Encoder", "Draft", "Plan", "normalized", "FACT_KEY", "SUPERSEDED_BY_KEY"]

FACT_KEY = "aimem:fact_key"
SUPERSEDED_BY_KEY = "aimem:superseded_by"
SUPERSEDED_AT_KEY = "aimem:superseded_at"
CONSOLIDATED_AT_KEY = "aimem:consolidated_at"
MODEL_KEY = "aimem:model"


class Encoder(Protocol):
    """The client's record encoder (``MemoryClient.encode_records``)."""

    def encode_records(
        self, items: Sequence[MemoryInput], *, tier: str = "working"
    ) -> list[dict[str, Any]]: ...


@dataclass
class Draft:
    """A checked fact about to be written: its text, sources (memory ids) and key."""

    text: str
    sources: list[str]
    key: str


@dataclass
class Plan:
    """Everything one session's put writes."""

    session: str
    target_tier: str
    privacy: int
    happened: datetime
    inherited: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)
    # Each written record as a scan would read it back (text and metadata decoded), by id.
    views: dict[str, dict[str, Any]] = field(default_factory=dict)
    superseded: int = 0

    def common(self, model: str) -> dict[str, Any]:
        return {
            **self.inherited,
            CONSOLIDATED_SESSION_KEY: self.session,
            OCCURRED_AT_KEY: canonical_time(self.happened),
            CONSOLIDATED_AT_KEY: canonical_time(datetime.now(timezone.utc)),
            MODEL_KEY: model,
        }

    def add(
        self,
        encoder: Encoder,
        text: str,
        kind: str,
        metadata: dict[str, Any],
        *,
        keep: dict[str, Any] | None = None,
    ) -> str:
        """Encode one record (a new version of ``keep`` when given); return its id."""
        item = MemoryInput(
            text=text,
            tier=self.target_tier if keep is None else keep["tier"],
            metadata=metadata,
            kind=kind,
            session=self.session if keep is None else keep["session"],
            privacy=self.privacy if keep is None else keep["privacy"],
        )
        (row,) = encoder.encode_records([item], tier=item.tier or self.target_tier)
        if keep is not None:
            row["id"], row["created_at"] = keep["id"], keep["created_at"]
        self.rows.append(row)
        names = ("id", "tier", "session", "kind", "privacy", "created_at")
        self.views[row["id"]] = {
            **{name: row[name] for name in names},
            "text": text,
            "metadata": metadata,
            "deleted": False,
        }
        return str(row["id"])

    def supersede(self, encoder: Encoder, old: dict[str, Any], by: str) -> None:
        """Rewrite ``old`` (a fact row) as superseded by the memory ``by`` (once: two new facts
        with its key supersede it by the first; a put holds one version of a memory)."""
        if old["id"] in self.views:
            return
        metadata = {
            **old["metadata"],
            SUPERSEDED_BY_KEY: by,
            SUPERSEDED_AT_KEY: canonical_time(datetime.now(timezone.utc)),
        }
        self.add(encoder, old["text"], SUPERSEDED_FACT_KIND, metadata, keep=old)
        self.superseded += 1


def summary_metadata(plan: Plan, model: str, sources: list[str], digest: str) -> dict[str, Any]:
    return {**plan.common(model), SOURCES_KEY: sources, "aimem:digest": digest}


def fact_metadata(plan: Plan, model: str, draft: Draft) -> dict[str, Any]:
    return {**plan.common(model), SOURCES_KEY: draft.sources, FACT_KEY: draft.key}


def normalized(text: str) -> str:
    """A fact's text for comparison: lowercase words only."""
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


KINDS = (SUMMARY_KIND, FACT_KIND, SUPERSEDED_FACT_KIND)
