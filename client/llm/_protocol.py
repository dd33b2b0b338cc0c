"""The shape every chat model has: ``ChatModel``, and the ``Usage`` it counts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, TypeVar

import pydantic

__all__ = ["ChatModel", "T", "Usage"]

T = TypeVar("T", bound=pydantic.BaseModel)


@dataclass
class Usage:
    """What a chat model has cost so far (cumulative over the object's life).

    ``calls`` counts answered requests, ``retries`` every attempt after a first one (a failed
    connection, a timeout, a 429/5xx, or output that was not the JSON asked for), ``seconds``
    the wall time spent in requests, backoff included, ``salvaged`` the answers cut by
    ``max_tokens`` whose whole part was kept (``_validate.salvage``), ``cached`` the answers
    replayed from an answer cache (``AIMEM_LLM_CACHE``), which cost nothing else here.
    """

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    retries: int = 0
    salvaged: int = 0
    cached: int = 0


class ChatModel(Protocol):
    """A chat model: an OpenAI-compatible endpoint (``OpenAIChat``) or the embedded one
    (``LocalChat``). Errors are always ``LLMUnavailableError`` or ``LLMOutputError``.

    Attributes
    ----------
    name : str
        The model's name.
    local : bool
        True when text never leaves this machine: the embedded model, or an endpoint on
        loopback (127.0.0.0/8, ::1, localhost). Private sessions need it.
    usage : Usage
        Cumulative cost.
    """

    name: str
    local: bool
    usage: Usage

    def chat_json(self, messages: list[dict[str, str]], schema: type[T], *, max_tokens: int) -> T:
        """Ask for one JSON object of ``schema``'s shape; return it validated.

        Say in ``messages`` what the fields mean: where the backend can, a grammar holds the
        shape (and the schema is not repeated in the prompt); without one (``structured=none``)
        the schema is added to the system message.
        """
        ...

    def chat_text(self, messages: list[dict[str, str]], *, max_tokens: int) -> str:
        """Ask for free text; return the answer."""
        ...

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` (exact for the embedded model; see each backend)."""
        ...

    def close(self) -> None:
        """Free the model or the connection pool (the object may not be used after)."""
        ...
