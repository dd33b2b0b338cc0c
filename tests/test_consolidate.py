"""Consolidation through a real model: llama.cpp's OpenAI-compatible server on loopback.

The server runs SmolLM2-135M (the smallest model any package ships): too small to
summarize well, which is the point here: these tests hold the mechanics (one put a
session, idempotence, failures that stay alone, demotion only after a commit, the
private-session rule, the CLI) whatever the model writes. What the default model
writes is measured in bench/consolidation.py.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from support.llm_server import free_port

from aios_memory.client import MemoryClient
from aios_memory.client.codec.keys import KeyStore
from aios_memory.client.llm import LLMSettings, open_llm
from aios_memory.schemas import (
    CODEC_LM,
    FACT_KIND,
    OCCURRED_AT_KEY,
    SOURCES_KEY,
    SUMMARY_KIND,
)

MAY = "2023-05-08T13:56:00Z"
SESSION = [
    "Caroline: I went to a LGBTQ support group yesterday and it was so powerful.",
    "Melanie: That's great, Caroline! I painted a lake sunrise last year.",
    "Caroline: I want to work in counseling and mental health.",
]
SMALL = {"summary_tokens": 30, "max_facts": 2}
AIMEM = str(Path(sys.executable).parent / "aimem")  # the console script, as a user runs it


def write(client: MemoryClient, session: str, privacy: int = 1) -> list[str]:
    metadata = {"conversation": "c1", OCCURRED_AT_KEY: MAY}
    return client.remember(SESSION, session=session, metadata=metadata, privacy=privacy)


def model(llm_server: Any, **settings: Any) -> Any:
    options = {"url": llm_server.url, "model": llm_server.model, "timeout_seconds": 120.0}
    return open_llm(LLMSettings(**{**options, **settings}))


def kinds(client: MemoryClient, tier: str = "long_term") -> list[str]:
    return sorted(r["kind"] for b in client.iter_scan(tier) for r in b.to_pylist())


def test_a_session_becomes_a_summary_and_a_second_run_changes_nothing(
    client: MemoryClient, llm_server: Any
) -> None:
    ids = write(client, "c1/s1")
    llm = model(llm_server)
    report = client.consolidate(llm=llm, **SMALL)
    assert (report.count("consolidated"), report.failed) == (1, [])
    (outcome,) = report.outcomes
    assert outcome.prompt_tokens > 0 and outcome.completion_tokens > 0
    (summary,) = [m for m in client.scan("long_term", kind=SUMMARY_KIND).to_pylist()]
    metadata = json.loads(summary["metadata"])
    assert metadata[SOURCES_KEY] == ids
    assert summary["text"].strip()
    facts = client.scan("long_term", kind=FACT_KIND).to_pylist()
    assert len(facts) + sum(outcome.dropped.values()) <= SMALL["max_facts"]
    assert outcome.facts == len(facts)

    calls = llm.usage.calls
    again = client.consolidate(llm=llm, **SMALL)
    assert (again.count("unchanged"), again.count("consolidated")) == (1, 0)
    assert llm.usage.calls == calls  # an unchanged session costs no model call
    assert client.scan("long_term", kind=SUMMARY_KIND).num_rows == 1

    client.remember(
        "Melanie: We go camping next month.", session="c1/s1", metadata={OCCURRED_AT_KEY: MAY}
    )
    third = client.consolidate(llm=llm, **SMALL)
    assert third.count("consolidated") == 1
    (after,) = client.scan("long_term", kind=SUMMARY_KIND).to_pylist()
    assert after["id"] == summary["id"] and len(json.loads(after["metadata"])[SOURCES_KEY]) == 4


def test_should_stop_ends_a_run_between_sessions(client: MemoryClient, llm_server: Any) -> None:
    write(client, "c1/s1")
    write(client, "c1/s2")
    answers = iter([False, True])
    report = client.consolidate(llm=model(llm_server), should_stop=lambda: next(answers), **SMALL)
    assert (report.count("consolidated"), report.stopped) == (1, True)
    assert report.to_dict()["stopped"] is True
    rest = client.consolidate(llm=model(llm_server), **SMALL)  # the next run takes the rest
    assert (rest.count("consolidated"), rest.count("unchanged"), rest.stopped) == (1, 1, False)


def test_a_dry_run_writes_nothing_and_calls_no_model(client: MemoryClient) -> None:
    write(client, "c1/s1")
    write(client, "c1/s2")
    unreachable = open_llm(LLMSettings(url="http://127.0.0.1:9/v1", model="none", retries=0))
    report = client.consolidate(llm=unreachable, dry_run=True)
    assert report.count("pending") == 2 and report.failed == []
    assert unreachable.usage.calls == 0
    assert kinds(client) == []


def test_a_session_whose_model_is_down_fails_alone_and_is_retried(
    client: MemoryClient, llm_server: Any
) -> None:
    write(client, "c1/s1")
    down = open_llm(LLMSettings(url=f"http://127.0.0.1:{closed_port()}/v1", model="m", retries=1))
    report = client.consolidate(llm=down, **SMALL)
    (failed,) = report.failed
    assert (failed.session, failed.code) == ("c1/s1", "LLM_UNAVAILABLE")
    assert kinds(client) == []  # nothing half written

    retried = client.consolidate(llm=model(llm_server), **SMALL)
    assert retried.count("consolidated") == 1
    assert SUMMARY_KIND in kinds(client)


def test_output_that_is_not_the_json_asked_for_fails_the_session(
    client: MemoryClient, llm_server: Any
) -> None:
    write(client, "c1/s1")
    # Unconstrained, a 135M model does not write this schema's JSON: the failure is the
    # model's, reported with its code, and nothing is stored.
    loose = model(llm_server, structured="none", retries=0)
    report = client.consolidate(llm=loose, summary_tokens=20, max_facts=1)
    (failed,) = report.failed
    assert failed.code == "LLM_INVALID_OUTPUT"
    assert kinds(client) == []


def test_a_private_session_never_goes_to_a_remote_model(client: MemoryClient) -> None:
    write(client, "c1/private", privacy=2)
    # Never contacted: the rule holds before any call (192.0.2.0/24 is for documentation).
    remote = open_llm(LLMSettings(url="http://192.0.2.1/v1", model="m", retries=0))
    assert remote.local is False
    report = client.consolidate(llm=remote)
    (failed,) = report.failed
    assert failed.code == "PERMISSION_DENIED" and "local model" in str(failed.error)
    assert remote.usage.calls == 0
    assert kinds(client) == []


def test_sealed_memories_this_device_cannot_open_fail_the_run_with_key_missing(
    client: MemoryClient, server: Any, llm_server: Any, tmp_path: Path
) -> None:
    write(client, "c1/sealed", privacy=3)  # sealed with this test's keys
    write(client, "c1/other", privacy=3)
    owned = client.consolidate(llm=model(llm_server), session="c1/other", **SMALL)
    assert owned.count("consolidated") == 1  # a sealed summary the stranger cannot read either
    before = kinds(client)
    unreachable = open_llm(LLMSettings(url="http://127.0.0.1:9/v1", model="none", retries=0))
    with MemoryClient(server.uri, server.token, keys=KeyStore(tmp_path / "other")) as stranger:
        report = stranger.consolidate(llm=unreachable)
        dry = stranger.consolidate(llm=unreachable, dry_run=True)  # the same answer, not pending
    # Its session is sealed with its text: the run says what it could not read, and fails.
    (failed,) = report.failed
    assert (failed.session, failed.code, failed.turns) == (None, "KEY_MISSING", 6)
    assert "aimem keys import" in str(failed.error)
    assert report.to_dict()["unopened"] == 6 and report.to_dict()["sessions"] == 0
    assert [f.code for f in dry.failed] == ["KEY_MISSING"]
    assert unreachable.usage.calls == 0
    assert kinds(client) == before
    owner = client.consolidate(llm=unreachable, dry_run=True, **SMALL)
    assert (owner.count("pending"), owner.count("unchanged"), owner.failed) == (1, 1, [])


def test_forget_after_demotes_raw_turns_only_once_consolidated(
    client: MemoryClient, llm_server: Any
) -> None:
    ids = write(client, "c1/s1")
    down = open_llm(LLMSettings(url=f"http://127.0.0.1:{closed_port()}/v1", model="m", retries=0))
    client.consolidate(llm=down, demote="forget-after=0d")
    assert len(client.get(ids)) == 3  # not consolidated: nothing demoted

    report = client.consolidate(llm=model(llm_server), demote="forget-after=0d", **SMALL)
    assert report.outcomes[0].demoted == "forgotten"
    assert client.get(ids) == []
    (summary,) = client.scan("long_term", kind=SUMMARY_KIND).to_pylist()
    assert json.loads(summary["metadata"])[SOURCES_KEY] == ids  # provenance outlives the turns
    later = client.consolidate(llm=model(llm_server), demote="forget-after=0d", **SMALL)
    assert later.outcomes == []  # no raw turns left: nothing to consolidate again


def test_recompress_demotes_raw_turns_to_the_lm_codec(
    client: MemoryClient, llm_server: Any
) -> None:
    ids = write(client, "c1/s1")
    report = client.consolidate(llm=model(llm_server), demote="recompress", **SMALL)
    assert report.outcomes[0].demoted == "recompressed"
    rows = client.scan("working", ids=ids).to_pylist()
    assert {r["codec"] for r in rows} == {CODEC_LM}
    assert [r["text"] for r in rows] == SESSION  # lossless


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def aimem(server: Any, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AIMEM_SERVER": server.uri, "AIMEM_TOKEN": server.token}
    command = [AIMEM, *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, **kwargs)


def test_a_consolidation_replays_from_the_answer_cache(
    client: MemoryClient, llm_server: Any, tmp_path: Path
) -> None:
    """A store rebuilt (a benchmark on a new machine) is consolidated again from the answers
    already paid for: the same summary, no model call, and the outcome says so."""
    write(client, "c1/s1")
    cache = str(tmp_path / "answers.jsonl")
    first = client.consolidate(llm=model(llm_server, cache=cache), **SMALL)
    assert first.count("consolidated") == 1 and first.outcomes[0].cached == 0
    before = client.scan("long_term", kind=SUMMARY_KIND).to_pylist()[0]["text"]
    client.forget([r["id"] for b in client.iter_scan("long_term") for r in b.to_pylist()])

    nowhere = f"http://127.0.0.1:{free_port()}/v1"  # only the cache can answer
    llm = model(llm_server, url=nowhere, cache=cache, retries=0)
    again = client.consolidate(llm=llm, **SMALL)
    assert (again.count("consolidated"), again.failed) == (1, [])
    (outcome,) = again.outcomes
    assert (outcome.cached, outcome.prompt_tokens, llm.usage.calls) == (1, 0, 0)
    assert client.scan("long_term", kind=SUMMARY_KIND).to_pylist()[0]["text"] == before


def test_cli_consolidates_and_reconstructs(
    client: MemoryClient, server: Any, llm_server: Any, tmp_path: Path
) -> None:
    write(client, "c1/s1")
    llm = ["--llm-url", llm_server.url, "--llm-model", llm_server.model]
    dry = aimem(server, "consolidate", "--dry-run", "--json", *llm)
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["pending"] == 1

    outcomes, answers = tmp_path / "outcomes.jsonl", tmp_path / "answers.jsonl"
    done = aimem(
        server, "consolidate", "--json", "--summary-tokens", "30", "--max-facts", "2",
        "--outcomes", str(outcomes), "--llm-cache", str(answers), *llm,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["consolidated"], report["summaries"], report["failed"]) == (1, 1, [])
    assert report["cached_answers"] == 0 and len(answers.read_text().splitlines()) == 1
    assert "[1/1] c1/s1: consolidated" in done.stderr
    [line] = outcomes.read_text().splitlines()  # as it happened, the same as the report's
    assert json.loads(line) == report["per_session"][0]

    account = aimem(server, "reconstruct", "c1/s1")
    assert account.returncode == 0, account.stderr
    assert account.stdout.startswith("[reconstructed] Session c1/s1 (2023-05-08)")
    missing = aimem(server, "reconstruct", "no/such")
    assert missing.returncode != 0 and "no summary and no turns" in missing.stderr


def test_cli_schedule_runs_rounds_until_stopped(
    client: MemoryClient, server: Any, llm_server: Any, tmp_path: Path
) -> None:
    write(client, "c1/s1")
    env = {**os.environ, "AIMEM_SERVER": server.uri, "AIMEM_TOKEN": server.token}
    command = [
        AIMEM, "consolidate", "--every", "1s", "--json",
        "--summary-tokens", "30", "--max-facts", "2",
        "--llm-url", llm_server.url, "--llm-model", llm_server.model,
    ]  # fmt: skip
    log = tmp_path / "stderr"
    with open(log, "w") as err:
        process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=err, text=True)
        deadline = time.monotonic() + 240
        while log.read_text().count("sessions of working") < 2 and time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=240)
    rounds = log.read_text()
    assert "1 consolidated" in rounds and "1 unchanged" in rounds, rounds
    assert process.returncode == 0
    assert json.loads(out)["unchanged"] == 1  # the last round's report
