"""The one place where server-side errors become Flight errors.

Every handler runs inside ``flight_errors()``: an ``AiosMemoryError`` leaves
as the matching Flight error with ``extra_info`` set by ``encode_error``;
anything else is logged here with its traceback and leaves as an internal
error without one, so no Python traceback ever crosses the wire.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.flight as flight

from aios_memory.schemas import (
    AiosMemoryError,
    AuthenticationError,
    DeadlineExceededError,
    EmbedderError,
    InvalidValueError,
    PermissionDeniedError,
    ServerInternalError,
    encode_error,
)

__all__ = ["flight_errors", "to_flight_error"]

log = logging.getLogger("aios_memory.server")


def to_flight_error(error: AiosMemoryError) -> flight.FlightError:
    """The Flight error class a client's gRPC stack understands, carrying our code."""
    extra = encode_error(error)
    if isinstance(error, AuthenticationError):
        return flight.FlightUnauthenticatedError(error.message, extra_info=extra)
    if isinstance(error, PermissionDeniedError):
        return flight.FlightUnauthorizedError(error.message, extra_info=extra)
    if isinstance(error, DeadlineExceededError):
        return flight.FlightTimedOutError(error.message, extra_info=extra)
    if isinstance(error, (ServerInternalError, EmbedderError)):
        return flight.FlightInternalError(error.message, extra_info=extra)
    return flight.FlightServerError(error.message, extra_info=extra)


@contextlib.contextmanager
def flight_errors(call: str) -> Iterator[None]:
    """Translate whatever a handler raises; ``call`` names it in the log."""
    try:
        yield
    except flight.FlightError:
        raise
    except AiosMemoryError as exc:
        log.info("%s refused: %s %s", call, exc.code, exc.message)
        raise to_flight_error(exc) from None
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        log.info("%s refused: invalid Arrow data: %s", call, exc)
        raise to_flight_error(InvalidValueError(f"invalid Arrow data: {exc}")) from None
    except Exception:
        log.exception("%s failed", call)
        raise to_flight_error(
            ServerInternalError(f"{call} failed inside the server; the server log has the details")
        ) from None
