"""When a memory happened (``occurred_at``) and ``recall(kind=)``, through a real server.

``occurred_at`` is stored in metadata under ``OCCURRED_AT_KEY`` in one canonical form
(``schemas.occurred``); these tests write it every way the SDK, the CLI and the
importers accept, read it back, filter on it in every search mode and in scans
(including rows written after a filter was first used: the search's allowed-rows
cache is brought up to date, not recomputed), and check that bad values are
refused on both sides with nothing stored.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.flight as flight
import pytest
from click.testing import CliRunner
from conftest import unit_vectors
from hypothesis import given, settings
from hypothesis import strategies as st
from support.wire import batch_of, put, record_columns, scan_all

from aios_memory.client import InvalidFilterError, InvalidValueError, MemoryClient, MemoryInput
from aios_memory.client._when import occurred_at_column
from aios_memory.client.cli import main
from aios_memory.client.importers import read_locomo
from aios_memory.schemas import (
    FACT_KIND,
    OCCURRED_AT_KEY,
    SUMMARY_KIND,
    canonical_time,
    decode_error,
    parse_canonical_time,
)

UTC = timezone.utc
MAY_8 = datetime(2023, 5, 8, 13, 56, tzinfo=UTC)
MODES = ("hybrid", "vector", "keyword")


@pytest.fixture
def server_log(caplog: pytest.LogCaptureFixture) -> Callable[[], list[logging.LogRecord]]:
    """The server's log records at error level or with a traceback (it runs in-process)."""
    caplog.set_level(logging.INFO, logger="aios_memory")
    return lambda: [
        r
        for r in caplog.records
        if r.name.startswith("aios_memory") and (r.levelno >= logging.ERROR or r.exc_info)
    ]


# -- storing and reading ------------------------------------------------------------------------


ACCEPTED = [
    (MAY_8, MAY_8),
    (datetime(2023, 5, 8, 13, 56), MAY_8),  # naive: UTC
    (datetime(2023, 5, 8, 15, 56, tzinfo=timezone(timedelta(hours=2))), MAY_8),
    ("2023-05-08T13:56:00Z", MAY_8),
    ("2023-05-08T15:56:00+02:00", MAY_8),
    ("2023-05-08T13:56:00", MAY_8),  # no zone: UTC
    ("2023-05-08", datetime(2023, 5, 8, tzinfo=UTC)),
    (MAY_8.timestamp(), MAY_8),
    (int(MAY_8.timestamp()), MAY_8),
    (MAY_8.timestamp() + 0.25, MAY_8 + timedelta(microseconds=250_000)),
    (0, datetime(1970, 1, 1, tzinfo=UTC)),
]


def test_every_accepted_form_round_trips(client: MemoryClient) -> None:
    given = [value for value, _ in ACCEPTED]
    ids = client.remember([f"moment number {i}" for i in range(len(given))], occurred_at=given)
    [plain] = client.remember("no time given")
    memories = client.get([*ids, plain])
    assert [m.occurred_at for m in memories] == [want for _, want in ACCEPTED] + [None]
    stored = [m.metadata.get(OCCURRED_AT_KEY) for m in memories]
    assert stored[:4] == ["2023-05-08T13:56:00Z"] * 4  # one canonical form
    assert stored[9] == "2023-05-08T13:56:00.250000Z" and stored[-1] is None
    hits = client.recall("moment number", mode="keyword", k=20)
    assert {h.id: h.occurred_at for h in hits} == {m.id: m.occurred_at for m in memories[:-1]}
    table = client.scan()
    column = {r["id"]: r["occurred_at"] for r in table.select(["id", "occurred_at"]).to_pylist()}
    assert column == {m.id: m.occurred_at for m in memories}


def test_one_value_is_for_every_text_and_a_list_is_one_per_text(client: MemoryClient) -> None:
    ids = client.remember(["a morning", "an evening"], occurred_at="2023-05-08T08:00:00Z")
    assert {m.occurred_at for m in client.get(ids)} == {datetime(2023, 5, 8, 8, tzinfo=UTC)}
    ids = client.remember(["first", "second"], occurred_at=[0, None])
    assert [m.occurred_at for m in client.get(ids)] == [datetime(1970, 1, 1, tzinfo=UTC), None]


def test_remember_many_and_encode_records_honour_occurred_at(client: MemoryClient) -> None:
    items = [
        MemoryInput(text="imported with a time", occurred_at="2023-05-08T15:56:00+02:00"),
        MemoryInput(text="imported from an export", metadata={OCCURRED_AT_KEY: "2023-05-08"}),
        MemoryInput(text="imported without one"),
    ]
    [row] = client.encode_records(items[:1])
    assert json.loads(row["metadata"]) == {OCCURRED_AT_KEY: "2023-05-08T13:56:00Z"}
    ids = client.remember_many(items)
    got = [m.occurred_at for m in client.get(ids)]
    assert got == [MAY_8, datetime(2023, 5, 8, tzinfo=UTC), None]


BAD = ["8 May 2023", "", "2023-13-01", True, float("nan"), 1e20, [2023, 5, 8], {"at": 1}]


@pytest.mark.parametrize("value", BAD, ids=repr)
def test_bad_values_are_refused_before_sending(client: MemoryClient, value: Any) -> None:
    with pytest.raises(InvalidValueError) as excinfo:
        client.remember(["fine", "not fine"], occurred_at=["2023-05-08", value])
    assert excinfo.value.detail["field"] == "occurred_at" and excinfo.value.detail["row"] == 1
    with pytest.raises(InvalidValueError):
        client.remember_many([MemoryInput(text="x", occurred_at=value)])
    assert client.scan().num_rows == 0


def test_a_list_of_the_wrong_length_and_a_conflict_are_refused(client: MemoryClient) -> None:
    with pytest.raises(InvalidValueError, match="2 occurred_at values for 3 texts"):
        client.remember(["a", "b", "c"], occurred_at=[0, 1])
    with pytest.raises(InvalidValueError, match="give one"):
        client.remember("a", occurred_at=0, metadata={OCCURRED_AT_KEY: "2023-05-08"})
    with pytest.raises(InvalidValueError) as excinfo:
        client.remember("a", metadata={OCCURRED_AT_KEY: "soon"})
    assert excinfo.value.detail["field"] == OCCURRED_AT_KEY
    assert client.scan().num_rows == 0


@pytest.mark.parametrize(
    "value",
    [
        "8 May 2023",
        "2023-05-08",
        "2023-05-08T13:56:00+00:00",
        "2023-05-08T13:56:00.25Z",
        1683554160,
    ],
    ids=repr,
)
def test_the_server_refuses_a_stored_time_not_in_the_canonical_form(
    server: Any, client: MemoryClient, server_log: Callable[[], list[Any]], value: Any
) -> None:
    client.remember("already here", occurred_at=MAY_8)
    before = scan_all(server.uri, server.token)
    columns = record_columns(["ok", "bad"], metadata=[{}, {OCCURRED_AT_KEY: value}])
    with pytest.raises(flight.FlightError) as excinfo:
        put(server.uri, server.token, [batch_of(columns)])
    error = decode_error(excinfo.value.extra_info)
    assert error is not None and error.code == "INVALID_VALUE", excinfo.value
    assert error.detail == {"field": "metadata", "row": 1} and OCCURRED_AT_KEY in error.message
    row = {name: values[1] for name, values in columns.items()}
    with pytest.raises(InvalidValueError):  # the SDK's raw path checks the same rule
        client.write_records([row])
    assert scan_all(server.uri, server.token).equals(before)
    assert server_log() == []
    assert [m.text for m in client.get(before.column("id").to_pylist())] == ["already here"]


# -- filtering ----------------------------------------------------------------------------------


def _day(n: int) -> datetime:
    return datetime(2023, 5, n, 12, tzinfo=UTC)


@pytest.fixture
def days(client: MemoryClient) -> dict[int, str]:
    """Memories that happened at noon on 1..6 May 2023 (day -> id), and one with no time."""
    vectors = unit_vectors(7, seed=3)
    ids = client.remember(
        [f"heron note of day {n}" for n in range(1, 7)] + ["heron note of no day"],
        occurred_at=[_day(n) for n in range(1, 7)] + [None],
        embeddings=vectors,
    )
    return dict(zip([*range(1, 7), 0], ids, strict=True))


FILTERS = [
    ({"$gt": "2023-05-04T12:00:00Z"}, {5, 6}),
    ({"$lt": _day(3).timestamp()}, {1, 2}),  # epoch seconds
    ({"$gte": "2023-05-04T14:00:00+02:00"}, {4, 5, 6}),  # 12:00 UTC
    ({"$lte": "2023-05-02T12:00:00"}, {1, 2}),  # no zone: UTC
    ({"$in": ["2023-05-02T12:00:00Z", "2023-05-05T14:00:00+02:00"]}, {2, 5}),
    ({"$in": [_day(3).timestamp(), 0]}, {3}),
    ({"$gte": "2023-05-02", "$lt": "2023-05-04"}, {2, 3}),
    ({"$eq": None}, {0}),
]


def _recalled(client: MemoryClient, where: dict[str, Any], mode: str) -> set[str]:
    query = unit_vectors(7, seed=3)[0]  # nearest day 1: a filter must not fall back on it
    hits = client.recall("heron note", embedding=query, k=20, where=where, mode=mode)
    return {h.id for h in hits}


@pytest.mark.parametrize("mode", MODES)
def test_where_on_occurred_at_in_every_search_mode(
    client: MemoryClient, days: dict[int, str], mode: str
) -> None:
    for condition, wanted in FILTERS:
        if mode != "keyword" and wanted == {0}:
            continue  # the undated memory has a vector too, but $eq null is checked by scan
        got = _recalled(client, {"occurred_at": condition}, mode)
        assert got == {days[n] for n in wanted}, (condition, mode)


def test_a_memory_written_after_a_filter_was_used_is_found(
    client: MemoryClient, days: dict[int, str]
) -> None:
    where = {"occurred_at": {"$gte": "2023-05-05"}}
    for mode in MODES:  # each mode once, so each filter's allowed rows are cached
        assert _recalled(client, where, mode) == {days[5], days[6]}
    [late] = client.remember(
        "heron note of day 9", occurred_at=_day(9), embeddings=unit_vectors(1, seed=9)
    )
    [early] = client.remember(
        "heron note of day 0", occurred_at=_day(1) - timedelta(days=1), embeddings=unit_vectors(1)
    )
    for mode in MODES:
        assert _recalled(client, where, mode) == {days[5], days[6], late}, mode
    client.forget(days[6])
    for mode in MODES:
        assert _recalled(client, where, mode) == {days[5], late}, mode
    for mode in MODES:
        assert _recalled(client, {"occurred_at": {"$lt": "2023-05-01"}}, mode) == {early}, mode


def test_scan_filters_on_occurred_at(client: MemoryClient, days: dict[int, str]) -> None:
    for condition, wanted in FILTERS:
        table = client.scan(where={"occurred_at": condition})
        assert set(table.column("id").to_pylist()) == {days[n] for n in wanted}, condition
    sugar = client.scan(occurred_after=_day(2), occurred_before="2023-05-04T12:00:00Z")
    assert set(sugar.column("id").to_pylist()) == {days[2], days[3]}  # [after, before)
    assert client.scan(occurred_after=_day(6).timestamp()).column("id").to_pylist() == [days[6]]
    with pytest.raises(InvalidFilterError, match="not both"):
        client.scan(occurred_after=_day(2), where={"occurred_at": {"$lt": "2023-05-03"}})
    with pytest.raises(InvalidValueError) as excinfo:
        client.scan(occurred_before="the day after")
    assert excinfo.value.detail["field"] == "occurred_before"
    with pytest.raises(InvalidFilterError):
        client.scan(where={"occurred_at": {"$gt": "last week"}})


def test_a_sealed_memory_keeps_its_time_inside_and_a_device_filters_on_it(
    client: MemoryClient,
) -> None:
    [sealed] = client.remember("a secret heron", privacy=3, occurred_at=MAY_8)
    client.remember("a plain heron", privacy=0, occurred_at="2023-01-01")
    stored = [r for batch in client.iter_records() for r in batch.to_pylist() if r["id"] == sealed]
    assert stored[0]["codec"] == "sealed" and stored[0]["metadata"] is None  # nothing outside
    [hit] = client.recall("heron", mode="keyword", where={"occurred_at": {"$gte": "2023-05-01"}})
    assert (hit.id, hit.occurred_at) == (sealed, MAY_8)
    table = client.scan(occurred_after="2023-05-01")
    assert table.select(["id", "occurred_at"]).to_pylist() == [{"id": sealed, "occurred_at": MAY_8}]


# -- recall(kind=) ------------------------------------------------------------------------------


def test_recall_selects_kinds(client: MemoryClient) -> None:
    ids = {
        kind: client.remember(f"a lighthouse {kind}", kind=kind)[0]
        for kind in ("text", SUMMARY_KIND, FACT_KIND)
    }

    def found(**options: Any) -> set[str]:
        return {h.id for h in client.recall("lighthouse", mode="keyword", **options)}

    assert found() == set(ids.values())
    assert found(kind=SUMMARY_KIND) == {ids[SUMMARY_KIND]}
    assert found(kind=[SUMMARY_KIND, FACT_KIND]) == {ids[SUMMARY_KIND], ids[FACT_KIND]}
    assert found(kind=[FACT_KIND], where={"kind": FACT_KIND}) == {ids[FACT_KIND]}
    with pytest.raises(InvalidFilterError, match="conflicts"):
        client.recall("lighthouse", kind=SUMMARY_KIND, where={"kind": FACT_KIND})
    with pytest.raises(InvalidFilterError):
        client.recall("lighthouse", kind=[])


# -- importers and the command line -------------------------------------------------------------


def _locomo(path: Path) -> Path:
    conversation = {
        "speaker_a": "Ana",
        "speaker_b": "Ben",
        "session_1_date_time": "1:56 pm on 8 May, 2023",
        "session_1": [
            {"speaker": "Ana", "dia_id": "D1:1", "text": "I adopted a kestrel today."},
            {"speaker": "Ben", "dia_id": "D1:2", "text": "A kestrel! What is its name?"},
        ],
        "session_2_date_time": "10:37 am on 27 June, 2023",
        "session_2": [{"speaker": "Ana", "dia_id": "D2:1", "text": "The kestrel is called Pip."}],
    }
    path.write_text(json.dumps(conversation), encoding="utf-8")
    return path


def test_locomo_turns_take_their_session_time(tmp_path: Path, client: MemoryClient) -> None:
    path = _locomo(tmp_path / "conv-1.json")
    items = list(read_locomo(path))
    assert [i.occurred_at for i in items] == ["2023-05-08T13:56:00Z"] * 2 + ["2023-06-27T10:37:00Z"]
    assert items[0].metadata["session_date"] == "1:56 pm on 8 May, 2023"
    client.remember_many(items)
    june = client.recall("kestrel", mode="keyword", where={"occurred_at": {"$gte": "2023-06-01"}})
    assert [h.text for h in june] == ["Ana: The kestrel is called Pip."]
    assert june[0].occurred_at == datetime(2023, 6, 27, 10, 37, tzinfo=UTC)
    assert june[0].metadata["session_date"] == "10:37 am on 27 June, 2023"


def test_a_locomo_date_that_is_no_time_is_refused(tmp_path: Path) -> None:
    path = _locomo(tmp_path / "conv-2.json")
    conversation = json.loads(path.read_text())
    conversation["session_2_date_time"] = "sometime in June"
    path.write_text(json.dumps(conversation))
    with pytest.raises(InvalidValueError, match="conv-2/session_2"):
        list(read_locomo(path))


@pytest.fixture
def aimem(server: Any) -> Callable[..., Any]:
    def run(*args: str, code: int = 0) -> Any:
        full = [*args, "--server", server.uri, "--token", server.token]
        result = CliRunner().invoke(main, full)
        assert result.exit_code == code, result.output
        return json.loads(result.stdout) if "--json" in args else result

    return run


def test_the_command_line_stores_filters_and_prints_occurred_at(
    tmp_path: Path, aimem: Callable[..., Any], client: MemoryClient
) -> None:
    aimem("remember", "an owl at dusk", "--occurred-at", "2023-05-08T15:56:00+02:00", "--json")
    aimem("remember", "an owl summary", "--kind", SUMMARY_KIND, "--occurred-at", "0", "--json")
    lines = [
        {"text": "an owl in the log", "occurred_at": "2023-07-01T09:00:00Z", "kind": FACT_KIND},
        {"text": "an owl without a time"},
    ]
    notes = tmp_path / "notes.jsonl"
    notes.write_text("\n".join(json.dumps(line) for line in lines), encoding="utf-8")
    assert aimem("import", str(notes), "--json")["imported"] == 2
    hits = aimem("recall", "owl", "--mode", "keyword", "--json")
    assert {h["text"]: h["occurred_at"] for h in hits} == {
        "an owl at dusk": "2023-05-08T13:56:00Z",
        "an owl summary": "1970-01-01T00:00:00Z",
        "an owl in the log": "2023-07-01T09:00:00Z",
        "an owl without a time": None,
    }
    kinds = aimem("recall", "owl", "--kind", SUMMARY_KIND, "--kind", FACT_KIND, "--json")
    assert {h["text"] for h in kinds} == {"an owl summary", "an owl in the log"}
    where = json.dumps({"occurred_at": {"$gt": "2023-05-08"}})
    later = aimem("recall", "owl", "--mode", "keyword", "--where", where, "--json")
    assert {h["text"] for h in later} == {"an owl at dusk", "an owl in the log"}


def test_the_command_line_refuses_a_bad_time_and_writes_nothing(
    tmp_path: Path, aimem: Callable[..., Any], client: MemoryClient
) -> None:
    result = aimem("remember", "an owl", "--occurred-at", "at dusk", code=1)
    assert "occurred_at" in result.output and "Traceback" not in result.output
    notes = tmp_path / "notes.jsonl"
    notes.write_text('{"text": "fine"}\n{"text": "bad", "occurred_at": "at dusk"}\n')
    result = aimem("import", str(notes), code=1)
    assert "notes.jsonl:2" in result.output
    assert client.scan().num_rows == 0


def test_canonical_time_is_the_one_stored_form() -> None:
    assert canonical_time("0001-01-01T00:00:00Z") == "0001-01-01T00:00:00Z"
    assert canonical_time(datetime(9999, 12, 31, 23, 59, 59, 999_999)) == (
        "9999-12-31T23:59:59.999999Z"
    )
    with pytest.raises(InvalidValueError, match="outside the years"):
        canonical_time(datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1))))


def test_scan_column_reads_only_the_top_level_key_and_tolerates_old_values() -> None:
    texts = [
        None,
        "{}",
        '{"aimem:occurred_at": "2023-05-08T13:56:00Z", "x": {"aimem:occurred_at": 1}}',
        '{"y": {"aimem:occurred_at": "2023-05-08T13:56:00Z"}}',  # nested: not the memory's
        '{\n  "aimem:occurred_at": "2023-05-08T13:56:00.250000Z"\n}',  # pretty-printed
    ]
    fast = pa.RecordBatch.from_pydict({"metadata": pa.array(texts, pa.string())})
    want = [None, None, MAY_8, None, MAY_8 + timedelta(microseconds=250_000)]
    assert occurred_at_column(fast).to_pylist() == want
    # Values stored before the server checked the form: read leniently, or null.
    old = [*texts, '{"aimem:occurred_at": "2023-05-08"}', '{"aimem:occurred_at": "soon"}']
    slow = pa.RecordBatch.from_pydict({"metadata": pa.array(old, pa.string())})
    assert occurred_at_column(slow).to_pylist() == [*want, datetime(2023, 5, 8, tzinfo=UTC), None]


@settings(max_examples=300, deadline=None)
@given(
    moment=st.datetimes(
        min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.timezones()
    )
)
def test_any_time_round_trips_through_the_stored_form(moment: datetime) -> None:
    instant = moment.astimezone(UTC)  # (== across zones is False for a time in a DST gap)
    text = canonical_time(moment)
    assert parse_canonical_time(text) == instant
    assert canonical_time(text) == text  # the stored form is a fixed point
    epoch = parse_canonical_time(canonical_time(moment.timestamp()))
    ulp = abs(moment.timestamp()) * 2**-52  # a float's last bit: 30 us in the year 9999
    assert abs(epoch - instant) <= timedelta(seconds=2 * ulp, microseconds=1)
