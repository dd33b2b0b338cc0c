"""``aimem keys``: the end-to-end encryption keys of this device, loaded only when used.

Every command takes ``--keys DIR`` (default ``AIMEM_KEYS`` or
``~/.config/aimem/keys``) and ``--json``; codes typed by the user are read
from stdin or a hidden prompt, never from the command line (shell history).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from aios_memory.client.codec.keys import DEFAULT_ENCRYPT_AT, ENCRYPT_NEVER, KeyStore, TenantKey
from aios_memory.schemas import DEFAULT_TENANT

from .kit import CONTEXT, output_options, render_rows

__all__ = ["keys"]

_THRESHOLD = click.IntRange(0, ENCRYPT_NEVER)
_THRESHOLD_HELP = (
    f"Seal memories at or above this privacy (0 public .. 3 secret; {ENCRYPT_NEVER} seals none)."
)
_ENCRYPT_AT = click.option(
    "--encrypt-at",
    type=_THRESHOLD,
    default=DEFAULT_ENCRYPT_AT,
    show_default=True,
    help=_THRESHOLD_HELP,
)


def _store_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--keys DIR``; the command gets a ``KeyStore`` as ``store``."""

    @click.option(
        "--keys",
        "keys_dir",
        type=click.Path(file_okay=False, path_type=Path),
        help="Key store directory [env AIMEM_KEYS; default ~/.config/aimem/keys].",
    )
    @functools.wraps(fn)
    def wrapper(keys_dir: Path | None, **kwargs: Any) -> Any:
        return fn(store=KeyStore(keys_dir), **kwargs)

    return wrapper


def _tenant_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--tenant", default=DEFAULT_TENANT, show_default=True, help="Whose key.")(
        fn
    )


def _described(key: TenantKey, store: KeyStore, **extra: Any) -> dict[str, Any]:
    return {
        "tenant": key.tenant,
        "key_id": f"{key.key_id:08x}",
        "encrypt_at": key.encrypt_at,
        "key_store": str(store.path),
        **extra,
    }


def _render_code(value: dict[str, Any]) -> str:
    lines = [
        f"tenant {value['tenant']}: key {value['key_id']}, memories at privacy "
        f"{value['encrypt_at']} and above are end-to-end encrypted ({value['key_store']})"
    ]
    if value.get("recovery_code"):
        lines += [
            "",
            "Recovery code (shown this once; write it down and keep it offline):",
            "",
            f"    {value['recovery_code']}",
            "",
            f"Anyone with it can read tenant {value['tenant']}'s private memories. "
            f"Restore with: aimem keys recover --tenant {value['tenant']}",
        ]
    return "\n".join(lines)


@click.group("keys", context_settings=CONTEXT)
def keys() -> None:
    """End-to-end encryption keys: private memories are sealed before they leave the client.

    Memories at or above a tenant's threshold (default privacy 2, private) are
    encrypted by the client with the tenant's data key, which is kept in this
    device's key store, wrapped by a device key (OS keyring, else a 0600 file).
    The cloud stores and syncs them but cannot read or search them: search over
    them happens on your own server, which opens them with the same key store.

    \b
    Example:
        aimem keys init --tenant ada                   # first device: prints the recovery code
        aimem keys export --tenant ada --out ada.key   # then, on the second device:
        aimem keys import ada.key                      # (type the code export printed)
    """


@keys.command("init", context_settings=CONTEXT)
@_tenant_option
@_ENCRYPT_AT
@output_options(_render_code)
@_store_option
def init(store: KeyStore, tenant: str, encrypt_at: int) -> dict[str, Any]:
    """Make the tenant's data key and print its recovery code, once.

    \b
    Example:
        aimem keys init --tenant ada --encrypt-at 2
    """
    key = store.create(tenant, encrypt_at)
    return _described(key, store, recovery_code=store.take_recovery_code(tenant))


@keys.command("recovery-code", context_settings=CONTEXT)
@_tenant_option
@output_options(_render_code)
@_store_option
def recovery_code(store: KeyStore, tenant: str) -> dict[str, Any]:
    """Print the recovery code of a key made automatically; refused once it was shown.

    \b
    Example:
        aimem keys recovery-code --tenant ada
    """
    code = store.take_recovery_code(tenant)
    key = store.key(tenant)
    assert key is not None
    return _described(key, store, recovery_code=code)


@keys.command("recover", context_settings=CONTEXT)
@_tenant_option
@_ENCRYPT_AT
@output_options(_render_code)
@_store_option
def recover(store: KeyStore, tenant: str, encrypt_at: int) -> dict[str, Any]:
    """Install a tenant's key on this device from its recovery code (read from stdin).

    \b
    Example:
        aimem keys recover --tenant ada          # then type the code
        echo "$CODE" | aimem keys recover --tenant ada
    """
    code = click.prompt("Recovery code", hide_input=True, err=True)
    return _described(store.recover(tenant, code, encrypt_at), store)


@keys.command("export", context_settings=CONTEXT)
@_tenant_option
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Transfer file to write (carry it to the other device).",
)
@output_options(
    lambda value: (
        f"wrote {value['file']} (tenant {value['tenant']}, key {value['key_id']}).\n"
        f"On the other device run `aimem keys import {value['file']}` and type this one-time "
        f"code:\n\n    {value['transfer_code']}\n"
    )
)
@_store_option
def export(store: KeyStore, tenant: str, out: Path) -> dict[str, Any]:
    """Write the tenant's key, wrapped by a one-time code, for a second device; print the code.

    Carry the file and the code apart (the code is not in the file).

    \b
    Example:
        aimem keys export --tenant ada --out ada.key
    """
    blob, code = store.export_key(tenant)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(blob)
    key = store.key(tenant)
    assert key is not None
    return _described(key, store, file=str(out), transfer_code=code)


@keys.command("import", context_settings=CONTEXT)
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@output_options(_render_code)
@_store_option
def import_(store: KeyStore, file: Path) -> dict[str, Any]:
    """Install a key from a transfer file (``aimem keys export``); asks for its code.

    \b
    Example:
        aimem keys import ada.key                # then type the code export printed
    """
    code = click.prompt("Transfer code", hide_input=True, err=True)
    return _described(store.import_key(file.read_bytes(), code), store)


@keys.command("list", context_settings=CONTEXT)
@output_options(
    lambda rows: render_rows(
        rows, ("tenant", "key_id", "keys", "encrypt_at", "recovery_code_shown", "created_at")
    )
)
@_store_option
def list_(store: KeyStore) -> list[dict[str, Any]]:
    """List the tenants this device holds keys for.

    \b
    Example:
        aimem keys list --json
    """
    return store.describe()
