"""Which codec each tier's new memories get: defaults, per-tier overrides, parsing.

The policy is the most a tier may spend on compression; ``encode_text``
falls back to a cheaper codec wherever that is smaller or the costlier one
fails. A client is one tenant's, so a client's policy is that tenant's.
"""

from __future__ import annotations

from collections.abc import Mapping

from aios_memory.schemas import (
    CODEC_LM,
    CODEC_SEALED,
    CODEC_ZSTD_DICT,
    CODECS,
    TIERS,
    InvalidValueError,
)

__all__ = ["DEFAULT_CODEC_POLICY", "parse_codec_policy"]

# lm costs about as much to decode as to encode (tens of ms to a few hundred a memory),
# so no tier takes it by default: `aimem recompress --codec lm` applies it to memories
# that are old enough to be read rarely, or a tenant opts a tier in.
DEFAULT_CODEC_POLICY: dict[str, str] = {tier: CODEC_ZSTD_DICT for tier in TIERS}


def parse_codec_policy(value: str | Mapping[str, str] | None) -> dict[str, str]:
    """The default policy with ``value``'s overrides: ``"long_term=lm,core=zstd"`` or a dict.

    Raises
    ------
    InvalidValueError
        An unknown tier or codec, or text that is not ``tier=codec`` pairs.
    """
    policy = dict(DEFAULT_CODEC_POLICY)
    if not value:
        return policy
    pairs = value.items() if isinstance(value, Mapping) else _pairs(value)
    for tier, codec in pairs:
        if tier not in TIERS:
            raise InvalidValueError(
                f"codec policy names tier {tier!r}; tiers are {list(TIERS)}", field="codecs"
            )
        if codec not in CODECS or codec == CODEC_SEALED:
            raise InvalidValueError(
                f"codec policy names codec {codec!r}; codecs are "
                f"{sorted(set(CODECS) - {CODEC_SEALED})} (privacy, not the "
                "policy, decides what is sealed)",
                field="codecs",
            )
        policy[tier] = codec
    return policy


def _pairs(text: str) -> list[tuple[str, str]]:
    pairs = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        tier, sep, codec = part.partition("=")
        if not sep:
            raise InvalidValueError(
                f"codec policy {text!r}: write tier=codec pairs separated by "
                f"commas, e.g. long_term={CODEC_LM},core=zstd",
                field="codecs",
            )
        pairs.append((tier.strip(), codec.strip()))
    return pairs
