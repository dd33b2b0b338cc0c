"""Server settings: one frozen dataclass, validated once.

Precedence: defaults < ``AIMEM_*`` environment < CLI flags (``aimem serve``
reads the environment through click's ``envvar``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from aios_memory.client.codec.keys import default_keys_dir
from aios_memory.flight_server.auth.tls import check_server_tls
from aios_memory.flight_server.lake.uri import parse_lake
from aios_memory.schemas import (
    DEFAULT_LIMITS,
    DEFAULT_PORT,
    DEFAULT_SYNC_TIERS,
    SERVER_ROLES,
    InvalidValueError,
    Limits,
    parse_sync_tiers,
)

from .embedder import DEFAULT_EMBED_BUDGET_SECONDS, DEFAULT_PIECES, EMBEDDERS

__all__ = ["ServerSettings", "SETTINGS_HELP", "VECTOR_INDEXES"]

VECTOR_INDEXES = ("hnsw", "ivf")

SETTINGS_HELP = {
    "data_dir": "directory holding the database, indexes and token",
    "host": "address to bind; 127.0.0.1 keeps the server on this machine",
    "port": "TCP port; 0 picks a free one",
    "token": "bearer token clients must send; generated and kept in DATA/token when unset",
    "embedder": "local (offline e5-small), openai (any OpenAI-compatible endpoint) or none",
    "embed_model": "model name for the openai embedder",
    "embed_base_url": "base URL of the OpenAI-compatible endpoint",
    "embed_max_pieces": "the local embedder reads a long text as at most this many "
    "one-window pieces (about 500 tokens each) spread over it, so its cost is bounded; "
    "the keyword index always gets the whole text",
    "embed_budget_seconds": "a write whose texts take longer than this to embed is refused "
    "(TIMEOUT, nothing stored); keep it under the clients' timeout",
    "hnsw_m": "hnswlib graph degree",
    "hnsw_ef_construction": "hnswlib build-time candidate list",
    "hnsw_ef_search": "hnswlib search-time candidate list (raised to k when k is larger)",
    "vector_persist_min": "vector indexes smaller than this are rebuilt on open instead of stored",
    "vector_index": "ivf (faiss IVF over 8-bit codes: keeps no second copy of the vectors, "
    "saves only its training and lists, takes the vectors from the records on open, exact "
    "below vector_persist_min) or hnsw (an hnswlib graph, whose saved file keeps every vector "
    "again as float32: about 4x the bytes; an existing graph is rebuilt as the other kind)",
    "ivf_nprobe": "IVF lists a vector search probes (more for selective filters)",
    "checkpoint_seconds": "how often dirty indexes are saved; 0 saves only at shutdown",
    "role": "device (stores every tier) or cloud (stores only the sync tiers, refuses others)",
    "sync_tiers": "tiers that leave the device in a sync round (default long_term and shared)",
    "clock_offset_ms": "added to the wall clock of this server's hybrid clock (for skew tests)",
    "tls_cert": "PEM certificate (chain) to serve grpc+tls:// with; needs tls_key",
    "tls_key": "PEM private key of tls_cert (unencrypted)",
    "tls_client_ca": "PEM CA that signs client certificates; set, clients must present one "
    "(mutual TLS)",
    "lake": "serve a cloud endpoint from a lake shared by any number of replicas: a directory "
    "or s3://bucket/prefix?endpoint=URL (credentials from AWS_ACCESS_KEY_ID and "
    "AWS_SECRET_ACCESS_KEY); DATA then holds only this replica's cache and token",
    "compact_seconds": "with --lake: merge each open tenant's small lake files this often "
    "(run it on one replica); 0 never",
    "compact_waste": "the embedded store rewrites its database by itself, at a checkpoint, "
    "when at least this share of it is dead space (deleted, superseded, re-encoded) and the "
    "file has 64 MiB or more; 0 never (aimem compact still does)",
    "max_staleness_ms": "with --lake: a read may skip asking the lake for newer writes for this "
    "long (0: every read sees every write acknowledged before it)",
    "accept_empty": "start even though DATA/memory.duckdb is missing beside indexes, a token or "
    "keys of a store that had records (on purpose: the orphaned indexes are moved aside)",
    "skip_integrity_check": "skip reading every block of the database at start to check its "
    "checksums (a damaged database is then found by the first read of a damaged block)",
    "keys_dir": "key store a device server opens end-to-end encrypted memories with, to index "
    "them (default AIMEM_KEYS or ~/.config/aimem/keys); a cloud never holds keys",
}


@dataclass(frozen=True)
class ServerSettings:
    """Everything ``aimem serve`` can be told; see SETTINGS_HELP for each field."""

    data_dir: Path
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    token: str | None = None
    embedder: str = "local"
    embed_model: str | None = None
    embed_base_url: str | None = None
    embed_max_pieces: int = DEFAULT_PIECES
    embed_budget_seconds: float = DEFAULT_EMBED_BUDGET_SECONDS
    hnsw_m: int = 16
    hnsw_ef_construction: int = 200
    hnsw_ef_search: int = 64
    vector_persist_min: int = 10_000
    vector_index: str = "ivf"
    ivf_nprobe: int = 16
    checkpoint_seconds: float = 300.0
    role: str = "device"
    sync_tiers: tuple[str, ...] = DEFAULT_SYNC_TIERS
    clock_offset_ms: int = 0
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    keys_dir: Path | None = None
    lake: str | None = None
    compact_seconds: float = 0.0
    compact_waste: float = 0.5
    max_staleness_ms: float = 0.0
    accept_empty: bool = False
    skip_integrity_check: bool = False
    limits: Limits = field(default=DEFAULT_LIMITS)

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_dir", Path(self.data_dir))
        if self.embedder not in EMBEDDERS:
            raise InvalidValueError(
                f"embedder must be one of {', '.join(EMBEDDERS)}, not {self.embedder!r}"
            )
        if self.embed_max_pieces < 1 or not self.embed_budget_seconds > 0:
            raise InvalidValueError(
                "--embed-max-pieces is at least 1 and --embed-budget-seconds above 0",
                field="embed_max_pieces" if self.embed_max_pieces < 1 else "embed_budget_seconds",
            )
        if not 0 <= self.port < 65536:
            raise InvalidValueError(f"port {self.port} is out of range")
        if self.role not in SERVER_ROLES:
            raise InvalidValueError(
                f"role must be one of {', '.join(SERVER_ROLES)}, not {self.role!r}"
            )
        object.__setattr__(self, "sync_tiers", parse_sync_tiers(self.sync_tiers))
        if self.hnsw_m < 2 or self.hnsw_ef_construction < 1 or self.hnsw_ef_search < 1:
            raise InvalidValueError("hnsw parameters must be positive")
        if self.vector_index not in VECTOR_INDEXES or self.ivf_nprobe < 1:
            raise InvalidValueError(
                f"vector_index is one of {', '.join(VECTOR_INDEXES)} and ivf_nprobe at least 1",
                field="vector_index" if self.ivf_nprobe >= 1 else "ivf_nprobe",
            )
        for name in ("tls_cert", "tls_key", "tls_client_ca"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, Path(getattr(self, name)))
        check_server_tls(self.tls_cert, self.tls_key, self.tls_client_ca)
        self._check_keys_dir()
        if self.lake is not None:
            parse_lake(self.lake)  # a bad URI is refused before anything starts
            if self.role != "cloud":
                raise InvalidValueError(
                    "--lake serves a cloud endpoint: add --role cloud "
                    "(a device keeps its own embedded store)",
                    field="lake",
                )
        if not 0.0 <= self.compact_waste <= 1.0:
            raise InvalidValueError("--compact-waste is from 0 to 1", field="compact_waste")
        for name in ("compact_seconds", "max_staleness_ms"):
            value = getattr(self, name)
            if value < 0 or (value and self.lake is None):
                raise InvalidValueError(
                    f"--{name.replace('_', '-')} is >= 0 and needs --lake", field=name
                )

    def _check_keys_dir(self) -> None:
        """A device opens sealed memories with its own key store; a cloud must never hold one."""
        if self.role == "cloud":
            if self.keys_dir is not None:
                raise InvalidValueError(
                    "a cloud server never holds tenant keys: it stores and syncs end-to-end "
                    "encrypted memories it cannot read. Drop --keys, or serve with --role device.",
                    field="keys_dir",
                )
            return
        object.__setattr__(
            self,
            "keys_dir",
            Path(self.keys_dir).expanduser() if self.keys_dir is not None else default_keys_dir(),
        )

    @property
    def tls(self) -> bool:
        """Whether the server serves ``grpc+tls://``."""
        return self.tls_cert is not None
