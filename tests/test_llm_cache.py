"""The answer cache (``AIMEM_LLM_CACHE``) against a real endpoint: llama-cpp-python's server on
loopback. A replay must give the same answer without a model call, a new request must reach
the model, and a file cut by a crash must still be read and appended to."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pydantic
import pytest
from support.llm_server import free_port

from aios_memory.client.llm import CachedChat, LLMSettings, open_llm
from aios_memory.schemas import InvalidValueError, LLMUnavailableError

QUESTION = [{"role": "user", "content": "Ada is 36 years old. Give her name and age."}]


class Person(pydantic.BaseModel):
    name: str
    age: int


def cached(llm_server: Any, path: Path, **settings: Any) -> Any:
    options = {"url": llm_server.url, "model": llm_server.model, "cache": str(path)}
    return open_llm(LLMSettings(**{**options, **settings}))


def down(llm_server: Any, path: Path) -> Any:
    """The same model name behind a port where nothing listens: only the cache can answer."""
    url = f"http://127.0.0.1:{free_port()}/v1"
    return open_llm(LLMSettings(url=url, model=llm_server.model, cache=str(path), retries=0))


def test_a_replayed_answer_is_the_same_and_costs_no_call(llm_server: Any, tmp_path: Path) -> None:
    path = tmp_path / "answers.jsonl"
    first = cached(llm_server, path)
    assert isinstance(first, CachedChat)
    person = first.chat_json(QUESTION, Person, max_tokens=48)
    text = first.chat_text(QUESTION, max_tokens=12)
    assert (first.usage.calls, first.usage.cached) == (2, 0)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(lines) == 2 and all(line["model"] == llm_server.model for line in lines)
    assert lines[0]["completion_tokens"] > 0 and lines[0]["seconds"] > 0 and lines[0]["at"]

    again = down(llm_server, path)
    assert again.chat_json(QUESTION, Person, max_tokens=48) == person
    assert again.chat_text(QUESTION, max_tokens=12) == text
    assert (again.usage.calls, again.usage.cached, again.usage.prompt_tokens) == (0, 2, 0)
    assert len(path.read_text().splitlines()) == 2  # nothing new to keep


def test_another_request_goes_to_the_model(llm_server: Any, tmp_path: Path) -> None:
    path = tmp_path / "answers.jsonl"
    cached(llm_server, path).chat_text(QUESTION, max_tokens=12)
    model = down(llm_server, path)
    with pytest.raises(LLMUnavailableError):
        model.chat_text(QUESTION, max_tokens=13)  # another max_tokens: another answer
    with pytest.raises(LLMUnavailableError):
        model.chat_json(QUESTION, Person, max_tokens=12)  # another kind of request
    assert len(path.read_text().splitlines()) == 1  # a failed request keeps nothing


def test_a_line_cut_by_a_crash_is_skipped_and_the_file_goes_on(
    llm_server: Any, tmp_path: Path
) -> None:
    path = tmp_path / "answers.jsonl"
    cached(llm_server, path).chat_text(QUESTION, max_tokens=12)
    with open(path, "a") as file:
        file.write('{"key": "abc", "answer": "cut he')  # no end, no newline
    model = cached(llm_server, path)
    assert model.chat_text(QUESTION, max_tokens=12)  # the whole line before is still read
    assert model.usage.cached == 1
    model.chat_text(QUESTION, max_tokens=10)  # a new answer, on a line of its own
    lines = path.read_text().splitlines()
    newest = json.loads(lines[2])["answer"]
    assert len(lines) == 3 and newest
    assert down(llm_server, path).chat_text(QUESTION, max_tokens=10) == newest


def test_a_cache_needs_temperature_zero_and_reads_the_environment(tmp_path: Path) -> None:
    with pytest.raises(InvalidValueError, match="temperature 0"):
        LLMSettings(cache=str(tmp_path / "a.jsonl"), temperature=0.7)
    env = {"AIMEM_LLM_CACHE": str(tmp_path / "a.jsonl"), "AIMEM_LLM_URL": "http://127.0.0.1:9/v1"}
    assert LLMSettings.from_env(env).cache == str(tmp_path / "a.jsonl")
