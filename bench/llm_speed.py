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
compare the modes within one run). Usage: ``python bench/llm_speed.py [--model-path GGUF]``.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

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


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--model-path", help="a GGUF file (default: the packaged default)")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--prompt-tokens", type=int, default=600)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=1)
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
    model.close()


if __name__ == "__main__":
    main()
