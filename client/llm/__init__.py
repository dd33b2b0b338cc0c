"""One interface to a chat language model: any OpenAI-compatible endpoint, or a local model run
by llama.cpp (the embedded default). Consolidation is its user.

::

    from aios_memory.client.llm import LLMSettings, open_llm

    llm = open_llm(LLMSettings(url="http://127.0.0.1:8080/v1"))   # or open_llm(): AIMEM_LLM_*
    facts = llm.chat_json(messages, Facts, max_tokens=400)         # a validated pydantic object

Errors are ``LLMUnavailableError`` (endpoint down or timed out after retries, model or extra
missing) and ``LLMOutputError`` (not the JSON asked for, after retries); nothing of openai,
httpx, pydantic or llama.cpp escapes.
"""

from ._protocol import ChatModel, T, Usage
from .answer_cache import CachedChat
from .local_chat import LocalChat
from .model_files import default_model_path
from .openai_chat import OpenAIChat
from .settings import LLM_SETTINGS_HELP, STRUCTURED_MODES, LLMSettings, is_loopback_url

__all__ = [
    "CachedChat",
    "ChatModel",
    "LLMSettings",
    "LLM_SETTINGS_HELP",
    "LocalChat",
    "OpenAIChat",
    "STRUCTURED_MODES",
    "T",
    "Usage",
    "default_model_path",
    "is_loopback_url",
    "open_llm",
]


def open_llm(settings: LLMSettings | None = None) -> ChatModel:
    """The chat model ``settings`` name (default ``LLMSettings.from_env()``).

    ``url`` set: an ``OpenAIChat`` over that endpoint; unset: the embedded ``LocalChat``;
    either behind a ``CachedChat`` when ``cache`` names a file of answers.

    Raises
    ------
    LLMUnavailableError
        What the backend needs is missing (the ``[llm]`` extra, the model file, or, when no
        model is named, an endpoint that says which one it serves).
    InvalidValueError
        A bad ``AIMEM_LLM_*`` value.
    """
    settings = settings or LLMSettings.from_env()
    model: ChatModel = LocalChat(settings) if settings.url is None else OpenAIChat(settings)
    if settings.cache:
        return CachedChat(model, settings.cache, settings)
    return model
