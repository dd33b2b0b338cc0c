"""The codec registry: every stored payload names how it decodes.

The implementations live where the bytes are made (the client); this module
is the shared list, so a server can refuse a codec no client could decode.
Later codecs (``zstd-dict``, ``lm``, encryption) add entries here; an entry is
never removed or reused, so old payloads stay readable forever.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Codec", "CODECS", "CODEC_NONE", "CODEC_ZSTD"]


@dataclass(frozen=True)
class Codec:
    """A payload encoding: ``name`` is what records carry in ``codec``."""

    name: str
    version: int
    description: str


CODEC_NONE = "none"
CODEC_ZSTD = "zstd"

CODECS: dict[str, Codec] = {
    CODEC_NONE: Codec(CODEC_NONE, 1, "UTF-8 text as is"),
    CODEC_ZSTD: Codec(
        CODEC_ZSTD, 1,
        "a zstd frame without magic number, checksum or dictionary id; content size kept "
        "so the reader can refuse a bomb before allocating",
    ),
}
