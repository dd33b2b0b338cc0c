"""``--llm-*``: the options of every command that talks to a chat model (``AIMEM_LLM_*``).

Flags win over the environment, the environment over the defaults (``LLMSettings``); the
settings with no flag (``context``, ``temperature``) come from ``AIMEM_LLM_*`` alone.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import click

from aios_memory.client.llm import LLM_SETTINGS_HELP, STRUCTURED_MODES, LLMSettings

__all__ = ["llm_options", "settings_from_options"]

# flag suffix, LLMSettings field, click type
_OPTIONS: tuple[tuple[str, str, Any], ...] = (
    ("url", "url", str),
    ("model", "model", str),
    ("api-key", "api_key", str),
    ("model-path", "model_path", click.Path(dir_okay=False)),
    ("timeout", "timeout_seconds", click.FloatRange(min=0, min_open=True)),
    ("retries", "retries", click.IntRange(0, 10)),
    ("structured", "structured", click.Choice(STRUCTURED_MODES)),
    ("threads", "threads", click.IntRange(1, 256)),
    ("cache", "cache", click.Path(dir_okay=False)),
)
_PARAMETERS = {"llm_" + flag.replace("-", "_"): field for flag, field, _ in _OPTIONS}


def llm_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--llm-url --llm-model --llm-api-key --llm-model-path --llm-timeout --llm-retries
    --llm-structured --llm-threads --llm-cache``; ``settings_from_options`` reads them."""
    for flag, field, kind in reversed(_OPTIONS):
        variable = "AIMEM_LLM_" + flag.upper().replace("-", "_")
        fn = click.option(
            f"--llm-{flag}",
            type=kind,
            envvar=variable,
            show_envvar=True,
            help=LLM_SETTINGS_HELP[field][0].upper() + LLM_SETTINGS_HELP[field][1:] + ".",
        )(fn)
    return fn


def settings_from_options(options: Mapping[str, Any]) -> LLMSettings:
    """``LLMSettings`` from a command's keyword arguments (the ``llm_*`` ones; others ignored)
    over ``LLMSettings.from_env()``.

    Raises
    ------
    InvalidValueError
        A value out of range (the message names it).
    """
    given = {
        field: options[name] for name, field in _PARAMETERS.items() if options.get(name) is not None
    }
    return dataclasses.replace(LLMSettings.from_env(), **given)
