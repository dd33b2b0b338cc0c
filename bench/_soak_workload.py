"""The soak benchmark's seeded workload: what is preloaded, and what an agent asks and writes.

Every process (the preloader, each client) rebuilds the same world from the
seed, so nothing but the seed, the sizes and the data path crosses a process
boundary. Vectors are clustered 384-d unit vectors (``_vectors``), supplied by
the clients (the server runs ``--embedder none``); texts are made-up words from a
Zipf vocabulary, or LoCoMo turns and questions when ``--data`` names them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from _vectors import DEFAULT_CENTRES, DEFAULT_DIM, DEFAULT_SPREAD, clustered_unit_vectors
from _vectors import random_texts as vocabulary_texts

K = 10
TOPICS = 20  # metadata "topic" takes 20 values: one value matches 5% of the memories
TIERS = ("working", "long_term", "core")
SEARCHED_TIERS = ["working", "long_term"]  # the tier list a filtered recall names
# One write for every two or three recalls, the recalls of every mode and filter.
KINDS = ("write", "vector", "keyword", "hybrid", "filtered", "filtered_hybrid")
WEIGHTS = (0.30, 0.20, 0.10, 0.15, 0.15, 0.10)
RATIO_KINDS = ("vector", "hybrid", "filtered")  # the target: last window p50 <= 1.2x first


@dataclass
class World:
    """The seeded space every process shares: cluster centres and the texts to draw from."""

    seed: int
    centres: np.ndarray
    corpus: list[str] | None  # LoCoMo turns, or None for generated texts
    questions: list[str] | None

    def vectors(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` unit vectors around the shared centres."""
        return clustered_unit_vectors(rng, self.centres, n, DEFAULT_SPREAD)

    def texts(self, rng: np.random.Generator, n: int) -> list[str]:
        """``n`` memory texts: LoCoMo turns drawn at random, or 6-16 made-up words."""
        if self.corpus is None:
            return vocabulary_texts(rng, n, 6, 16)
        return [self.corpus[i] for i in rng.integers(0, len(self.corpus), size=n)]

    def query(self, rng: np.random.Generator) -> str:
        """One query text: a LoCoMo question, or 2-4 words of the same vocabulary."""
        if self.questions is None:
            return vocabulary_texts(rng, 1, 2, 4)[0]
        return self.questions[int(rng.integers(0, len(self.questions)))]


def make_world(seed: int, data: str | None = None) -> World:
    """The world of ``seed``; with ``data``, texts and queries come from LoCoMo."""
    rng = np.random.default_rng([seed, 0])
    centres = rng.normal(0.0, 1.0, size=(DEFAULT_CENTRES, DEFAULT_DIM))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    corpus, questions = _locomo(data) if data else (None, None)
    return World(seed, centres, corpus, questions)


def _locomo(data: str) -> tuple[list[str], list[str]]:
    import json

    from aios_memory.client.importers import read_locomo

    files = sorted(Path(data).glob("*.json"))
    if not files:
        raise SystemExit(f"no LoCoMo *.json files in {data}")
    turns = [turn.text for path in files for turn in read_locomo(path)]
    questions = [
        str(qa["question"])
        for path in files
        for qa in json.loads(path.read_text(encoding="utf-8")).get("qa", [])
    ]
    return turns, questions


def preload_batches(
    world: World, total: int, batch: int, part: int = 0, parts: int = 1
) -> Iterator[dict[str, Any]]:
    """``remember`` keyword arguments for the preload, ``batch`` memories per call.

    Tier and privacy are one per call (``remember`` takes one of each), so they
    rotate across batches: every tier and privacy level gets its share. With
    ``parts`` writers, writer ``part`` gets every ``parts``-th batch.
    """
    for number, first in enumerate(range(0, total, batch)):
        if number % parts != part:
            continue
        count = min(batch, total - first)
        rng = np.random.default_rng([world.seed, 1, number])
        topics = rng.integers(0, TOPICS, size=count)
        yield {
            "texts": world.texts(rng, count),
            "embeddings": world.vectors(rng, count),
            "metadata": [{"topic": f"t{t}", "session": number} for t in topics],
            "tier": TIERS[number % len(TIERS)],
            "privacy": (number // len(TIERS)) % 2,
        }


Operation = Callable[[Any], Any]


def operations(world: World, client_number: int, count: int) -> Iterator[tuple[str, Operation]]:
    """The seeded sequence of one client: (kind, a call taking the ``MemoryClient``)."""
    rng = np.random.default_rng([world.seed, 2, client_number])
    kinds = rng.choice(len(KINDS), size=count, p=WEIGHTS)
    for number, kind in enumerate(kinds):
        name = KINDS[int(kind)]
        yield name, _operation(world, rng, name, client_number * 1_000_000 + number)


def _operation(world: World, rng: np.random.Generator, kind: str, number: int) -> Operation:
    vector = world.vectors(rng, 1)[0]
    topic = f"t{int(rng.integers(0, TOPICS))}"
    if kind == "write":
        text = world.texts(rng, 1)[0]
        meta = {"topic": topic, "session": f"soak-{number // 1000}", "turn": number}
        tier, privacy = TIERS[number % len(TIERS)], number % 2
        return lambda c: c.remember(
            text, embeddings=[vector], metadata=meta, tier=tier, privacy=privacy
        )
    query = world.query(rng)
    if kind == "vector":
        return lambda c: c.recall(embedding=vector, k=K, mode="vector")
    if kind == "keyword":
        return lambda c: c.recall(query, k=K, mode="keyword")
    if kind == "hybrid":
        return lambda c: c.recall(query, embedding=vector, k=K, mode="hybrid")
    if kind == "filtered":
        where = {"topic": topic, "privacy": {"$lte": 0}}
        return lambda c: c.recall(
            embedding=vector, k=K, mode="vector", tier=SEARCHED_TIERS, where=where
        )
    other = f"t{(int(topic[1:]) + 1) % TOPICS}"
    where_any = {"topic": {"$in": [topic, other]}}
    return lambda c: c.recall(
        query, embedding=vector, k=K, mode="hybrid", tier=SEARCHED_TIERS, where=where_any
    )
