"""The shared codec layer: what a record's bytes are, for the SDK, the server and sync alike.

The SDK makes payloads (compression, sealing) before anything is uploaded; the
server reads the same payloads to index them and to refuse what does not match
its hash. Both import this layer, and it imports nothing of the client above it
(only ``schemas``), so the server never loads the SDK::

    text          payload codecs: encode_text / decode_payload, Codebook, content_hash
    dictionaries  zstd dictionaries trained on a tenant's texts, kept as records
    _lm           the lm codec (range coding under a local language model; extra [lm])
    sealing       end-to-end encryption of private records: seal_row / open_row / Sealer
    _envelope     the binary envelope a sealed record carries
    keys          the tenants' data keys on a device (KeyStore), recovery and transfer codes
    vectors       unit vectors and their int8 form (normalize, quantize, dequantize)
    binary        centred binary codes with rescoring
    batches       record rows as validated Arrow batches
"""

from .batches import chunk_rows, rows_to_batch
from .keys import DEFAULT_ENCRYPT_AT, ENCRYPT_NEVER, KeyStore, TenantKey, default_keys_dir
from .sealing import Sealer, check_sealed, is_sealed, open_row, seal_row
from .text import (
    Codebook,
    Dictionary,
    EncodedText,
    content_hash,
    decode_payload,
    decode_text,
    encode_bytes,
    encode_text,
)
from .vectors import dequantize, normalize, normalize_rows, quantize

__all__ = [
    "Codebook", "Dictionary", "EncodedText", "content_hash", "decode_payload", "decode_text",
    "encode_bytes", "encode_text",
    "Sealer", "seal_row", "open_row", "check_sealed", "is_sealed",
    "KeyStore", "TenantKey", "default_keys_dir", "DEFAULT_ENCRYPT_AT", "ENCRYPT_NEVER",
    "normalize", "normalize_rows", "quantize", "dequantize",
    "chunk_rows", "rows_to_batch",
]  # fmt: skip
