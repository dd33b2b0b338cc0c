"""The audit log: every refused call and every change of rights, one JSON line each.

Kept in ``DATA/audit.log`` (mode 0600). It names who, what, on which
tenant, and why; never a payload, a query text or a token's secret part, so
the log itself leaks nothing a denied caller was after.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

__all__ = ["AuditLog", "AUDIT_FILE"]

AUDIT_FILE = "audit.log"
log = logging.getLogger("aios_memory.audit")


class AuditLog:
    """Appends audit events to a file; safe to share between threads and processes."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / AUDIT_FILE
        self._lock = threading.Lock()

    def record(
        self,
        event: str,
        principal: str | None,
        action: str,
        tenant: str | None = None,
        reason: str = "",
        code: str | None = None,
        **facts: Any,
    ) -> None:
        """Append one event (``denied``, ``token-created``, ``token-revoked``...)."""
        entry = {
            "at": round(time.time(), 3),
            "event": event,
            "principal": principal,
            "action": action,
            "tenant": tenant,
            "code": code,
            "reason": reason[:500],
            **facts,
        }
        line = json.dumps(entry, separators=(",", ":"), default=str) + "\n"
        with self._lock:
            # O_APPEND: lines from the server and from `aimem token` never interleave.
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)
        log.info("audit %s %s %s %s", event, principal, action, code or "")

    def entries(self) -> list[dict[str, Any]]:
        """Every event so far, oldest first."""
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]
