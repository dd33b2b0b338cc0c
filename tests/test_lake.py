"""The cloud at scale: replicas over one lake on a real S3-compatible server (SeaweedFS).

In-process replicas check what a replica answers; replica processes (``aimem
serve --lake``) check concurrency, SIGKILL and compaction as an operator would
run them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from support.s3_server import credentials_env, lake_uri, s3_server

from aios_memory.client import MemoryClient
from aios_memory.flight_server.lake.store import LakeStore
from aios_memory.flight_server.lake.uri import parse_lake
from aios_memory.flight_server.store.group_commit import GroupCommit
from aios_memory.schemas import RECORD_SCHEMA, InvalidValueError, InvalidVectorError
from aios_memory.sync import FlightReplica, sync_once

TOKEN = "test-token"  # conftest.TOKEN: what server_factory starts servers with
AIMEM = [sys.executable, "-c", "from aios_memory.client.cli import main; main()"]


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with pytest.MonkeyPatch.context() as patch:
        for key, value in credentials_env().items():
            patch.setenv(key, value)
        with s3_server(tmp_path_factory.mktemp("weed")) as url:
            yield url


@pytest.fixture
def lake(endpoint: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh prefix of the bucket per test."""
    for key, value in credentials_env().items():
        monkeypatch.setenv(key, value)
    return lake_uri(endpoint, re.sub(r"\W", "-", request.node.name)[:60])


def cloud(server_factory: Any, tmp_path: Path, name: str, lake: str, **settings: Any) -> Any:
    return server_factory(data_dir=tmp_path / name, role="cloud", lake=lake, **settings)


# --- the lake URI and group commit ----------------------------------------------------


def test_lake_uris_take_an_endpoint_and_refuse_credentials(tmp_path: Path) -> None:
    parsed = parse_lake("s3://mem/prod/eu?endpoint=http://127.0.0.1:9000")
    assert parsed.root == "s3://mem/prod/eu"
    assert parsed.options == {
        "aws_endpoint": "http://127.0.0.1:9000",
        "allow_http": "true",
        "aws_region": "us-east-1",
    }
    assert parsed.describe() == "s3://mem/prod/eu (endpoint http://127.0.0.1:9000)"
    assert parse_lake(str(tmp_path)).root == str(tmp_path.resolve())
    assert parsed.dataset_uri("a/b") != parsed.dataset_uri("a_b")  # hashed, never a path
    for bad in (
        "s3://key:secret@mem/x",
        "s3://mem/x?secret_access_key=s",
        "s3://mem/x?aws_session_token=t",
        "gs://mem/x",
        "s3:///x",
        "s3://mem?color=red",
    ):
        with pytest.raises(InvalidValueError) as caught:
            parse_lake(bad)
        assert "secret" not in caught.value.message or "AWS_SECRET" in caught.value.message


def test_group_commit_shares_commits_and_errors() -> None:
    calls: list[list[int]] = []

    def commit(items: list[int]) -> list[int]:
        calls.append(items)
        time.sleep(0.05)  # a slow commit: others arrive meanwhile
        if -1 in items:
            raise ValueError("refused")
        return [KeyError(i) if i == -2 else i * 10 for i in items]  # -2 fails alone

    group: GroupCommit[int, int] = GroupCommit(commit)
    results: dict[int, Any] = {}

    def submit(i: int) -> None:
        try:
            results[i] = group.submit(i)
        except ValueError as exc:
            results[i] = exc

    threads = [threading.Thread(target=submit, args=(i,)) for i in [*range(20), -1, -2]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert group.items == 22 and group.groups < 22
    failed = next(batch for batch in calls if -1 in batch)
    for i in range(20):
        assert isinstance(results[i], ValueError) if i in failed else results[i] == i * 10
    assert isinstance(results[-1], ValueError)
    assert isinstance(results[-2], ValueError if -2 in failed else KeyError)


# --- two replicas in this process -----------------------------------------------------


def test_a_write_through_one_replica_is_read_through_another(
    server_factory: Any, tmp_path: Path, lake: str
) -> None:
    with (
        cloud(server_factory, tmp_path, "a", lake) as a,
        cloud(server_factory, tmp_path, "b", lake) as b,
    ):
        one, two = (MemoryClient(r.uri, TOKEN, tenant="ana") for r in (a, b))
        for n in range(25):  # read-after-commit, every time, no waiting
            memory_id = one.remember(f"ana planted tomato bed {n}", tier="long_term")
            assert [m.text for m in two.get(memory_id)] == [f"ana planted tomato bed {n}"]
        assert two.stats()["memories"] == 25
        hits = two.recall("tomato bed 7", k=3, mode="keyword")
        assert hits[0].text == "ana planted tomato bed 7"
        two.forget(memory_id)
        assert one.get(memory_id) == [] and one.stats()["memories"] == 24
        other = MemoryClient(b.uri, TOKEN, tenant="bo")
        other.remember("bo's own memory", tier="long_term")
        assert one.stats()["memories"] == 24  # tenants stay apart
        assert [r.seen for r in (a.store.caught_up("ana"), b.store.caught_up("ana"))] == [
            b.store.caught_up("ana").log.latest_version()
        ] * 2


def test_a_replica_restarts_from_its_cache_and_rebuilds_a_lost_one(
    server_factory: Any, tmp_path: Path, lake: str
) -> None:
    with cloud(server_factory, tmp_path, "a", lake) as a:
        client = MemoryClient(a.uri, TOKEN, tenant="ana")
        ids = client.remember([f"note {n} on the boat" for n in range(40)], tier="long_term")
    with cloud(server_factory, tmp_path, "b", lake) as b:  # another replica writes meanwhile
        MemoryClient(b.uri, TOKEN, tenant="ana").remember(
            "written while a was down", tier="long_term"
        )
    with cloud(server_factory, tmp_path, "a", lake) as a:
        client = MemoryClient(a.uri, TOKEN, tenant="ana")
        assert client.stats()["memories"] == 41
        assert len(client.get(ids)) == 40
    for path in (tmp_path / "a" / "lake-cache").iterdir():  # the cache is disposable
        subprocess.run(["rm", "-rf", str(path)], check=True)
    with cloud(server_factory, tmp_path, "a", lake) as a:
        client = MemoryClient(a.uri, TOKEN, tenant="ana")
        assert client.stats()["memories"] == 41
        assert client.recall("boat note 12", k=1, mode="keyword")[0].text == "note 12 on the boat"


def test_bad_input_never_reaches_the_lake(server_factory: Any, tmp_path: Path, lake: str) -> None:
    with cloud(server_factory, tmp_path, "a", lake) as a:
        client = MemoryClient(a.uri, TOKEN, tenant="ana")
        client.remember("a vector of four", tier="long_term", embeddings=[[0.5, 0.5, 0.5, 0.5]])
        before = a.store.caught_up("ana").log.latest_version()
        with pytest.raises(InvalidVectorError):
            client.remember("a vector of three", tier="long_term", embeddings=[[1.0, 0.0, 0.0]])
        assert a.store.caught_up("ana").log.latest_version() == before
        assert client.stats()["memories"] == 1
        store: LakeStore = a.store
        row = client.scan().select(RECORD_SCHEMA.names).cast(RECORD_SCHEMA)
        two_tenants = pa.concat_tables(
            [
                row,
                row.set_column(
                    row.schema.get_field_index("tenant"),
                    RECORD_SCHEMA.field("tenant"),
                    pa.array(["bo"]),
                ),
            ]
        )
        from aios_memory.flight_server.store.base import PreparedWrite

        with pytest.raises(InvalidValueError):
            store.put(PreparedWrite(two_tenants, [None, None], [2]))


def test_one_replica_at_a_time_compacts_every_tenant_of_the_lake(
    server_factory: Any, tmp_path: Path, lake: str
) -> None:
    with cloud(server_factory, tmp_path, "writer", lake) as writer_:
        for tenant in ("ana", "bo"):
            client = MemoryClient(writer_.uri, TOKEN, tenant=tenant)
            for n in range(5):  # five commits: five files
                client.remember(f"{tenant} note {n}", tier="long_term")
    first, second = (LakeStore(parse_lake(lake), tmp_path / name) for name in ("c1", "c2"))
    _compaction_takes_turns(first, second, server_factory, tmp_path, lake)
    first.close()
    second.close()


def _compaction_takes_turns(
    first: LakeStore, second: LakeStore, server_factory: Any, tmp_path: Path, lake: str
) -> None:
    done = first.compact_tenants(min_fragments=2, lease_seconds=0.5)
    assert len(done) == 2 and all(d["fragments_removed"] == 5 for d in done)  # unopened tenants
    assert second.compact_tenants(min_fragments=2, lease_seconds=0.5) == []  # leased to first
    assert first.compact_tenants(min_fragments=2, lease_seconds=0.5) == []  # nothing left
    time.sleep(0.6)  # the lease expires: another replica may take it
    with cloud(server_factory, tmp_path, "writer", lake) as writer_:
        MemoryClient(writer_.uri, TOKEN, tenant="ana").remember("after", tier="long_term")
        MemoryClient(writer_.uri, TOKEN, tenant="ana").remember("again", tier="long_term")
        done = second.compact_tenants(min_fragments=2, lease_seconds=0.5)
        assert [d["fragments_removed"] for d in done] == [3]
        assert MemoryClient(writer_.uri, TOKEN, tenant="ana").stats()["memories"] == 7


def test_a_refused_put_fails_alone_in_its_group(tmp_path: Path, lake: str) -> None:
    from support.wire import batch_of, record_columns

    from aios_memory.flight_server.ingest import prepare_write
    from aios_memory.schemas import DEFAULT_LIMITS

    def write(texts: list[str], dim: int) -> Any:
        columns = record_columns(texts, np.ones((len(texts), dim)) / dim**0.5, tier="long_term")
        columns["tenant"] = ["ana"] * len(texts)
        return prepare_write([batch_of(columns)], None, DEFAULT_LIMITS)

    with contextlib.closing(LakeStore(parse_lake(lake), tmp_path / "a")) as store:
        tenant = store.caught_up("ana")
        # One group: a put, one whose vectors disagree with it (a new model's first two
        # puts), and one more: only the middle one is refused, and only it.
        results = store._commit(
            tenant, [write(["four a"], 4), write(["three"], 3), write(["four b", "four c"], 4)]
        )
        assert isinstance(results[1], InvalidVectorError)
        assert [len(r[0][0]) for r in (results[0], results[2])] == [1, 2]
        assert tenant.log.latest_version() == 2  # the empty dataset, then one commit
        assert store.stats("ana")["memories"] == 3


def test_sync_against_a_cluster_as_against_one_server(
    server_factory: Any, tmp_path: Path, lake: str, start: Any
) -> None:
    def sync(local: str, remote: str) -> Any:
        with FlightReplica(local, TOKEN) as one, FlightReplica(remote, TOKEN) as two:
            return sync_once(one, two, tenant="ana")

    device = start("device")
    phone = MemoryClient(device.uri, TOKEN, tenant="ana")
    ids = phone.remember([f"long term fact {n}" for n in range(30)], tier="long_term")
    with (
        cloud(server_factory, tmp_path, "a", lake) as a,
        cloud(server_factory, tmp_path, "b", lake) as b,
    ):
        first = sync(device.uri, a.uri)
        assert MemoryClient(b.uri, TOKEN, tenant="ana").stats()["memories"] == 30
        MemoryClient(b.uri, TOKEN, tenant="ana").forget(ids[:5])
        MemoryClient(a.uri, TOKEN, tenant="ana").remember("made in the cloud", tier="long_term")
        second = sync(device.uri, b.uri)  # another replica
        third = sync(device.uri, a.uri)
        assert phone.stats()["memories"] == 26
        assert phone.get(ids[:5]) == []
        assert first.sent == 30 and second.received >= 6 and third.sent == third.received == 0
        cloud_ids = {r["id"] for r in MemoryClient(a.uri, TOKEN, tenant="ana").scan().to_pylist()}
        assert cloud_ids == {r["id"] for r in phone.scan(tier="long_term").to_pylist()}


# --- replica processes ----------------------------------------------------------------


@contextlib.contextmanager
def replica(data: Path, lake: str, *extra: str) -> Iterator[tuple[subprocess.Popen, str]]:
    """``aimem serve --lake`` as its own process; yields it and its address."""
    data.mkdir(parents=True, exist_ok=True)
    log_path = data.parent / f"{data.name}.log"
    env = {**os.environ, **credentials_env()}
    start = log_path.stat().st_size if log_path.exists() else 0  # a restart appends
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [
                *AIMEM,
                "serve",
                "--data",
                str(data),
                "--port",
                "0",
                "--embedder",
                "none",
                "--role",
                "cloud",
                "--token",
                TOKEN,
                "--lake",
                lake,
                *extra,
            ],
            stderr=log,
            env=env,
        )
    try:
        yield proc, _wait_for_uri(proc, log_path, start)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)


def _wait_for_uri(proc: subprocess.Popen, log_path: Path, start: int, seconds: float = 60) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = re.search(
            r"grpc://127\.0\.0\.1:\d+", log_path.read_bytes()[start:].decode(errors="replace")
        )
        if found:
            return found.group(0)
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    raise AssertionError(f"no address from the replica:\n{log_path.read_text()}")


_WRITER = """
import sys, time, hashlib
from aios_memory.client import MemoryClient
uri, token, name, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
client = MemoryClient(uri, token, tenant="crowd")
stop, n = time.monotonic() + seconds, 0
while time.monotonic() < stop:
    text = "%s wrote line %d" % (name, n)
    [memory_id] = client.remember(text, tier="long_term")
    print(memory_id, hashlib.sha256(text.encode()).hexdigest(), flush=True)
    n += 1
"""


def writer(uri: str, name: str, seconds: float) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", _WRITER, uri, TOKEN, name, str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )


def acknowledged(processes: list[subprocess.Popen]) -> dict[str, str]:
    """id -> sha256 of the text, for every write a writer printed as acknowledged."""
    acked: dict[str, str] = {}
    for proc in processes:
        out, _ = proc.communicate(timeout=120)
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 2 and len(parts[1]) == 64:
                acked[parts[0]] = parts[1]
    return acked


def contents(uri: str) -> list[tuple[str, str]]:
    """(id, sha256 of the text) of every live memory, through this replica."""
    client = MemoryClient(uri, TOKEN, tenant="crowd")
    ids = client.scan(tier="long_term").column("id").to_pylist()
    memories = client.get(ids) if ids else []
    return [(m.id, hashlib.sha256(m.text.encode()).hexdigest()) for m in memories]


@pytest.mark.slow
def test_three_writers_through_three_replicas_lose_and_duplicate_nothing(
    tmp_path: Path, lake: str
) -> None:
    with contextlib.ExitStack() as stack:
        uris = [stack.enter_context(replica(tmp_path / f"r{i}", lake))[1] for i in range(3)]
        writers = [writer(uri, f"w{i}", 6.0) for i, uri in enumerate(uris)]
        acked = acknowledged(writers)
        assert len(acked) > 30
        for uri in uris:  # every replica answers exactly the acknowledged set
            found = contents(uri)
            assert len(found) == len({i for i, _ in found}) == len(acked)
            assert dict(found) == acked


@pytest.mark.slow
def test_a_replica_killed_mid_commit_loses_no_acknowledged_write(tmp_path: Path, lake: str) -> None:
    acked: dict[str, str] = {}
    with replica(tmp_path / "witness", lake) as (_, witness):
        for round_ in range(4):
            with replica(tmp_path / "victim", lake) as (victim, uri):
                busy = writer(uri, f"k{round_}", 30.0)
                time.sleep(1.5 + round_ * 0.4)
                victim.send_signal(signal.SIGKILL)  # mid-stream: commits in flight
                victim.wait()
                acked.update(acknowledged([busy]))
        assert len(acked) > 10
        found = dict(contents(witness))
        assert {k: found.get(k) for k in acked} == acked  # every acknowledged write, intact
        with replica(tmp_path / "victim", lake) as (_, uri):  # it restarts and catches up
            assert dict(contents(uri)) == found


@pytest.mark.slow
def test_compaction_while_writers_and_readers_work_changes_no_result(
    tmp_path: Path, lake: str
) -> None:
    with replica(tmp_path / "seed", lake) as (_, uri):
        seed = MemoryClient(uri, TOKEN, tenant="crowd")
        for n in range(60):  # 60 commits: 60 small files
            seed.remember(f"seed line {n} about herons", tier="long_term")
        expected = [h.id for h in seed.recall("seed line 42 herons", k=5, mode="keyword")]
        seed_texts = dict(contents(uri))
    with (
        replica(tmp_path / "compactor", lake, "--compact-seconds", "0.5") as (_, compactor),
        replica(tmp_path / "reader", lake) as (_, reader_uri),
    ):
        writers = [writer(compactor, "c0", 5.0), writer(reader_uri, "c1", 5.0)]
        reader = MemoryClient(reader_uri, TOKEN, tenant="crowd")
        answers, counts, seeds = [], [], []
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            answers.append(
                [h.id for h in reader.recall("seed line 42 herons", k=5, mode="keyword")]
            )
            counts.append(reader.stats()["memories"])
            seeds.append({m.id: m.text for m in reader.get(list(seed_texts))})
        acked = acknowledged(writers)
        time.sleep(1.5)  # one more compaction after the last write
        assert all(a[:1] == expected[:1] for a in answers)  # the best hit never changed
        assert (
            all(len(s) == 60 for s in seeds)
            and len({json.dumps(s, sort_keys=True) for s in seeds}) == 1
        )
        assert counts == sorted(counts) and counts[0] >= 60  # nothing ever vanished
        found = dict(contents(reader_uri))
        assert {k: found.get(k) for k in acked} == acked and len(found) == 60 + len(acked)
    with contextlib.closing(LakeStore(parse_lake(lake), tmp_path / "probe")) as probe:
        # merged: it had 60 files and one more per write
        assert probe.caught_up("crowd").log.fragment_count() < 16
