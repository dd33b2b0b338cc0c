"""Counting a tenant's records per tier, in SQL: what ``tier_counts`` and ``stats`` report.

Apart from ``duckdb_store`` so that module stays about writing and reading
records. Dictionaries and episodes' scene data are records but not memories:
they are counted apart.
"""

from __future__ import annotations

from typing import Any

import duckdb

from aios_memory.schemas import DICTIONARY_KIND, SCENE_KIND, TIERS, View

from ._sql_filters import Sql, compile_view

__all__ = ["tier_counts", "tier_stats"]

_STATS_SQL = (
    "SELECT tier, count(*) FILTER (WHERE NOT deleted), count(*) FILTER (WHERE deleted), "
    "coalesce(sum(raw_size), 0), coalesce(sum(octet_length(payload)), 0), "
    "CASE kind WHEN ? THEN 'dictionary' WHEN ? THEN 'scene' ELSE 'memory' END "
    "FROM records WHERE {where} GROUP BY ALL"
)


def tier_counts(
    cur: duckdb.DuckDBPyConnection, tenant: str, view: View | None
) -> dict[str, tuple[int, int]]:
    """``tier -> (live memories, payload bytes)`` of ``tenant`` in ``view``, every tier."""
    sql = Sql()
    sql.add(
        "tenant = ? AND NOT deleted AND kind NOT IN (?, ?)", tenant, DICTIONARY_KIND, SCENE_KIND
    )
    compile_view(sql, view)
    rows = cur.execute(
        "SELECT tier, count(*), coalesce(sum(octet_length(payload)), 0) FROM records "
        f"WHERE {sql.where()} GROUP BY tier",
        sql.params,
    ).fetchall()
    counts = {tier: (0, 0) for tier in TIERS}
    counts.update({tier: (int(n), int(b)) for tier, n, b in rows})
    return counts


def tier_stats(
    cur: duckdb.DuckDBPyConnection, tenant: str, view: View | None
) -> dict[str, dict[str, Any]]:
    """Per tier of ``tenant`` in ``view``: memories, deleted, text and payload bytes, and the
    dictionaries' and scenes' own counts and bytes."""
    sql = Sql()
    sql.add("tenant = ?", tenant)
    compile_view(sql, view)
    rows = cur.execute(
        _STATS_SQL.format(where=sql.where()), [DICTIONARY_KIND, SCENE_KIND, *sql.params]
    ).fetchall()
    tiers: dict[str, dict[str, Any]] = {
        t: {
            "memories": 0,
            "deleted": 0,
            "text_bytes": 0,
            "payload_bytes": 0,
            "dictionaries": 0,
            "dictionary_bytes": 0,
            "scene_bytes": 0,
        }
        for t in TIERS
    }
    for tier, live, dead, raw, stored, kind in rows:
        if kind == "dictionary":
            tiers[tier].update(dictionaries=live, dictionary_bytes=int(stored))
        elif kind == "scene":
            tiers[tier].update(scene_bytes=int(stored))
        else:
            tiers[tier].update(
                memories=live, deleted=dead, text_bytes=int(raw), payload_bytes=int(stored)
            )
    return tiers
