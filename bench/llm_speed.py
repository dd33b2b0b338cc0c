"""How fast is the embedded chat model on this machine, with and without a JSON grammar?

The default model (Qwen2.5-Coder-1.5B-Instruct Q5_K_M, ``aimem llm prepare``) reads a fixed
prompt of about 600 tokens (a made-up chat session) and answers, through ``LocalChat`` (the
real code path): ``grammar`` asks ``chat_json`` for a summary object (llama.cpp samples under
the schema's grammar, checking the greedy token first), ``grammar-full`` the same with the
grammar masking the whole vocabulary every step (llama-cpp-python's way), ``free`` asks
``chat_text`` for the same in prose. Prompt speed comes
from a ``max_tokens=1`` call; completion speed from the same prompt asked again for up to
``--max-tokens``: llama-cpp-python reuses the evaluated prefix, so that call is (all but one
token) generation. Each mode and round opens with its own session number (the first message),
so nothing is reused across them.

One JSON line per mode and round, the load average beside each (these machines are shared:
compare the modes within one run). Usage: ``python bench/llm_speed.py [--model-path GGUF]
[--locomo PATH/TO/conv-30.json --sessions 1,2,3]`` (the second part times consolidation's own
prompt for real sessions both ways, and checks the two answers are the same). ``batch-cost``
lines say whether speculative decoding could pay on this CPU (see ``batch_cost``).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import pydantic

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import base_parser, emit, log  # noqa: E402

from aios_memory.client.llm import LLMSettings, LocalChat, default_model_path  # noqa: E402

SPEAKERS = ("Maya", "Tom")
LINES = (
    "I finally booked the train to Lisbon for the 14th of May, it leaves at 7:40.",
    "Nice! Are you staying with your cousin Ana or in the hotel near the river?",
    "With Ana for three nights, then the hotel; she moved to Alfama last spring.",
    "You should try the bakery on Rua da Saudade, the custard tarts are famous.",
    "Noted. I also want to see the tile museum, Ana says it is closed on Mondays.",
    "Then go on Tuesday. Did you ever finish the pottery course in March?",
    "Yes, I made six bowls and a lopsided vase that my mother now uses for pens.",
    "Ha, that is love. I started running again, 5 km three times a week.",
    "Good for you. Are you still planning the half marathon in October?",
    "If my knee holds up. The physio said to add strength training twice a week.",
)


# A consolidation answer of the usual shape, stepped through the grammar by ``grammar_cost``.
ANSWER = {
    "summary": "Maya booked a train to Lisbon for 14 May and will stay with her cousin Ana, "
    "then at a hotel. Tom suggests a bakery and the tile museum.",
    "facts": [
        {
            "text": "Maya's train to Lisbon leaves at 7:40 on 14 May.",
            "sources": [1],
            "key": "Maya|trip",
        },
        {"text": "Ana moved to Alfama in spring 2022.", "sources": [3], "key": "Ana|home"},
        {
            "text": "Maya made six bowls in a pottery course in March.",
            "sources": [7],
            "key": "Maya|pottery",
        },
        {"text": "Tom runs 5 km three times a week.", "sources": [8], "key": "Tom|running"},
    ],
}


class Summary(pydantic.BaseModel):
    summary: str
    facts: list[str]


def messages(session: int, target_tokens: int, model: LocalChat) -> list[dict[str, str]]:
    """A chat transcript of about ``target_tokens`` tokens, headed by the session number."""
    turns, n = [], 0
    while model.count_tokens("\n".join(turns)) < target_tokens:
        turns.append(f"{SPEAKERS[n % 2]}: {LINES[n % len(LINES)]}")
        n += 1
    ask = "Summarize this conversation in a few sentences, then list its facts.\n\n"
    return [
        {"role": "system", "content": f"Session {session}."},
        {"role": "user", "content": ask + "\n".join(turns)},
    ]


def timed(model: LocalChat, mode: str, prompt: list[dict[str, str]], max_tokens: int) -> tuple:
    before = (model.usage.prompt_tokens, model.usage.completion_tokens)
    started = time.monotonic()
    model.greedy_first = mode != "grammar-full"
    if mode.startswith("grammar"):
        try:
            model.chat_json(prompt, Summary, max_tokens=max_tokens)
        except Exception as exc:  # a max_tokens cut leaves the JSON unfinished: still timed
            log(f"  ({type(exc).__name__}: counted anyway)")
    else:
        model.chat_text(prompt, max_tokens=max_tokens)
    seconds = time.monotonic() - started
    return (
        seconds,
        model.usage.prompt_tokens - before[0],
        model.usage.completion_tokens - before[1],
    )


def locomo_session(path: Path, number: int) -> list[dict[str, str]]:
    """Consolidation's own prompt for session ``number`` of a LoCoMo conversation file."""
    import json
    from datetime import datetime

    from aios_memory.client.consolidate.prompt import Turn
    from aios_memory.client.consolidate.prompt import messages as consolidation_messages

    conversation = json.loads(path.read_text(encoding="utf-8"))
    when = datetime.strptime(conversation[f"session_{number}_date_time"], "%I:%M %p on %d %B, %Y")
    turns = [
        Turn(i + 1, t["speaker"], f"{t['speaker']}: {t['text']}")
        for i, t in enumerate(conversation[f"session_{number}"])
    ]
    chat, _ = consolidation_messages(
        turns, base=when.date(), summary_words=75, max_facts=8, budget_chars=12000
    )
    return chat


def compare_on_sessions(model: LocalChat, path: Path, sessions: list[int], params: dict) -> None:
    """Greedy-first against full-mask grammar sampling on real consolidation prompts: the
    seconds of each and whether the answers are the same (they must be, at temperature 0)."""
    from aios_memory.client.consolidate.prompt import SessionDigest, answer_budget

    budget = answer_budget(100, 8)
    for number in sessions:
        chat, seen = locomo_session(path, number), {}
        modes = ("grammar", "grammar-full")
        for mode in modes if number % 2 else modes[::-1]:  # alternate which goes first
            model.greedy_first = mode == "grammar"
            model.close()  # a cold start for each: no prompt prefix is reused
            model.count_tokens("load")
            before = model.usage.completion_tokens
            started, cpu = time.monotonic(), time.process_time()
            try:
                seen[mode] = model.chat_json(chat, SessionDigest, max_tokens=budget).model_dump()
            except Exception as exc:  # an unfinished answer is still timed
                seen[mode] = f"{type(exc).__name__}"
            emit(
                "llm_speed",
                {**params, "mode": mode, "locomo": path.stem, "session": number},
                result=f"session-{mode}",
                seconds=round(time.monotonic() - started, 2),
                cpu_seconds=round(time.process_time() - cpu, 2),
                completion_tokens=model.usage.completion_tokens - before,
            )
        emit(
            "llm_speed",
            {**params, "locomo": path.stem, "session": number},
            result="same-answer",
            same=seen["grammar"] == seen["grammar-full"],
        )


def grammar_cost(model: LocalChat, params: dict) -> None:
    """CPU time of the grammar per generated token: masking the whole vocabulary against
    checking one token, stepping both through one fixed consolidation answer."""
    import ctypes
    import json

    import llama_cpp
    from llama_cpp.llama_grammar import LlamaGrammar

    from aios_memory.client.consolidate.prompt import SessionDigest

    llama = model._loaded()
    grammar = LlamaGrammar.from_json_schema(
        json.dumps(SessionDigest.model_json_schema()), verbose=False
    )
    answer = json.dumps(ANSWER)
    tokens = llama.tokenize(answer.encode(), add_bos=False, special=False)
    dtype = np.dtype([("id", np.intc), ("logit", np.single), ("p", np.single)], align=True)
    everything = np.arange(llama.n_vocab(), dtype=np.intc)
    for mode in ("mask-all", "check-one", "mask-all", "check-one"):
        sampler = llama_cpp.llama_sampler_init_grammar(
            llama._model.vocab, grammar._grammar.encode(), grammar._root.encode()
        )
        size = len(everything) if mode == "mask-all" else 1
        data = np.recarray((size,), dtype=dtype)
        candidates = llama_cpp.llama_token_data_array(
            data=data.ctypes.data_as(llama_cpp.llama_token_data_p), size=size, sorted=False
        )
        cpu = time.process_time()
        for token in tokens:
            data.id[:] = everything if size > 1 else token
            data.logit[:], data.p[:] = 0.0, 0.0
            candidates.size, candidates.sorted, candidates.selected = size, False, -1
            llama_cpp.llama_sampler_apply(sampler, ctypes.byref(candidates))
            llama_cpp.llama_sampler_accept(sampler, token)
        spent = time.process_time() - cpu
        llama_cpp.llama_sampler_free(sampler)
        emit(
            "llm_speed",
            {**params, "mode": mode, "vocabulary": len(everything)},
            result="grammar-cost",
            tokens=len(tokens),
            cpu_ms_per_token=round(spent / len(tokens) * 1000, 3),
        )


def batch_cost(model: LocalChat, params: dict, context: int = 900) -> None:
    """Would speculative decoding pay here? The cost of evaluating 1, 2, 4 and 8 tokens in one
    batch after ``context`` tokens: verifying k drafted tokens costs one batch of k + 1, so it
    pays only where a batch costs much less than its tokens one by one (a memory-bound model;
    on 2 cores this one is compute-bound). The best of 3 rounds of 5 evaluations each."""
    llama = model._loaded()
    text = " ".join(LINES * 20)
    tokens = llama.tokenize(text.encode(), add_bos=True, special=False)[:context]
    llama.reset()
    llama.eval(tokens)
    base = llama.n_tokens
    best: dict[int, float] = {}
    for _ in range(3):
        for k in (1, 2, 4, 8):
            started = time.perf_counter()
            for _ in range(5):
                llama.n_tokens = base  # eval drops the cache past n_tokens first
                llama.eval(tokens[100 : 100 + k])
            best[k] = min(best.get(k, float("inf")), (time.perf_counter() - started) / 5)
    llama.n_tokens = base
    for k, seconds in best.items():
        emit(
            "llm_speed",
            {**params, "context": base, "batch": k},
            result="batch-cost",
            ms=round(seconds * 1000, 1),
            of_one_by_one=round(seconds / (k * best[1]), 2),
        )


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--model-path", help="a GGUF file (default: the packaged default)")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--prompt-tokens", type=int, default=600)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument(
        "--locomo",
        type=Path,
        help="a LoCoMo conversation file: also time consolidation's real prompt for its "
        "--sessions, greedy-first against full-mask grammar sampling",
    )
    parser.add_argument("--sessions", default="1,2,3", help="session numbers for --locomo")
    args = parser.parse_args()
    path = Path(args.model_path) if args.model_path else default_model_path()
    settings = LLMSettings(model_path=str(path), threads=args.threads, retries=0, context=2048)
    model = LocalChat(settings)
    started = time.monotonic()
    model.count_tokens("load")
    params = {"model": path.name, "threads": args.threads, "max_tokens": args.max_tokens}
    emit("llm_speed", params, result="load", seconds=round(time.monotonic() - started, 2))
    for round_ in range(args.rounds):
        for number, mode in enumerate(("grammar", "grammar-full", "free")):
            session = round_ * 10 + number
            prefill, prompt_tokens, _ = timed(
                model, mode, messages(session, args.prompt_tokens, model), 1
            )
            total, _, completion = timed(
                model, mode, messages(session + 100, args.prompt_tokens, model), args.max_tokens
            )
            decode = max(total - prefill, 1e-9)
            emit(
                "llm_speed",
                {**params, "mode": mode, "round": round_},
                result=mode,
                prompt_tokens=prompt_tokens,
                prompt_tokens_per_s=round(prompt_tokens / prefill, 1),
                completion_tokens=completion,
                completion_tokens_per_s=round(completion / decode, 2),
                prompt_seconds=round(prefill, 2),
                completion_seconds=round(decode, 2),
            )
            log(f"{mode} round {round_}: done")
    grammar_cost(model, params)
    batch_cost(model, params)
    if args.locomo:
        sessions = [int(n) for n in args.sessions.split(",")]
        compare_on_sessions(model, args.locomo, sessions, params)
    model.close()


if __name__ == "__main__":
    main()
