"""The ``aimem`` CLI end to end against a real server (conftest: embedder off, port 0)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner, Result

from aios_memory.client import MemoryClient
from aios_memory.client.cli import main


@pytest.fixture
def aimem(server: Any) -> Any:
    """Run ``aimem ARGS`` against the test server; assert the exit code; return the result."""

    def run(*args: str, code: int = 0, input: str | None = None, **env: str) -> Result:
        full = [*args, "--server", server.uri, "--token", server.token]
        result = CliRunner().invoke(main, full, input=input, env=env or None)
        assert result.exit_code == code, result.output
        return result

    return run


def _json(result: Result) -> Any:
    return json.loads(result.stdout)


def test_remember_get_recall_forget(aimem: Any) -> None:
    ids = _json(
        aimem(
            "remember",
            "Ada prefers green tea",
            "Bob likes coffee",
            "--tier",
            "core",
            "--metadata",
            '{"topic": "food"}',
            "--session",
            "s1",
            "--privacy",
            "2",
            "--json",
        )
    )["ids"]
    assert len(ids) == 2
    got = _json(aimem("get", ids[1], ids[0], "--json"))
    assert [m["text"] for m in got] == ["Bob likes coffee", "Ada prefers green tea"]
    assert got[0]["metadata"] == {"topic": "food"} and got[0]["tier"] == "core"
    assert got[0]["session"] == "s1" and got[0]["privacy"] == 2
    hits = _json(aimem("recall", "tea", "--mode", "keyword", "-k", "5", "--json"))
    assert [h["id"] for h in hits] == [ids[0]] and hits[0]["score"] > 0
    assert _json(aimem("forget", ids[0], "--json")) == {"forgotten": 1}
    assert _json(aimem("recall", "tea", "--mode", "keyword", "--json")) == []
    assert _json(aimem("get", ids[0], "--json")) == []


def test_plain_output_is_readable(aimem: Any) -> None:
    [memory_id] = aimem("remember", "Ada prefers green tea").stdout.split()
    table = aimem("recall", "tea", "--mode", "keyword").stdout
    assert "score" in table and memory_id in table and "Ada prefers green tea" in table
    assert memory_id in aimem("get", memory_id).stdout
    assert aimem("forget", memory_id).stdout.strip() == "forgot 1 memory"
    assert aimem("recall", "tea", "--mode", "keyword").stdout.strip() == "(none)"


def test_recall_filters(aimem: Any) -> None:
    aimem("remember", "tea in the core", "--tier", "core", "--metadata", '{"topic": "food"}')
    aimem("remember", "tea at work", "--metadata", '{"topic": "work"}')

    def texts(*args: str) -> set[str]:
        return {
            h["text"] for h in _json(aimem("recall", "tea", "--mode", "keyword", "--json", *args))
        }

    assert texts("--tier", "core") == {"tea in the core"}
    assert texts("--tier", "core", "--tier", "working") == {"tea in the core", "tea at work"}
    assert texts("--where", '{"topic": "work"}') == {"tea at work"}


def test_remember_reads_stdin(aimem: Any) -> None:
    ids = _json(aimem("remember", "-", "--json", input="first line\n\nsecond line\n"))["ids"]
    got = _json(aimem("get", *ids, "--json"))
    assert [m["text"] for m in got] == ["first line", "second line"]


def test_tiers_and_stats(aimem: Any) -> None:
    aimem("remember", "a", "b", "--tier", "long_term")
    tiers = {t["tier"]: t["memories"] for t in _json(aimem("tiers", "--json"))}
    assert tiers == {"core": 0, "working": 0, "long_term": 2, "shared": 0}
    assert "long_term" in aimem("tiers").stdout
    stats = _json(aimem("stats", "--json"))
    assert stats["memories"] == 2 and stats["tiers"]["long_term"]["memories"] == 2
    assert "memories" in aimem("stats").stdout


def test_import_jsonl(aimem: Any, tmp_path: Path) -> None:
    path = tmp_path / "notes.jsonl"
    lines = [
        {"text": "Ada prefers green tea", "metadata": {"n": 1}},
        {"text": "Bob likes coffee", "tier": "core", "session": "s9"},
        {"text": "Cleo reads poetry", "privacy": 3},
    ]
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n")
    result = aimem("import", str(path), "--tier", "long_term", "--batch-size", "2", "--json")
    assert _json(result)["imported"] == 3
    tiers = {t["tier"]: t["memories"] for t in _json(aimem("tiers", "--json"))}
    assert (tiers["long_term"], tiers["core"]) == (2, 1)
    [hit] = _json(aimem("recall", "coffee", "--mode", "keyword", "--json"))
    assert hit["session"] == "s9" and hit["tier"] == "core"


def test_import_jsonl_with_embeddings(aimem: Any, server: Any, tmp_path: Path) -> None:
    path = tmp_path / "vectors.jsonl"
    lines = [
        {"text": "north", "embedding": [0.0, 1.0, 0.0]},
        {"text": "east", "embedding": [2, 0, 0]},
    ]
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    assert _json(aimem("import", str(path), "--json"))["imported"] == 2
    with MemoryClient(server.uri, server.token) as client:
        [hit] = client.recall(embedding=[1.0, 0.1, 0.0], k=1, mode="vector")
    assert hit.text == "east" and hit.score > 0.9


@pytest.mark.parametrize(
    ("embedding", "reason"),
    [
        ("[1, NaN]", "NaN or inf"),
        ('"0.1, 0.2"', "not a list of numbers"),
        ("[[1, 2]]", "1-D"),
        ("[0, 0]", "no direction"),
        ("[]", "1-D"),
    ],
)
def test_import_refuses_a_bad_embedding_naming_its_line(
    aimem: Any, tmp_path: Path, embedding: str, reason: str
) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(f'{{"text": "fine"}}\n{{"text": "bad", "embedding": {embedding}}}\n')
    result = aimem("import", str(path), code=1)
    assert "bad.jsonl:2: the embedding" in result.stderr and reason in result.stderr
    assert "Traceback" not in result.output
    assert _json(aimem("stats", "--json"))["memories"] == 0


def test_import_locomo(aimem: Any, tmp_path: Path) -> None:
    conversation = {
        "speaker_a": "Caroline",
        "speaker_b": "Melanie",
        "session_1_date_time": "1:56 pm on 8 May, 2023",
        "session_1": [
            {"speaker": "Caroline", "dia_id": "D1:1", "text": "I went to a support group."},
            {
                "speaker": "Melanie",
                "dia_id": "D1:2",
                "text": "That sounds brave!",
                "blip_caption": "a photo of a sunset",
            },
        ],
        "session_2_date_time": "2:00 pm on 9 May, 2023",
        "session_2": [{"speaker": "Caroline", "dia_id": "D2:1", "text": "Painting helps me."}],
    }
    path = tmp_path / "conv-1.json"
    path.write_text(json.dumps(conversation))
    result = aimem("import", str(path), "--json")
    assert _json(result) == {"imported": 3, "file": str(path)}
    [hit] = _json(aimem("recall", "sunset", "--mode", "keyword", "--json"))
    assert hit["text"].startswith("Melanie: That sounds brave!")
    assert hit["metadata"]["dia_id"] == "D1:2" and hit["session"] == "conv-1/session_1"
    assert hit["agent"] == "Melanie" and hit["tier"] == "working"


def test_import_checks_the_whole_file_first(aimem: Any, tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "fine"}\n{"txt": "typo"}\n')
    result = aimem("import", str(path), code=1)
    assert "bad.jsonl:2" in result.stderr and "Traceback" not in result.output
    assert _json(aimem("stats", "--json"))["memories"] == 0


def test_export_parquet_streams_with_checksums(aimem: Any, tmp_path: Path) -> None:
    texts = [f"memory {i}" for i in range(50)]
    aimem("remember", *texts, "--tier", "shared")
    aimem("remember", "elsewhere", "--tier", "core")
    out = tmp_path / "shared.parquet"
    assert _json(aimem("export", "--tier", "shared", "--out", str(out), "--json"))["exported"] == 50
    table = pq.read_table(out, page_checksum_verification=True)
    assert sorted(table.column("text").to_pylist()) == sorted(texts)
    assert set(table.column("tier").to_pylist()) == {"shared"}
    assert not (tmp_path / "shared.parquet.partial").exists()
    aimem("export", "--out", str(out))
    assert pq.read_table(out).num_rows == 51


def test_token_file_and_environment(server: Any, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(server.token + "\n")
    runner = CliRunner()
    result = runner.invoke(
        main, ["stats", "--json", "--server", server.uri, "--token-file", str(token_file)]
    )
    assert result.exit_code == 0, result.output
    env = {"AIMEM_SERVER": server.uri, "AIMEM_TOKEN": server.token}
    assert runner.invoke(main, ["tiers"], env=env).exit_code == 0
    result = runner.invoke(main, ["tiers"], env={**env, "AIMEM_TOKEN": "wrong"})
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: ") and "--token" in result.stderr
    assert "Traceback" not in result.output


def test_server_errors_exit_1_with_the_message(aimem: Any) -> None:
    result = aimem("recall", "tea", "--mode", "vector", code=1)
    assert result.stderr.startswith("Error: ") and "embedding" in result.stderr
