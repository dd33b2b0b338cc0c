"""Argument handling shared by ``MemoryClient``'s methods: spreading, chunking, checking."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from aios_memory.schemas import (
    DEFAULT_LIMITS,
    DEFAULT_TENANT,
    READERS_KEY,
    InvalidRequestError,
    InvalidValueError,
    LimitExceededError,
    ServerInternalError,
)

__all__ = [
    "env_encrypt_at",
    "with_readers",
    "spread",
    "id_list",
    "tier_arg",
    "chunks",
    "check_id_count",
    "token_tenant",
]


def env_encrypt_at() -> int | None:
    """``AIMEM_ENCRYPT_AT`` as a threshold, or None when it is unset."""
    text = os.environ.get("AIMEM_ENCRYPT_AT")
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise InvalidValueError(
            f"AIMEM_ENCRYPT_AT must be a privacy level 0..4, not {text!r}", field="encrypt_at"
        ) from None


def with_readers(
    metadata: dict[str, Any] | None, readers: Sequence[str] | None
) -> dict[str, Any] | None:
    if readers is None:
        return metadata
    return {**(metadata or {}), READERS_KEY: list(readers)}


def spread(metadata: Any, texts: list[str]) -> list[Any]:
    if metadata is None or isinstance(metadata, dict):
        return [metadata] * len(texts)
    values = list(metadata)
    if len(values) != len(texts):
        raise InvalidValueError(
            f"{len(values)} metadata objects for {len(texts)} texts; "
            "give one dict for all or one per text",
            field="metadata",
        )
    return values


def id_list(ids: str | Sequence[str]) -> list[str]:
    values = [ids] if isinstance(ids, str) else list(ids)
    if not all(isinstance(i, str) for i in values):
        raise InvalidValueError("ids must be strings")
    return values


def tier_arg(tier: Any) -> Any:
    return tier if tier is None or isinstance(tier, str) else list(tier)


def chunks(values: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def check_id_count(ids: list[str], call: str) -> None:
    """Raise LimitExceededError before sending more ids than one call may carry."""
    limit = DEFAULT_LIMITS.max_ids_per_call
    if len(ids) > limit:
        raise LimitExceededError(
            f"{call} of {len(ids)} ids; one call takes at most {limit}. Split the ids into "
            f"calls of at most {limit} each.",
            limit=limit,
        )


def token_tenant(action_json: Callable[[str, bytes], dict[str, Any]]) -> str:
    """The tenant a token is scoped to (the server's ``whoami``), else ``DEFAULT_TENANT``.

    The owner token holds every tenant (``whoami`` says tenant null): it uses "default".
    """
    try:
        rights = action_json("whoami", b"")
    except (InvalidRequestError, ServerInternalError):  # a server without whoami
        return DEFAULT_TENANT
    tenant = rights.get("tenant")
    return tenant if isinstance(tenant, str) and tenant else DEFAULT_TENANT
