"""Who may do what: tokens, the middleware that checks them, the rules on every call, the audit.

::

    tokens       TokenAuthority: signed tokens (tenant, principal, tiers, clearance, expiry)
                 and their revocation list
    revocations  the revocation store: two HMAC-checked copies; fails closed when both are lost
    key_files    the signing key and owner token files, checksummed and checked on read
    state        making, migrating (first-format directories) and repairing the auth state
    middleware   the Flight middleware that checks a call's bearer token before any handler
                 reads a byte, and hands the handler a Grant
    access       from a call's grant to what it may touch (views, row checks, sync rights)
    audit        every refused call and every change of rights, one JSON line each
    tls          the server's TLS and mutual-TLS settings

The rules themselves are pure and live in the contract (``aios_memory.schemas.rights``).
"""

from .audit import AuditLog
from .middleware import TokenAuthMiddlewareFactory, resolve_token
from .tokens import TokenAuthority

__all__ = ["TokenAuthority", "TokenAuthMiddlewareFactory", "resolve_token", "AuditLog"]
