"""Who may do what: grants, and the view of the records a grant opens.

The hierarchy is tenant > tier > privacy level > record:

- a grant belongs to one tenant (the user) and one principal acting for it
  (an agent, a device, an app); the server's owner token holds every tenant;
- it names the tiers it may read and the tiers it may write;
- its clearance is the highest privacy level it may see (0 public .. 3 secret);
- a ``shared``-tier record may name, under the metadata key ``READERS_KEY``,
  other tenants (``"bob"``) or principals (``"bob/phone"``) who may read it.

A caller sees only what its view admits, and every count, search and scan is
filtered by the view before it is ranked or counted, so records outside it
leave no trace in an answer. Pure logic: the server enforces it, the store
compiles ``View`` into its queries, and tests compare both to their own model.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .errors import InvalidValueError, PermissionDeniedError
from .record import PRIVACY_LEVELS, TIERS

__all__ = [
    "Grant",
    "View",
    "OWNER",
    "READERS_KEY",
    "MAX_CLEARANCE",
    "MAX_READERS",
    "SHARED_TIER",
    "readers_of",
    "check_readers",
]

READERS_KEY = "aimem:readers"
MAX_CLEARANCE = max(PRIVACY_LEVELS)
MAX_READERS = 64
SHARED_TIER = "shared"


@dataclass(frozen=True)
class View:
    """The records of one tenant a caller may read.

    ``reader`` is None when the tenant is the caller's own; otherwise the
    names (tenant, tenant/principal) a shared record must list to be seen.
    """

    tenant: str
    tiers: tuple[str, ...]
    max_privacy: int = MAX_CLEARANCE
    reader: tuple[str, ...] | None = None

    @property
    def whole(self) -> bool:
        """True when the view is the tenant's every record (no filter needed)."""
        return (
            self.reader is None
            and self.max_privacy >= MAX_CLEARANCE
            and set(self.tiers) >= set(TIERS)
        )


@dataclass(frozen=True)
class Grant:
    """What one token allows; ``tenant`` None is the server's owner (every tenant)."""

    tenant: str | None
    principal: str
    tiers: tuple[str, ...] = TIERS
    write_tiers: tuple[str, ...] = TIERS
    clearance: int = MAX_CLEARANCE
    expires: float | None = None
    token_id: str | None = None
    names: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tiers", _tiers(self.tiers))
        object.__setattr__(self, "write_tiers", _tiers(self.write_tiers))
        if self.clearance not in PRIVACY_LEVELS:
            raise InvalidValueError(f"clearance must be 0..{MAX_CLEARANCE}, not {self.clearance}")
        if self.tenant is not None:
            object.__setattr__(self, "names", (self.tenant, f"{self.tenant}/{self.principal}"))

    @property
    def is_owner(self) -> bool:
        return self.tenant is None

    def expired(self, now: float | None = None) -> bool:
        return self.expires is not None and (now or time.time()) >= self.expires

    def read_view(self, tenant: str) -> View:
        """The view of ``tenant``'s records: whole for its own, shared-and-named for another's."""
        if self.is_owner or tenant == self.tenant:
            return View(tenant, self.tiers, self.clearance)
        if SHARED_TIER not in self.tiers:
            raise self.denied("read", tenant, f"it may read only {self._own_tenant()}")
        return View(tenant, (SHARED_TIER,), self.clearance, self.names)

    def write_view(self, tenant: str) -> View:
        """The records of ``tenant`` this grant may write or forget: its own, never another's."""
        if not (self.is_owner or tenant == self.tenant):
            raise self.denied("write", tenant, f"it may write only {self._own_tenant()}")
        tiers = tuple(t for t in self.write_tiers if t in self.tiers)
        return View(tenant, tiers, self.clearance)

    def _own_tenant(self) -> str:
        # The caller most likely forgot to pick its tenant: name both ways to pick it.
        return (
            f"tenant {self.tenant!r} (pick it with `--tenant {self.tenant}` on the command "
            f"line or `tenant={self.tenant!r}` in MemoryClient)"
        )

    def check_write(self, tenant: str, tier: str, privacy: int, row: int | None = None) -> None:
        """Raise unless this grant may write a record of ``tenant``/``tier`` at ``privacy``."""
        view = self.write_view(tenant)
        if tier not in self.write_tiers:
            raise self.denied(
                "write",
                tenant,
                f"tier {tier!r} is not among its write tiers "
                f"({', '.join(self.write_tiers) or 'none'})",
                tier=tier,
                row=row,
            )
        if privacy > view.max_privacy:
            raise self.denied(
                "write",
                tenant,
                f"privacy {privacy} is above its clearance {self.clearance}",
                row=row,
            )

    def check_tiers(self, view: View, tiers: Iterable[str], action: str) -> None:
        """Raise if a request names a tier outside ``view`` (asking is not leaking)."""
        for tier in tiers:
            if tier not in view.tiers:
                raise self.denied(
                    action,
                    view.tenant,
                    f"tier {tier!r} is not among its tiers ({', '.join(view.tiers) or 'none'})",
                    tier=tier,
                )

    def denied(self, action: str, tenant: str, why: str, **detail: Any) -> PermissionDeniedError:
        who = "the owner token" if self.is_owner else f"{self.tenant}/{self.principal}"
        detail = {k: v for k, v in detail.items() if v is not None}
        return PermissionDeniedError(
            f"{who} may not {action} in tenant {tenant!r}: {why}",
            action=action,
            tenant=tenant,
            principal=self.principal,
            **detail,
        )

    def describe(self) -> dict[str, Any]:
        """The grant as a JSON object (``whoami``)."""
        return {
            "tenant": self.tenant,
            "principal": self.principal,
            "tiers": list(self.tiers),
            "write_tiers": list(self.write_tiers),
            "clearance": self.clearance,
            "expires": self.expires,
            "token_id": self.token_id,
            "owner": self.is_owner,
        }


def _tiers(values: Iterable[str]) -> tuple[str, ...]:
    chosen = set(values)
    unknown = chosen - set(TIERS)
    if unknown:
        raise InvalidValueError(f"unknown tiers {sorted(unknown)}; tiers are {', '.join(TIERS)}")
    return tuple(t for t in TIERS if t in chosen)


OWNER = Grant(tenant=None, principal="owner")


def readers_of(metadata: dict[str, Any] | None) -> list[str]:
    """The names a record's metadata lets read it (empty when it names none)."""
    value = (metadata or {}).get(READERS_KEY)
    return list(value) if isinstance(value, list) else []


def check_readers(metadata: dict[str, Any], tier: str, row: int | None = None) -> None:
    """Raise unless ``READERS_KEY`` is absent or a short list of names on a shared record."""
    if READERS_KEY not in metadata:
        return
    value = metadata[READERS_KEY]
    if tier != SHARED_TIER:
        raise InvalidValueError(
            f"{READERS_KEY} at row {row} names readers of a {tier!r} "
            f"record; only {SHARED_TIER!r} records are read by others",
            field="metadata",
            row=row,
        )
    ok = (
        isinstance(value, list)
        and len(value) <= MAX_READERS
        and all(isinstance(v, str) and 0 < len(v) <= 129 and v.count("/") <= 1 for v in value)
    )
    if not ok:
        raise InvalidValueError(
            f"{READERS_KEY} at row {row} must be a list of at most "
            f"{MAX_READERS} names like 'bob' or 'bob/phone'",
            field="metadata",
            row=row,
        )
