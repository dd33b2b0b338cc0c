"""DuckDB ``fts`` BM25, run in a separate interpreter that has duckdb 1.5.5 + its offline extension.

duckdb 2.0 (the project's venv) downloads extensions; ``duckdb==1.5.5`` with
``duckdb-extensions`` and ``duckdb-extension-fts==1.5.5`` loads ``fts`` offline,
so ``keyword_engines.py`` runs this file with ``--duckdb-python``. Stdlib and
duckdb only. Reads ``{"k": int, "conversations": [{"texts": [...], "queries": [...]}]}``
on stdin; writes ``{"duckdb": version, "results": [{"build_s", "query_s", "ranked"}]}``.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import duckdb
from duckdb_extensions import import_extension

_QUERY = (
    "SELECT row, score FROM (SELECT row, fts_main_turns.match_bm25(row, ?) AS score "
    "FROM turns) WHERE score IS NOT NULL ORDER BY score DESC LIMIT ?"
)


def connect(path: Path) -> duckdb.DuckDBPyConnection:
    """A connection to a database file with ``fts`` loaded from the local wheel."""
    con = duckdb.connect(
        str(path),
        config={
            "extension_directory": str(path.parent / "ext"),
            "autoinstall_known_extensions": False,
        },
    )
    import_extension("fts", con=con)
    con.sql("LOAD fts")
    return con


def build(con: duckdb.DuckDBPyConnection, texts: list[str]) -> float:
    """Insert the turns and build the FTS index (porter stemmer, English stopwords)."""
    start = time.perf_counter()
    con.execute("CREATE TABLE turns(row INTEGER, body VARCHAR)")
    con.executemany("INSERT INTO turns VALUES (?, ?)", list(enumerate(texts)))
    con.execute("PRAGMA create_fts_index('turns', 'row', 'body', overwrite=1)")
    con.execute("CHECKPOINT")
    return time.perf_counter() - start


def run_one(conversation: dict, k: int, folder: Path) -> dict:
    """Build one conversation's index in a fresh database file and run its queries."""
    con = connect(folder / "turns.duckdb")
    build_s = build(con, conversation["texts"])
    query_s, ranked = [], []
    for query in conversation["queries"]:
        start = time.perf_counter()
        rows = con.execute(_QUERY, [query, k]).fetchall()
        query_s.append(time.perf_counter() - start)
        ranked.append([row for row, _ in rows])
    con.close()
    return {"build_s": build_s, "query_s": query_s, "ranked": ranked}


def stopwords() -> list[str]:
    """The English stopword list ``create_fts_index`` uses by default (571 words, SMART)."""
    with tempfile.TemporaryDirectory(prefix="duckfts-") as folder:
        con = connect(Path(folder) / "stop.duckdb")
        build(con, ["x"])
        rows = con.execute("SELECT sw FROM fts_main_turns.stopwords").fetchall()
        words = [row[0] for row in rows]
        con.close()
    return words


def main() -> None:
    """Read the job on stdin, write the results on stdout (``--stopwords``: the list only)."""
    if sys.argv[1:] == ["--stopwords"]:
        json.dump(stopwords(), sys.stdout)
        return
    job = json.load(sys.stdin)
    results = []
    for conversation in job["conversations"]:
        with tempfile.TemporaryDirectory(prefix="duckfts-") as folder:
            results.append(run_one(conversation, job["k"], Path(folder)))
    json.dump({"duckdb": duckdb.__version__, "results": results}, sys.stdout)


if __name__ == "__main__":
    main()
