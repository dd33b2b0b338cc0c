"""The daemon's opt-in consolidation: this device's idle sessions, each round.

It runs on the device because that is where the keys of private memories are (the cloud
holds them sealed) and where a local model may read them. One round is one
``MemoryClient.consolidate`` over the local server: idempotent, so a round costs a model
call only for sessions that are new or changed, and a failed session is tried again next
round. The model is the one ``AIMEM_LLM_*`` names, opened once and loaded on first use.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from aios_memory.client import MemoryClient

__all__ = ["ConsolidationJob"]

# One call may carry a whole tier's scan: longer than a sync message's timeout.
CALL_TIMEOUT_S = 600.0


class ConsolidationJob:
    """What ``aimem sync --consolidate-every`` runs each round."""

    def __init__(
        self,
        uri: str,
        token: str | None,
        *,
        tenant: str,
        tier: str,
        idle: timedelta,
        demote: str,
        tls: dict[str, str | None],
    ) -> None:
        from aios_memory.client.consolidate import Demotion

        Demotion.parse(demote)  # a typo fails at start, not an hour later
        self.uri, self.token, self.tenant = uri, token, tenant
        self.tier, self.idle, self.demote, self.tls = tier, idle, demote, tls
        self._llm: Any = None

    def run(self, should_stop: Callable[[], bool]) -> str:
        """One round; a line that says what it did."""
        with MemoryClient(
            self.uri,
            self.token,
            tenant=self.tenant,
            timeout=CALL_TIMEOUT_S,
            tls_root_certs=self.tls["ca"],
            tls_cert=self.tls["client_cert"],
            tls_key=self.tls["client_key"],
        ) as mem:
            report = mem.consolidate(
                tier=self.tier,
                older_than=self.idle,
                demote=self.demote,
                llm=self._model(),
                should_stop=should_stop,
            )
        done = report.to_dict()
        failures = "; ".join(f"{f['session']}: {f['code']}" for f in done["failed"])
        return (
            f"{done['consolidated']} sessions consolidated, {done['recent']} still active, "
            f"{len(done['failed'])} failed{f' ({failures})' if failures else ''}"
            f"{', stopped' if done['stopped'] else ''} in {done['seconds']} s"
        )

    def _model(self) -> Any:
        if self._llm is None:
            from aios_memory.client.llm import LLMSettings, open_llm

            self._llm = open_llm(LLMSettings.from_env())  # loads its weights on first use
        return self._llm
