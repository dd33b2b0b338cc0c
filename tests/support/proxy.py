"""A TCP relay in front of a server that can cut every connection "at any byte".

``CutProxy`` listens on 127.0.0.1 port 0 and relays each accepted connection
to the target, both directions, byte for byte. ``cut_after(n, direction)``
arms a switch: once ``n`` more bytes have passed in that direction (over all
connections), the bytes up to the n-th are delivered, then every open
connection is closed mid-stream. New connections are accepted and relayed normally after
that, so a client's next call (gRPC reconnects) goes through.

    >>> with CutProxy("127.0.0.1", port) as proxy:                # doctest: +SKIP
    ...     proxy.cut_after(1500, "down")
    ...     sync_once(FlightReplica(device_uri, tok), FlightReplica(proxy.uri, tok))

Bounded: at most ``max_connections`` open at once (more are refused), a
lifetime after which it stops by itself, daemon threads; ``close()`` (or the
``with`` block) closes every socket and joins the threads.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import struct
import threading
import time
from typing import Any

__all__ = ["CutProxy", "UP", "DOWN"]

UP, DOWN = "up", "down"  # client -> server, server -> client
_CHUNK = 16 * 1024


def _reset(sock: socket.socket) -> None:
    """Close with RST (SO_LINGER 0): the peer sees a broken connection, not a clean end."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


class _Pair:
    """One relayed connection: the accepted socket and the one to the target."""

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.sockets = {UP: (client, upstream), DOWN: (upstream, client)}
        self.closed = threading.Event()
        self._lock = threading.Lock()

    def close(self, reset: bool = False) -> None:
        with self._lock:
            if self.closed.is_set():
                return
            self.closed.set()
        for sock in self.sockets[UP]:
            if reset:
                _reset(sock)
            else:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()


class CutProxy:
    """A threaded TCP relay to ``host:port`` with a switch that cuts after N bytes.

    Parameters
    ----------
    host, port : str, int
        The server to relay to.
    lifetime : float
        Seconds after which the proxy stops by itself (a test that forgot it cannot hang).
    max_connections : int
        Connections open at once; more are closed on accept.
    """

    def __init__(
        self, host: str, port: int, *, lifetime: float = 600.0, max_connections: int = 32
    ) -> None:
        self.target = (host, port)
        self.max_connections = max_connections
        self._deadline = time.monotonic() + lifetime
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._pairs: set[_Pair] = set()
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._armed: tuple[str, int] | None = None
        self.cuts = 0
        self.relayed = {UP: 0, DOWN: 0}
        self._accepter = threading.Thread(
            target=self._accept_loop, name="proxy-accept", daemon=True
        )
        self._accepter.start()

    @classmethod
    def to_uri(cls, uri: str, **options: Any) -> CutProxy:
        """A proxy in front of ``grpc://host:port``."""
        host, port = uri.rsplit("//", 1)[-1].rsplit(":", 1)
        return cls(host, int(port), **options)

    @property
    def uri(self) -> str:
        return f"grpc://127.0.0.1:{self.port}"

    def cut_after(self, nbytes: int, direction: str = DOWN) -> None:
        """Reset every connection once ``nbytes`` more bytes have passed ``direction``."""
        if direction not in (UP, DOWN):
            raise ValueError(f"direction must be {UP!r} or {DOWN!r}")
        with self._lock:
            self._armed = (direction, max(0, int(nbytes)))

    def disarm(self) -> bool:
        """Take the switch off; True if it was still armed (no cut happened)."""
        with self._lock:
            armed, self._armed = self._armed, None
        return armed is not None

    def cut_now(self, reset: bool = False) -> None:
        """Close every open connection: bytes already relayed arrive, then the end (or RST)."""
        with self._lock:
            pairs = list(self._pairs)
            self.cuts += 1
        for pair in pairs:
            pair.close(reset=reset)

    # -- threads ----------------------------------------------------------------------------
    def _accept_loop(self) -> None:
        while not self._stop.is_set() and time.monotonic() < self._deadline:
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            self._start_pair(client)
        self._stop.set()
        self._close_all()

    def _start_pair(self, client: socket.socket) -> None:
        with self._lock:
            full = len(self._pairs) >= self.max_connections
        if full:
            _reset(client)
            return
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            _reset(client)
            return
        for sock in (client, upstream):
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pair = _Pair(client, upstream)
        with self._lock:
            self._pairs.add(pair)
            self._threads = [t for t in self._threads if t.is_alive()]
            threads = [
                threading.Thread(target=self._pump, args=(pair, d), daemon=True, name=f"proxy-{d}")
                for d in (UP, DOWN)
            ]
            self._threads += threads
        for thread in threads:
            thread.start()

    def _pump(self, pair: _Pair, direction: str) -> None:
        source, sink = pair.sockets[direction]
        selector = selectors.DefaultSelector()
        try:
            selector.register(source, selectors.EVENT_READ)
            while not pair.closed.is_set() and not self._stop.is_set():
                if not selector.select(timeout=0.2):
                    continue
                data = source.recv(_CHUNK)
                if not data:
                    break
                if not self._forward(pair, direction, sink, data):
                    return
        except (OSError, ValueError):  # the other pump or a cut closed the sockets
            pass
        finally:
            selector.close()
            pair.close()
            with self._lock:
                self._pairs.discard(pair)

    def _forward(self, pair: _Pair, direction: str, sink: socket.socket, data: bytes) -> bool:
        """Send ``data`` on, or its allowed head and then cut; False once cut."""
        with self._lock:
            armed = self._armed
            cut = armed is not None and armed[0] == direction and armed[1] <= len(data)
            if cut:
                data = data[: armed[1]]
                self._armed = None
            elif armed is not None and armed[0] == direction:
                self._armed = (direction, armed[1] - len(data))
            self.relayed[direction] += len(data)
        if data:
            sink.sendall(data)
        if cut:
            self.cut_now()
            return False
        return True

    # -- lifetime ---------------------------------------------------------------------------
    def _close_all(self) -> None:
        with self._lock:
            pairs = list(self._pairs)
        for pair in pairs:
            pair.close()
        with contextlib.suppress(OSError):
            self._listener.close()

    def close(self) -> None:
        """Stop accepting, close every socket, join the threads."""
        self._stop.set()
        self._accepter.join(timeout=5)
        self._close_all()
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout=5)

    def __enter__(self) -> CutProxy:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()
