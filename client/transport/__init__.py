"""The Flight layer under the SDK and the sync daemon.

``Transport`` makes every call (with a timeout, the bearer token, and every
pyarrow or gRPC error translated into the ``AiosMemoryError`` tree in one
place); ``tls_options`` turns certificates given as paths or PEM bytes into
what Flight takes, and a failed handshake into a message that names the fix.
"""

from .flight import WRITE_SIZE_LIMIT, Transport
from .tls import TLS_SCHEME, PemSource, TlsOptions, tls_failure, tls_options

__all__ = ["Transport", "WRITE_SIZE_LIMIT", "TlsOptions", "PemSource", "TLS_SCHEME",
           "tls_options", "tls_failure"]  # fmt: skip
