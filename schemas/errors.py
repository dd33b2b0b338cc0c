"""The one error hierarchy, shared by server and client.

Every error has a machine-readable ``code``. The server raises these; one
translator turns them into Flight errors whose ``extra_info`` is
``{"v": 1, "code": ..., "message": ..., "detail": {...}}``; the client turns
that back into the same class. So a test can assert the exact class on both
sides of the wire, and no Python traceback ever crosses it.

::

    AiosMemoryError
    ├── ConnectionFailedError        server not reachable (code UNAVAILABLE)
    ├── DeadlineExceededError        the call's timeout ran out (TIMEOUT)
    ├── AuthenticationError          missing or wrong token (UNAUTHENTICATED)
    │   ├── TokenInvalidError        a token that is malformed or not signed by this server
    │   ├── TokenExpiredError        a token past its expiry
    │   ├── TokenRevokedError        a token revoked with `aimem token revoke`
    │   └── AuthStateError           the server's key, token or revocation files are missing or
    │                                damaged: scoped tokens are refused until they are repaired
    ├── PermissionDeniedError        a valid token without the right (PERMISSION_DENIED)
    ├── InvalidRequestError          the request is malformed (INVALID_REQUEST)
    │   ├── UnsupportedVersionError  wire version this side does not speak
    │   ├── SchemaMismatchError      a batch whose Arrow schema is not the record schema
    │   ├── InvalidValueError        a field outside its range or set
    │   │   ├── UnknownTierError
    │   │   ├── InvalidUtf8Error
    │   │   ├── TextTooLargeError
    │   │   ├── InvalidVectorError   NaN/inf, zero norm, wrong dimension
    │   │   ├── InvalidFilterError
    │   │   ├── TierPolicyError      a tier this server or sync does not carry
    │   │   └── SceneErrorBoundError a scene whose measured coding error exceeds its declared bound
    │   ├── DuplicateIdError         one id twice in one put
    │   ├── LimitExceededError       too many rows/bytes in one call
    │   ├── IncompleteWriteError     a put stream that ended before its commit message
    │   └── SyncProtocolError        a malformed or out-of-order sync message
    ├── CorruptDataError             payload that does not decode or match its hash
    │   ├── CodecMismatchError       a payload made by a model or dictionary this side lacks
    │   └── TamperedError            ciphertext that fails authentication (swapped, replayed...)
    ├── KeyMissingError              an encrypted memory whose tenant key this side lacks
    ├── CodecUnavailableError        a codec whose optional extra is not installed
    ├── EmbedderError                the embedder is missing or failed
    ├── LLMError                     the language model (consolidation) failed (LLM_FAILED)
    │   ├── LLMUnavailableError      endpoint down, timed out or model missing (LLM_UNAVAILABLE)
    │   └── LLMOutputError           output that is not the JSON asked for, after retries
    │                                (LLM_INVALID_OUTPUT)
    ├── NotFoundError
    ├── StorageError                 the server's disk refused a write (STORAGE_ERROR)
    │   └── StorageFullError         ... because it is full (STORAGE_FULL)
    └── ServerInternalError          a bug on the server
"""

from __future__ import annotations

import json
from typing import Any

__all__ = [
    "AiosMemoryError",
    "ConnectionFailedError",
    "DeadlineExceededError",
    "AuthenticationError",
    "TokenInvalidError",
    "TokenExpiredError",
    "TokenRevokedError",
    "AuthStateError",
    "PermissionDeniedError",
    "DuplicateIdError",
    "TamperedError",
    "KeyMissingError",
    "InvalidRequestError",
    "UnsupportedVersionError",
    "SchemaMismatchError",
    "InvalidValueError",
    "UnknownTierError",
    "InvalidUtf8Error",
    "TextTooLargeError",
    "InvalidVectorError",
    "InvalidFilterError",
    "LimitExceededError",
    "IncompleteWriteError",
    "TierPolicyError",
    "SceneErrorBoundError",
    "SyncProtocolError",
    "CorruptDataError",
    "CodecMismatchError",
    "CodecUnavailableError",
    "EmbedderError",
    "LLMError",
    "LLMUnavailableError",
    "LLMOutputError",
    "NotFoundError",
    "StorageError",
    "StorageFullError",
    "ServerInternalError",
    "ERROR_CLASSES",
    "encode_error",
    "decode_error",
]

ERROR_WIRE_VERSION = 1


class AiosMemoryError(Exception):
    """Base of every error this package raises.

    Attributes
    ----------
    code : str
        Stable machine-readable code (class attribute, travels over Flight).
    detail : dict
        Where and what: for example ``{"field": "tier", "row": 3}``.
    """

    code = "ERROR"

    def __init__(self, message: str, **detail: Any) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


class ConnectionFailedError(AiosMemoryError):
    code = "UNAVAILABLE"


class DeadlineExceededError(AiosMemoryError):
    code = "TIMEOUT"


class AuthenticationError(AiosMemoryError):
    code = "UNAUTHENTICATED"


class TokenInvalidError(AuthenticationError):
    code = "TOKEN_INVALID"


class TokenExpiredError(AuthenticationError):
    code = "TOKEN_EXPIRED"


class TokenRevokedError(AuthenticationError):
    code = "TOKEN_REVOKED"


class AuthStateError(AuthenticationError):
    code = "AUTH_STATE"


class PermissionDeniedError(AiosMemoryError):
    code = "PERMISSION_DENIED"


class InvalidRequestError(AiosMemoryError):
    code = "INVALID_REQUEST"


class UnsupportedVersionError(InvalidRequestError):
    code = "UNSUPPORTED_VERSION"


class SchemaMismatchError(InvalidRequestError):
    code = "SCHEMA_MISMATCH"


class InvalidValueError(InvalidRequestError):
    code = "INVALID_VALUE"


class UnknownTierError(InvalidValueError):
    code = "UNKNOWN_TIER"


class InvalidUtf8Error(InvalidValueError):
    code = "INVALID_UTF8"


class TextTooLargeError(InvalidValueError):
    code = "TEXT_TOO_LARGE"


class InvalidVectorError(InvalidValueError):
    code = "INVALID_VECTOR"


class InvalidFilterError(InvalidValueError):
    code = "INVALID_FILTER"


class TierPolicyError(InvalidValueError):
    code = "TIER_NOT_ALLOWED"


class SceneErrorBoundError(InvalidValueError):
    code = "SCENE_ERROR_BOUND"


class DuplicateIdError(InvalidValueError):
    code = "DUPLICATE_ID"


class LimitExceededError(InvalidRequestError):
    code = "LIMIT_EXCEEDED"


class IncompleteWriteError(InvalidRequestError):
    code = "INCOMPLETE_WRITE"


class SyncProtocolError(InvalidRequestError):
    code = "SYNC_PROTOCOL"


class CorruptDataError(AiosMemoryError):
    code = "CORRUPT_DATA"


class CodecMismatchError(CorruptDataError):
    code = "CODEC_MISMATCH"


class TamperedError(CorruptDataError):
    code = "TAMPERED"


class KeyMissingError(AiosMemoryError):
    code = "KEY_MISSING"


class CodecUnavailableError(AiosMemoryError):
    code = "CODEC_UNAVAILABLE"


class EmbedderError(AiosMemoryError):
    code = "EMBEDDER_FAILED"


class LLMError(AiosMemoryError):
    """The language model behind consolidation failed; nothing was written for that session."""

    code = "LLM_FAILED"


class LLMUnavailableError(LLMError):
    """The model endpoint is down or timed out (after retries), or the local model is missing."""

    code = "LLM_UNAVAILABLE"


class LLMOutputError(LLMError):
    """The model answered, but not with the JSON asked for (after retries)."""

    code = "LLM_INVALID_OUTPUT"


class NotFoundError(AiosMemoryError):
    code = "NOT_FOUND"


class StorageError(AiosMemoryError):
    """A write the server's storage refused (an I/O error); nothing of it was stored.

    Reads keep working and the server recovers by itself once the cause is gone;
    ``detail["outcome"]`` is ``"unknown"`` in the rare case where the server could not
    tell whether the write was stored (a retry is idempotent either way).
    """

    code = "STORAGE_ERROR"


class StorageFullError(StorageError):
    """The server's disk is full; free space there and retry."""

    code = "STORAGE_FULL"


class ServerInternalError(AiosMemoryError):
    code = "INTERNAL"


def _all_subclasses(cls: type[AiosMemoryError]) -> list[type[AiosMemoryError]]:
    out: list[type[AiosMemoryError]] = [cls]
    for sub in cls.__subclasses__():
        out.extend(_all_subclasses(sub))
    return out


ERROR_CLASSES: dict[str, type[AiosMemoryError]] = {
    c.code: c for c in _all_subclasses(AiosMemoryError)
}


def encode_error(error: AiosMemoryError) -> bytes:
    """Serialize an error for ``FlightError.extra_info``."""
    body = {
        "v": ERROR_WIRE_VERSION,
        "code": error.code,
        "message": error.message,
        "detail": _jsonable(error.detail),
    }
    return json.dumps(body, separators=(",", ":")).encode()


def decode_error(extra_info: bytes | None) -> AiosMemoryError | None:
    """Rebuild the error a server sent, or None if ``extra_info`` is not ours."""
    if not extra_info:
        return None
    try:
        body = json.loads(extra_info)
        code, message = body["code"], body["message"]
        detail = body.get("detail") or {}
    except (ValueError, KeyError, TypeError):
        return None
    cls = ERROR_CLASSES.get(code, AiosMemoryError)
    error = cls(str(message), **(detail if isinstance(detail, dict) else {}))
    if cls is AiosMemoryError:
        error.code = str(code)  # an unknown code from a newer server stays visible
    return error


def _jsonable(detail: dict[str, Any]) -> dict[str, Any]:
    return {
        k: v if isinstance(v, (str, int, float, bool, type(None), list)) else str(v)
        for k, v in detail.items()
    }
