"""Where a lake lives: ``--lake`` parsed into a Lance URI and its storage options.

Accepted forms::

    /srv/aimem-lake                         a directory (shared by replicas on one machine
    file:///srv/aimem-lake                  or on a shared file system)
    s3://bucket/prefix?endpoint=http://127.0.0.1:8333&region=us-east-1

Credentials never travel in the URI: they come from the environment
(``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``), which
Lance's object store reads itself. A URI that carries any (user info, or a
query key naming a secret) is refused, so it cannot end up in a log or a
process list. ``describe()`` is what logs show.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from aios_memory.schemas import InvalidValueError

__all__ = ["LakeLocation", "parse_lake"]

# Query keys a lake URI may carry, and the Lance storage option each becomes.
_OPTIONS = {"endpoint": "aws_endpoint", "region": "aws_region"}
_SECRET_WORDS = ("secret", "password", "token", "key", "credential")


@dataclass(frozen=True)
class LakeLocation:
    """A lake's root URI (no query) and the storage options Lance needs to reach it."""

    root: str
    options: dict[str, str] = field(default_factory=dict)

    def dataset_uri(self, tenant: str) -> str:
        """The Lance dataset of one tenant's record versions. Hex keeps any tenant name
        a safe path segment; the readable prefix helps whoever lists the bucket."""
        readable = "".join(c for c in tenant if c.isalnum() or c in "-_")[:32]
        digest = hashlib.sha256(tenant.encode()).hexdigest()[:16]
        return f"{self.root}/tenants/{readable}-{digest}.lance"

    def describe(self) -> str:
        endpoint = self.options.get("aws_endpoint")
        return self.root + (f" (endpoint {endpoint})" if endpoint else "")

    @property
    def lance_options(self) -> dict[str, str] | None:
        return dict(self.options) or None


def parse_lake(text: str) -> LakeLocation:
    """``--lake`` as given to ``aimem serve`` (module docstring)."""
    if "://" not in text or text.startswith("file://"):
        path = Path(text.removeprefix("file://")).expanduser().resolve()
        return LakeLocation(str(path))
    parts = urlsplit(text)
    if parts.scheme != "s3":
        raise InvalidValueError(
            f"a lake is a directory or s3://bucket/prefix, not {parts.scheme}://", field="lake"
        )
    if parts.username or parts.password or "@" in parts.netloc:
        raise InvalidValueError(
            "a lake URI must not carry credentials: set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY in the environment",
            field="lake",
        )
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    unknown = set(query) - set(_OPTIONS)
    if any(word in key.lower() for key in unknown for word in _SECRET_WORDS):
        raise InvalidValueError(
            "a lake URI must not carry credentials: set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY in the environment",
            field="lake",
        )
    if unknown:
        raise InvalidValueError(
            f"unknown lake URI options {sorted(unknown)}; known: {sorted(_OPTIONS)}", field="lake"
        )
    if not parts.netloc:
        raise InvalidValueError("an s3 lake names its bucket: s3://bucket/prefix", field="lake")
    options = {_OPTIONS[k]: v for k, v in query.items()}
    if options.get("aws_endpoint", "").startswith("http://"):
        options["allow_http"] = "true"  # a local S3-compatible server without TLS
    options.setdefault("aws_region", "us-east-1")
    return LakeLocation(f"s3://{parts.netloc}{parts.path.rstrip('/')}", options)
