"""``EncodedScene``: an encoded episode's five tables, checked, and their stored bytes.

Apart from the codec (which re-exports it) so that replay (``_replay``) and the codec can
both use it without importing each other.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from aios_memory.schemas.scenes import EPISODE_SCHEMA

from . import _container as container
from ._layout import DEFAULT_MAX_CELLS, Layout, read_layout

__all__ = ["EncodedScene"]


class EncodedScene:
    """An encoded episode: its five Arrow tables (``tables``), checked on construction.

    Build one with ``encode_scene``, ``EncodedScene.from_bytes`` or from tables that
    travelled (``EncodedScene(tables)``); damaged tables raise ``CorruptDataError``.
    """

    def __init__(self, tables: dict[str, pa.Table], *, max_cells: int = DEFAULT_MAX_CELLS) -> None:
        self.layout: Layout = read_layout(tables, max_cells)
        self.tables = dict(tables)
        self._bodies: dict[str, bytes] | None = None

    @classmethod
    def from_bytes(
        cls,
        data: bytes,
        *,
        max_bytes: int = container.DEFAULT_MAX_BYTES,
        max_cells: int = DEFAULT_MAX_CELLS,
    ) -> EncodedScene:
        """Read ``to_bytes()`` output; damage is a ``CorruptDataError``, never a crash."""
        return cls(container.unpack_container(data, max_bytes), max_cells=max_cells)

    def to_bytes(self) -> bytes:
        """The stored form: one versioned, checksummed container of the five tables."""
        return container.pack_container(self._table_bodies())

    def byte_counts(self) -> dict[str, int]:
        """Stored bytes per table and ``total`` (the whole ``to_bytes()``, header included)."""
        bodies = self._table_bodies()
        return {**{name: len(body) for name, body in bodies.items()}, "total": len(self.to_bytes())}

    def _table_bodies(self) -> dict[str, bytes]:
        if self._bodies is None:
            self._bodies = container.table_bodies(self.tables)
        return self._bodies

    @property
    def episode(self) -> dict[str, Any]:
        """The episode row (``source`` parsed from its JSON)."""
        return dict(self.layout.episode)

    def facts(self) -> dict[str, Any]:
        """The episode row plus counts and duration: what ``aimem scene stats`` shows."""
        episode = self.episode
        return {
            **episode,
            "objects": len(self.layout.objects),
            "events": len(self.layout.events),
            "duration_s": max(episode["n_frames"] - 1, 0) / episode["frame_rate"],
        }

    def __getattr__(self, name: str) -> Any:
        # The episode's facts as attributes: encoded.measured_max_error_m, .frame_rate ...
        if name != "layout" and name in EPISODE_SCHEMA.names:
            return self.layout.episode[name]
        raise AttributeError(name)
