"""Which keyword (BM25) engine should the server use? Recall, build time and latency on LoCoMo.

For each LoCoMo conversation, every engine indexes the turns exactly as
``aimem import`` writes them (``read_locomo``), then each question of
categories 1-4 is searched in its own conversation's turns and scored by
recall@5 / recall@10 of its evidence ``dia_id`` s. Engines run side by side,
conversation by conversation, so machine noise falls on all of them alike.

Example (``--data`` is the folder of the LoCoMo dev split; DuckDB fts runs in a venv of
its own, in a folder you name, because it loads offline only with duckdb 1.5.5)::

    python3 -m venv "$FTS_VENV"
    "$FTS_VENV"/bin/pip install duckdb==1.5.5 duckdb-extensions duckdb-extension-fts==1.5.5
    .venv/bin/python bench/keyword_engines.py --data PATH/TO/locomo-dev \\
        --duckdb-python "$FTS_VENV"/bin/python
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    Question,
    base_parser,
    conversation_files,
    data_name,
    emit,
    latency_ms,
    load_questions,
    locomo_turns,
    log,
    summarize_recall,
)

K = 10
_WORKER = Path(__file__).resolve().parent / "_duckdb_fts_worker.py"


SMART_STOPWORDS: list[str] = []  # filled from DuckDB fts when --duckdb-python is given


def stopword_list(name: str) -> list[str] | None:
    """``stop``: Lucene's 33 English words; ``stopplus``: NLTK's 179 (``bm25s``'s "en_plus");
    ``smart``: the 571-word SMART list DuckDB fts uses."""
    from bm25s.stopwords import STOPWORDS_EN, STOPWORDS_EN_PLUS

    lists = {
        "stop": list(STOPWORDS_EN),
        "stopplus": list(STOPWORDS_EN_PLUS),
        "smart": SMART_STOPWORDS,
    }
    return lists.get(name)


def tantivy_analyzer(tokenizer: str) -> Any:
    """The analyzer tantivy registers as ``default`` or ``en_stem``; a name like
    ``en_stem_stopplus`` adds a stopword list (see ``stopword_list``) before stemming."""
    import tantivy as tv

    builder = tv.TextAnalyzerBuilder(tv.Tokenizer.simple()).filter(tv.Filter.remove_long(40))
    builder = builder.filter(tv.Filter.lowercase())
    stopwords = stopword_list(tokenizer.rsplit("_", 1)[-1])
    stem = tokenizer.startswith("en_stem")
    if stopwords:
        builder = builder.filter(tv.Filter.custom_stopword(stopwords))
    if stem:
        builder = builder.filter(tv.Filter.stemmer("english"))
    return builder.build()


class TantivyEngine:
    """A tantivy index on disk; ``query`` is ``lenient`` (the query parser) or ``terms``
    (the query analyzed with the index's analyzer, OR of term queries)."""

    incremental = True
    persistent = True

    def __init__(self, tokenizer: str, query: str, folder: Path) -> None:
        self.tokenizer, self.query, self.folder = tokenizer, query, folder
        self.analyzer = tantivy_analyzer(tokenizer)

    def build(self, texts: list[str]) -> None:
        """Index the texts in a fresh folder and commit."""
        import tantivy as tv

        builder = tv.SchemaBuilder()
        builder.add_text_field("text", stored=False, tokenizer_name=self.tokenizer)
        builder.add_unsigned_field("row", stored=True)
        self.schema = builder.build()
        folder = Path(tempfile.mkdtemp(dir=self.folder))
        self.index = tv.Index(self.schema, path=str(folder))
        if self.tokenizer not in ("default", "en_stem"):
            self.index.register_tokenizer(self.tokenizer, self.analyzer)
        writer = self.index.writer(heap_size=15_000_000, num_threads=1)
        for row, text in enumerate(texts):
            writer.add_document(tv.Document(text=text, row=row))
        writer.commit()
        writer.wait_merging_threads()
        self.index.reload()
        self.searcher = self.index.searcher()

    def search(self, text: str, k: int) -> list[int]:
        """Row numbers of the best ``k`` turns."""
        query = self._parse(text)
        hits = self.searcher.search(query, k).hits
        return [self.searcher.doc(address)["row"][0] for _, address in hits]

    def _parse(self, text: str) -> Any:
        import tantivy as tv

        if self.query == "lenient":
            query, _errors = self.index.parse_query_lenient(text, ["text"])
            return query
        terms = dict.fromkeys(self.analyzer.analyze(text))
        clauses = [
            (tv.Occur.Should, tv.Query.term_query(self.schema, "text", term)) for term in terms
        ]
        return tv.Query.boolean_query(clauses) if clauses else tv.Query.empty_query()


class Bm25sEngine:
    """bm25s (in memory, numpy).

    ``stopwords`` is None, "en" (33 words), "en_plus" (179) or a list; ``stem``
    uses tantivy's English Snowball stemmer word by word (PyStemmer is not installed).
    """

    incremental = False
    persistent = True  # retriever.save(dir) / BM25.load(dir), whole index at once

    def __init__(self, stopwords: str | None, stem: bool) -> None:
        import bm25s

        stemmer = _word_stemmer() if stem else None
        self.tokenizer = bm25s.tokenization.Tokenizer(stopwords=stopwords, stemmer=stemmer)

    def build(self, texts: list[str]) -> None:
        """Tokenize and index the texts (bm25s has no incremental add: this is a full rebuild)."""
        import bm25s

        self.tokenizer.reset_vocab()
        ids = self.tokenizer.tokenize(texts, return_as="ids", show_progress=False)
        self.retriever = bm25s.BM25()
        self.retriever.index((ids, self.tokenizer.get_vocab_dict()), show_progress=False)

    def search(self, text: str, k: int) -> list[int]:
        """Row numbers of the best ``k`` turns (turns that share no term are left out)."""
        tokens = self.tokenizer.tokenize(
            [text], update_vocab=False, return_as="string", show_progress=False
        )[0]
        scores = self.retriever.get_scores(tokens)
        top = np.argsort(-scores, kind="stable")[:k]
        return [int(row) for row in top if scores[row] > 0]


def _word_stemmer() -> Callable[[str], str]:
    import tantivy as tv

    analyzer = (
        tv.TextAnalyzerBuilder(tv.Tokenizer.raw()).filter(tv.Filter.stemmer("english")).build()
    )
    return lambda word: (analyzer.analyze(word) or [word])[0]


def make_engines(folder: Path) -> dict[str, tuple[Any, dict[str, Any]]]:
    """The in-process engines to compare, by name, with the settings each one uses."""
    specs = {
        "tantivy/en_stem/lenient": (TantivyEngine, ("en_stem", "lenient", folder)),
        "tantivy/default/lenient": (TantivyEngine, ("default", "lenient", folder)),
        "tantivy/en_stem/terms": (TantivyEngine, ("en_stem", "terms", folder)),
        "tantivy/default/terms": (TantivyEngine, ("default", "terms", folder)),
        "tantivy/en_stem_stop/terms": (TantivyEngine, ("en_stem_stop", "terms", folder)),
        "tantivy/en_stem_stopplus/terms": (TantivyEngine, ("en_stem_stopplus", "terms", folder)),
        "tantivy/en_stem_stopplus/lenient": (
            TantivyEngine,
            ("en_stem_stopplus", "lenient", folder),
        ),
        "bm25s/default": (Bm25sEngine, (None, False)),
        "bm25s/stopwords_en": (Bm25sEngine, ("en", False)),
        "bm25s/stopwords_en+stem": (Bm25sEngine, ("en", True)),
        "bm25s/stopwords_en_plus+stem": (Bm25sEngine, ("en_plus", True)),
    }
    if SMART_STOPWORDS:
        specs["tantivy/en_stem_smart/terms"] = (TantivyEngine, ("en_stem_smart", "terms", folder))
        specs["bm25s/stopwords_smart+stem"] = (Bm25sEngine, (SMART_STOPWORDS, True))
    return {
        name: (cls(*args), {"engine_args": [_short(a) for a in args]})
        for name, (cls, args) in specs.items()
    }


def _short(arg: Any) -> str:
    # The index folder is a temporary one: record that, not this machine's path to it.
    if isinstance(arg, Path):
        return "<temp folder>"
    return f"<{len(arg)} stopwords>" if isinstance(arg, list) else str(arg)


def load_smart_stopwords(python: str) -> None:
    """Fetch DuckDB fts's default stopword list, to try it with the other engines."""
    done = subprocess.run(
        [python, str(_WORKER), "--stopwords"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tempfile.gettempdir(),
    )
    SMART_STOPWORDS[:] = json.loads(done.stdout)


def run_engine(
    engine: Any, texts: list[str], dia_ids: list[str], questions: list[Question]
) -> dict[str, Any]:
    """Build one conversation's index and run its questions; timings and found dia_ids."""
    start = time.perf_counter()
    engine.build(texts)
    build_s = time.perf_counter() - start
    query_s, rows = [], []
    for question in questions:
        start = time.perf_counter()
        found = engine.search(question.text, K)
        query_s.append(time.perf_counter() - start)
        rows.append((question, [dia_ids[r] for r in found]))
    return {"build_s": build_s, "query_s": query_s, "rows": rows}


def load_conversation(path: Path) -> tuple[list[str], list[str], list[Question]]:
    """Turn texts, their dia_ids and the questions of categories 1-4."""
    items = locomo_turns(path)
    dia_ids = [item.metadata["dia_id"] for item in items]
    return [item.text for item in items], dia_ids, load_questions(path, set(dia_ids))


def run_duckdb(
    python: str, conversations: list[tuple[list[str], list[str], list[Question]]]
) -> tuple[str, list[dict[str, Any]]]:
    """DuckDB fts in its own interpreter (see ``_duckdb_fts_worker.py``)."""
    job = {
        "k": K,
        "conversations": [
            {"texts": t, "queries": [q.text for q in qs]} for t, _, qs in conversations
        ],
    }
    done = subprocess.run(
        [python, str(_WORKER)],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        check=True,
        cwd=tempfile.gettempdir(),
    )
    answer = json.loads(done.stdout)
    outs = []
    for (_, dia_ids, questions), result in zip(conversations, answer["results"], strict=False):
        ranked_lists = result["ranked"]
        rows = [
            (q, [dia_ids[r] for r in ranked])
            for q, ranked in zip(questions, ranked_lists, strict=False)
        ]
        outs.append({"build_s": result["build_s"], "query_s": result["query_s"], "rows": rows})
    return answer["duckdb"], outs


def report(name: str, outs: list[dict[str, Any]], params: dict[str, Any], **notes: Any) -> None:
    """One JSON line for an engine: recall, build time and query latency."""
    rows = [row for out in outs for row in out["rows"]]
    query_s = [s for out in outs for s in out["query_s"]]
    build_ms = [out["build_s"] * 1000 for out in outs]
    emit(
        "keyword_engines",
        {**params, "engine": name, "k": K},
        engine=name,
        **summarize_recall(rows),
        build_ms_total=round(sum(build_ms), 2),
        build_ms_per_conversation=round(float(np.mean(build_ms)), 2),
        query=latency_ms(query_s),
        **notes,
    )


def main() -> None:
    """Compare the engines on every conversation in ``--data``."""
    parser = base_parser(__doc__.split("\n")[0], data=True)
    parser.add_argument(
        "--duckdb-python",
        default="",
        help="python of a venv with duckdb==1.5.5, duckdb-extensions and "
        "duckdb-extension-fts==1.5.5 (empty: skip DuckDB fts)",
    )
    args = parser.parse_args()
    if args.duckdb_python:
        load_smart_stopwords(args.duckdb_python)
    files = conversation_files(args.data)
    conversations = [load_conversation(path) for path in files]
    turns = sum(len(t) for t, _, _ in conversations)
    params = {
        "data": data_name(args.data),
        "conversations": [p.stem for p in files],
        "turns": turns,
        "categories": [1, 2, 3, 4],
    }
    log(
        f"{len(files)} conversations, {turns} turns, "
        f"{sum(len(q) for _, _, q in conversations)} questions"
    )
    with tempfile.TemporaryDirectory(prefix="kw-bench-") as folder:
        engines = make_engines(Path(folder))
        outs: dict[str, list[dict[str, Any]]] = {name: [] for name in engines}
        for texts, dia_ids, questions in conversations:
            for name, (engine, _) in engines.items():
                outs[name].append(run_engine(engine, texts, dia_ids, questions))
            log(f"  conversation done ({len(texts)} turns)")
        for name, (engine, settings) in engines.items():
            report(
                name,
                outs[name],
                {**params, **settings},
                incremental=engine.incremental,
                persistent=engine.persistent,
            )
    if args.duckdb_python:
        version, duck = run_duckdb(args.duckdb_python, conversations)
        report(
            "duckdb_fts/porter_stop",
            duck,
            {**params, "duckdb_fts_version": version},
            incremental=False,
            persistent=True,
            note="separate interpreter; index is rebuilt by PRAGMA create_fts_index "
            "(no incremental add); query is SQL match_bm25 over the table",
        )
    else:
        emit(
            "keyword_engines",
            {**params, "engine": "duckdb_fts"},
            engine="duckdb_fts",
            skipped="no --duckdb-python given",
        )


if __name__ == "__main__":
    main()
