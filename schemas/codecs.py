"""The codec registry: every stored payload names how it decodes.

A record's ``codec`` names the entry below; its ``dict_id`` names the
parameter the codec needs beyond the payload: the trained dictionary for
``zstd-dict``, the model fingerprint for ``lm``. The implementations live where
the bytes are made (the client); this module is the shared list, so a server
can refuse a codec no client could decode. An entry is never removed or reused
and a codec's bytes never change meaning, so old payloads stay readable
forever: a new format is a new name.

Dictionaries are records of their own (``kind`` = ``DICTIONARY_KIND``): the
payload is the zstd dictionary, ``dict_id`` its id, the tier the one whose
texts it was trained on. So they live, sync and stay private exactly like
the memories that need them: per tenant, never across tenants.

A ``sealed`` record is end-to-end encrypted by its client (``client.sealing``):
its payload is AES-256-GCM ciphertext of an envelope holding the real codec,
dict_id, payload, hashes, agent, session, metadata and vector, so a server
without the tenant's key can store and sync it but never decode it.
"""

from __future__ import annotations

from dataclasses import dataclass

from .scenes import SCENE_KIND

__all__ = [
    "Codec",
    "CODECS",
    "CODEC_NONE",
    "CODEC_ZSTD",
    "CODEC_ZSTD_DICT",
    "CODEC_LM",
    "CODEC_SEALED",
    "DICTIONARY_KIND",
    "SYSTEM_KINDS",
    "dictionary_id_of",
]


@dataclass(frozen=True)
class Codec:
    """A payload encoding: ``name`` is what records carry in ``codec``.

    ``dict_id`` says what the record's ``dict_id`` holds for this codec
    (empty: it must be null).
    """

    name: str
    version: int
    description: str
    dict_id: str = ""
    extra: str = ""  # the optional install that provides it, if any


CODEC_NONE = "none"
CODEC_ZSTD = "zstd"
CODEC_ZSTD_DICT = "zstd-dict"
CODEC_LM = "lm"
CODEC_SEALED = "sealed"

CODECS: dict[str, Codec] = {
    CODEC_NONE: Codec(CODEC_NONE, 1, "UTF-8 text as is"),
    CODEC_ZSTD: Codec(
        CODEC_ZSTD,
        1,
        "a zstd frame without magic number, checksum or dictionary id; content size kept "
        "so the reader can refuse a bomb before allocating",
    ),
    CODEC_ZSTD_DICT: Codec(
        CODEC_ZSTD_DICT,
        1,
        "a zstd frame made with the tenant's trained dictionary, without magic number, "
        "checksum, dictionary id or content size (the record carries raw_size)",
        dict_id="the dictionary record's dict_id",
    ),
    CODEC_LM: Codec(
        CODEC_LM,
        1,
        "range coding of the text's tokens under a local language model's next-token "
        "probabilities, conditioned on the record's agent",
        dict_id="the model fingerprint: first 4 bytes of SHA-256 over model file, runtime and "
        "codec parameters",
        extra="lm",
    ),
    CODEC_SEALED: Codec(
        CODEC_SEALED,
        1,
        "end-to-end encrypted: format byte, 4-byte key id, 12-byte nonce, then AES-256-GCM "
        "ciphertext of an envelope that holds the inner codec, payload and private fields; "
        "content_hash is the hash of this payload (see client.sealing)",
    ),
}

DICTIONARY_KIND = "zstd-dictionary"
# Kinds that are not text for people: never decoded as text, indexed or recalled
# (an episode's scene data is its own record, see ``scenes``).
SYSTEM_KINDS = frozenset({DICTIONARY_KIND, SCENE_KIND})


def dictionary_id_of(content_hash: bytes) -> int:
    """The ``dict_id`` of a dictionary: the first 4 bytes of its content hash, never 0.

    Made from the content, so two devices that train the same dictionary
    agree on its id and different dictionaries collide only by chance (1 in
    2^32 a pair; a collision is detected by hash on use and retrained).
    """
    value = int.from_bytes(content_hash[:4], "little")
    return value or 1
