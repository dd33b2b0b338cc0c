"""Turn what a model answered into the pydantic object asked for, or say why not.

Shared by every backend: the same fence stripping, the same instruction, the same error.
"""

from __future__ import annotations

import json
import re
import typing
from collections.abc import Callable
from typing import Any

import pydantic
import pydantic_core

from aios_memory.schemas import LLMOutputError

from ._protocol import T, Usage

__all__ = ["json_with_retries", "parse_json", "strip_fences", "with_instruction"]

EXCERPT_CHARS = 200
# Models wrap JSON in Markdown fences even when told not to (SmolLM2 does it without a grammar).
_FENCE = re.compile(r"^\s*```[a-zA-Z]*\s*\n?(.*?)\n?\s*```\s*$", re.DOTALL)
_CONTROL = re.compile(r"[\x00-\x1f]")


def strip_fences(text: str) -> str:
    """``text`` without a surrounding Markdown code fence (```json ... ```)."""
    match = _FENCE.match(text)
    return (match.group(1) if match else text).strip()


def excerpt(text: str) -> str:
    """A short, one-line view of an answer for error messages."""
    flat = " ".join(text.split())
    return flat if len(flat) <= EXCERPT_CHARS else flat[:EXCERPT_CHARS] + "..."


def parse_json(text: str, schema: type[T]) -> T:
    """Validate ``text`` (fences stripped) as ``schema``.

    Raw control characters (a newline) inside JSON strings are accepted: llama.cpp's schema
    grammars let them through, and they are what the model meant.

    Raises
    ------
    LLMOutputError
        Not JSON, or JSON of another shape; ``detail`` has ``excerpt`` and ``reason``.
    """
    body = strip_fences(text)
    try:
        return schema.model_validate_json(body)
    except pydantic.ValidationError as exc:
        error = exc
    if error.errors()[0]["type"] == "json_invalid":
        try:
            return schema.model_validate(json.loads(body, strict=False))
        except (ValueError, pydantic.ValidationError):
            pass  # report the first, stricter reason
    raise _output_error(error, text, schema.__name__)


def _output_error(exc: pydantic.ValidationError, text: str, name: str) -> LLMOutputError:
    reason = "; ".join(
        f"{'.'.join(map(str, e['loc'])) or '(root)'}: {e['msg']}" for e in exc.errors()[:3]
    )
    return LLMOutputError(
        f"the model's answer is not a valid {name}: {reason} (answer: {excerpt(text)!r})",
        schema=name,
        reason=reason,
        excerpt=excerpt(text),
    )


def with_instruction(
    messages: list[dict[str, str]], schema: type[pydantic.BaseModel]
) -> list[dict[str, str]]:
    """``messages`` with a system instruction carrying ``schema`` as JSON Schema.

    Only for requests without a grammar (``structured=none``): with one, the grammar holds the
    shape and the caller's prompt says what the fields mean, and the instruction would cost
    about 200 prompt tokens a call (consolidation's schema, Qwen's tokenizer: some 7 s of
    prompt time on 2 busy cores). It joins an existing first system message: some chat
    templates refuse a second one.
    """
    body = json.dumps(schema.model_json_schema(), separators=(",", ":"))
    instruction = (
        "Answer with one JSON object and nothing else (no Markdown, no comments). "
        f"It must match this JSON schema: {body}"
    )
    if messages and messages[0].get("role") == "system":
        first = {**messages[0], "content": f"{messages[0]['content']}\n\n{instruction}"}
        return [first, *messages[1:]]
    return [{"role": "system", "content": instruction}, *messages]


def json_with_retries(
    complete: Callable[[list[dict[str, str]]], str],
    messages: list[dict[str, str]],
    schema: type[T],
    *,
    retries: int,
    usage: Usage,
) -> T:
    """Ask ``complete`` until its answer validates as ``schema``, at most ``retries`` more times.

    A retry shows the model its invalid answer and why it failed (at temperature 0 the same
    prompt would give the same answer). The last ``LLMOutputError`` carries ``attempts``.
    """
    prompt = messages
    for attempt in range(retries + 1):
        text = complete(prompt)
        try:
            return parse_json(text, schema)
        except LLMOutputError as exc:
            salvaged = salvage(text, schema)
            if salvaged is not None:
                usage.salvaged += 1
                return salvaged
            if attempt == retries:
                exc.detail["attempts"] = attempt + 1
                raise
            usage.retries += 1
            prompt = [*messages, {"role": "assistant", "content": text[:2000]}, _repair(exc)]
    raise AssertionError("unreachable")  # the loop returns or raises


def salvage(text: str, schema: type[T], *, trims: int = 8) -> T | None:
    """What a cut answer (``max_tokens`` reached mid-JSON) holds that is whole, if that is
    still a valid ``schema``: a string cut mid-way keeps its whole sentences (a rambling
    summary), and a list item that does not validate (the one the cut fell in) is dropped.

    At temperature 0 asking again gives the same cut answer, so a retry would cost a whole
    call for nothing; a summary with one fact fewer is worth keeping.
    """
    # Raw control characters (a newline inside a string, which llama-cpp-python's grammars
    # allow) fail the partial parser: as spaces they are valid JSON everywhere.
    body = _CONTROL.sub(" ", strip_fences(text))
    try:
        value = pydantic_core.from_json(body, allow_partial="trailing-strings")
        if value != pydantic_core.from_json(body, allow_partial=True):
            _whole_sentences(value)  # the answer ended inside a string
    except ValueError:
        return None
    if isinstance(value, dict):
        _empty_lists_after_the_cut(value, schema)
    for _ in range(trims + 1):
        try:
            return schema.model_validate(value)
        except pydantic.ValidationError as error:
            if not _drop_item(value, error.errors()[0]["loc"]):
                return None
    return None


def _drop_item(value: Any, loc: tuple[int | str, ...]) -> bool:
    """Drop the list item an error points into (the outermost one on its path): an answer cut
    inside its last fact, however deep (a runaway ``sources`` list), loses that fact."""
    node: Any = value
    for part in loc:
        if isinstance(part, int) and isinstance(node, list) and part < len(node):
            del node[part]
            return True
        try:
            node = node[part]  # a str part into a list, or into a str, is a TypeError
        except (KeyError, IndexError, TypeError):
            return False
    return False


def _empty_lists_after_the_cut(value: dict[str, object], schema: type[pydantic.BaseModel]) -> None:
    # Lists the answer never reached hold nothing yet (a summary cut before its facts).
    for name, field in schema.model_fields.items():
        if name not in value and typing.get_origin(field.annotation) is list:
            value[name] = []


_SENTENCE_END = re.compile(r"[.!?](?=\s|$)")


def _whole_sentences(value: object) -> None:
    """Cut the string the answer ended in back to its last whole sentence (or drop it)."""
    parent: Any = None
    key: Any = None
    node: Any = value
    while isinstance(node, (dict, list)) and node:
        parent, key = node, (len(node) - 1 if isinstance(node, list) else next(reversed(node)))
        node = node[key]
    if not isinstance(node, str) or parent is None:
        return
    ends = [m.end() for m in _SENTENCE_END.finditer(node)]
    if ends:
        parent[key] = node[: ends[-1]]
    else:
        del parent[key]


def _repair(error: LLMOutputError) -> dict[str, str]:
    return {
        "role": "user",
        "content": f"That answer was not valid ({error.detail['reason']}). "
        "Answer again with only the JSON object.",
    }
