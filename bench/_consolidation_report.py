"""What ``consolidation.py`` reports: per-store recall, consolidation cost, QA, the issue's
targets, and the curve (compression against answer recall@10) as a PNG."""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _consolidation_scoring import answer_found, by_category, evidence_found, hit_dia_ids

K = 10
TARGET_ZSTD_X = 30.0
TARGET_LM_X = 100.0
TARGET_KEPT = 0.90
TARGET_SESSION_S = 30.0
COST_FIELDS = ("seconds", "prompt_tokens", "completion_tokens")


def recall_scores(
    questions: Sequence[Any], found: Sequence[Sequence[Any]], dia_of: dict[str, str]
) -> dict[str, Any]:
    """Answer and evidence recall@10 of one store, overall and per category."""
    categories = [q.category for q in questions]
    answers = [
        float(answer_found(q.answer, [r.text for r in hits[:K]]))
        for q, hits in zip(questions, found, strict=True)
    ]
    evidence = [
        evidence_found(q.evidence, [hit_dia_ids(r.kind, r.metadata, dia_of) for r in hits[:K]])
        for q, hits in zip(questions, found, strict=True)
    ]
    return {
        "answer": by_category(categories, answers, f"answer_recall@{K}"),
        "evidence": by_category(categories, evidence, f"evidence_recall@{K}"),
    }


def cost(report: dict[str, Any]) -> dict[str, Any]:
    """Seconds and tokens per consolidated session from the report's ``per_session``."""
    done = [r for r in report.get("per_session") or [] if r.get("status") == "consolidated"]
    # A session replayed from the answer cache with no record of the run that paid for it
    # cost nothing here: its seconds would flatter the figures, so it is left out of them.
    rows = [r for r in done if not r.get("cached")]
    seconds = [float(r["seconds"]) for r in rows]

    def spread(values: list[float]) -> dict[str, float] | None:
        if not values:
            return None
        return {
            "mean": round(statistics.fmean(values), 2),
            "p50": round(statistics.median(values), 2),
            "max": round(max(values), 2),
        }

    return {
        "sessions": len(rows),
        "replayed_without_cost": len(done) - len(rows),
        "seconds_per_session": spread(seconds),
        "sessions_over_30s": sum(s > TARGET_SESSION_S for s in seconds),
        "prompt_tokens_per_session": spread([float(r["prompt_tokens"]) for r in rows]),
        "completion_tokens_per_session": spread([float(r["completion_tokens"]) for r in rows]),
        "facts_per_session": spread([float(r["facts"]) for r in rows]),
        "dropped_per_session": spread([float(_count(r["dropped"])) for r in rows]),
    }


def merged(earlier: dict[str, dict[str, Any]], report: dict[str, Any]) -> dict[str, Any]:
    """One report over several runs of ``aimem consolidate`` on one store (a resumed bench).

    ``earlier`` is each session's last outcome that did something (updated in place); a
    session this run found unchanged keeps it, so cost and facts count every session once.
    An outcome replayed from the answer cache (``cached``) takes its cost (seconds, tokens)
    from the one that paid for the same answer, and the rest (facts kept and dropped, by the
    code that ran last) from itself.
    """
    for outcome in report.get("per_session") or []:
        kept = earlier.get(outcome["session"])
        if outcome["status"] == "unchanged" and kept is not None:
            continue
        if kept is not None and _paid(kept) and _replayed(outcome):
            outcome = {**outcome, **{k: kept[k] for k in COST_FIELDS}, "cached": 0}
        earlier[outcome["session"]] = outcome
    rows = list(earlier.values())
    done = [r for r in rows if r["status"] in ("consolidated", "unchanged")]
    dropped: Counter[str] = Counter()
    for r in rows:
        dropped.update(r.get("dropped") or {})
    return {
        **{k: v for k, v in report.items() if k not in ("per_session", "failed")},
        "sessions": len(rows),
        "consolidated": len(done),
        "failed": [
            {"session": r["session"], "error": r["error"], "code": r["code"]}
            for r in rows
            if r["status"] == "failed"
        ],
        "facts": sum(r.get("facts", 0) for r in done),
        "facts_dropped": sum(dropped.values()),
        "dropped_by_reason": dict(dropped),
        "summary_tokens_cut": sum(r.get("summary_cut", 0) for r in done),
        "seconds": round(sum(float(r.get("seconds", 0)) for r in rows), 1),
        "prompt_tokens": sum(r.get("prompt_tokens", 0) for r in rows),
        "completion_tokens": sum(r.get("completion_tokens", 0) for r in rows),
        "per_session": rows,
    }


def _paid(outcome: dict[str, Any]) -> bool:
    """An outcome whose answer came from the model (its cost is real)."""
    return outcome["status"] == "consolidated" and not outcome.get("cached")


def _replayed(outcome: dict[str, Any]) -> bool:
    """An outcome whose answer came from the answer cache (it cost nothing here)."""
    return outcome["status"] == "consolidated" and bool(outcome.get("cached"))


def _count(dropped: Any) -> int:
    # The report counts dropped facts by reason ({"unsupported_number": 2, ...}).
    return sum(dropped.values()) if isinstance(dropped, dict) else int(dropped or 0)


def qa_scores(rows: Sequence[dict[str, Any]], gold_f1: Any) -> dict[str, Any]:
    """Token F1 and the judge's share correct, overall and per category."""
    categories = [r["category"] for r in rows]
    f1 = by_category(categories, [gold_f1(r["answer"], r["gold"]) for r in rows], "f1")
    judge = by_category(categories, [float(r["correct"]) for r in rows], "judge_correct")
    return {"f1": f1, "judge": judge}


def targets(raw: dict[str, Any], points: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's targets, one verdict per budget, with the figures they rest on."""
    raw_answer = raw["answer"][f"answer_recall@{K}"] or 0.0
    raw_evidence = raw["evidence"][f"evidence_recall@{K}"] or 0.0
    out = []
    for p in points:
        kept = (p["consolidated_answer"] or 0.0) / raw_answer if raw_answer else None
        out.append(
            {
                "budget": p["budget"],
                "zstd_dict_x": p["zstd_x"],
                "zstd_dict_x_ok": (p["zstd_x"] or 0) >= TARGET_ZSTD_X,
                "lm_x": p["lm_x"],
                "lm_x_ok": (p["lm_x"] or 0) >= TARGET_LM_X,
                "answer_recall_kept": round(kept, 4) if kept is not None else None,
                "answer_recall_kept_ok": kept is not None and kept >= TARGET_KEPT,
                "both_answer_above_raw": (p["both_answer"] or 0) > raw_answer,
                "both_evidence_above_raw": (p["both_evidence"] or 0) > raw_evidence,
                "session_max_s": p["session_max_s"],
                "session_under_30s": p["session_max_s"] is not None
                and p["session_max_s"] < TARGET_SESSION_S,
            }
        )
    return out


def plot(path: Path, raw_answer: float | None, points: Sequence[dict[str, Any]]) -> Path:
    """Compression (x, log) against answer recall@10 (y): one point per budget and codec, the
    raw store's recall as a line and 90% of it dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for codec, key, marker in (("zstd-dict", "zstd_x", "o"), ("lm", "lm_x", "s")):
        shown = [p for p in points if p[key]]
        ax.plot(
            [p[key] for p in shown],
            [p["consolidated_answer"] for p in shown],
            marker=marker,
            label=f"consolidated only, {codec}",
        )
        for p in shown:
            ax.annotate(f"{p['budget']} tok", (p[key], p["consolidated_answer"]), fontsize=8)
    if raw_answer is not None:
        ax.axhline(raw_answer, color="black", label="raw turns")
        ax.axhline(raw_answer * TARGET_KEPT, color="black", linestyle="--", label="90% of raw")
    ax.axvline(TARGET_ZSTD_X, color="grey", linestyle=":", label="30x / 100x targets")
    ax.axvline(TARGET_LM_X, color="grey", linestyle=":")
    ax.set_xscale("log")
    ax.set_xlabel("compression: raw turn bytes / stored bytes of summaries + facts")
    ax.set_ylabel(f"answer recall@{K}")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    ax.set_title("LoCoMo: consolidation's trade-off, per summary budget")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
