"""Sync between a local memory server and a cloud endpoint (see the sync issue)."""

__all__: list[str] = []
