"""Auth state on disk that deleting or damaging a file cannot undo (issue 16 item 6).

Real data directories, a real server on port 0, the real ``aimem`` CLI: the
revocation store is deleted and corrupted, the token and signing key files
get flipped bytes and cut tails; every case must refuse with its code and a
message naming the file, and no revoked token may ever be accepted.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from support.access_model import action_json

from aios_memory.client import MemoryClient
from aios_memory.client.cli import main
from aios_memory.flight_server.auth.tokens import TokenAuthority
from aios_memory.flight_server.store.duckdb_store import DuckDBStore
from aios_memory.schemas import TIERS, AuthStateError, InvalidValueError

COPY_1, COPY_2 = "revocations.1.json", "revocations.2.json"


def cli(*args: str, code: int = 0) -> Result:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    return result


def make_token(data: Path, principal: str) -> tuple[str, str]:
    made = cli("token", "create", "--data", str(data), "--tenant", "alice", "--principal",
               principal, "--json")  # fmt: skip
    body = json.loads(made.stdout)
    return body["token"], body["token_id"]


def code_of(running: Any, secret: str) -> str:
    """``ok`` when the server accepts ``secret`` for a whoami, else the refusal's code."""
    result = action_json(running.uri, secret, "whoami", b"")
    return result.code if isinstance(result, Exception) else "ok"


def flip(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x5A
    path.write_bytes(bytes(data))


@pytest.fixture
def revoked_world(start: Any) -> dict[str, Any]:
    """A server with one live and one revoked scoped token (revoked through the CLI)."""
    running = start("auth")
    good, _ = make_token(running.data_dir, "good")
    bad, bad_id = make_token(running.data_dir, "bad")
    cli("token", "revoke", "--data", str(running.data_dir), bad_id)
    assert (code_of(running, good), code_of(running, bad)) == ("ok", "TOKEN_REVOKED")
    return {"server": running, "good": good, "bad": bad, "data": running.data_dir}


def refusal(running: Any, secret: str) -> Exception:
    result = action_json(running.uri, secret, "whoami", b"")
    assert isinstance(result, Exception), result
    return result


# -- the revocation store -----------------------------------------------------------------------
def test_one_lost_copy_loses_no_revocation_and_revoke_heals_it(
    revoked_world: dict[str, Any],
) -> None:
    running, data = revoked_world["server"], revoked_world["data"]
    (data / COPY_1).unlink()
    assert code_of(running, revoked_world["bad"]) == "TOKEN_REVOKED"
    assert code_of(running, revoked_world["good"]) == "ok"
    _, late_id = make_token(data, "late")
    # Revoking with one copy gone writes both again.
    cli("token", "revoke", "--data", str(data), late_id)
    assert (data / COPY_1).read_bytes() == (data / COPY_2).read_bytes()
    # Revoking with one copy damaged rewrites it.
    flip(data / COPY_1, 10)
    _, last_id = make_token(data, "last")
    revoked = json.loads(cli("token", "revoke", "--data", str(data), last_id, "--json").stdout)
    assert revoked == {"token_id": last_id, "revoked": True, "store_rebuilt": False}
    first, second = (json.loads((data / name).read_bytes()) for name in (COPY_1, COPY_2))
    assert first == second and {late_id, last_id} <= set(first["revoked"])
    assert code_of(running, revoked_world["bad"]) == "TOKEN_REVOKED"


@pytest.mark.parametrize("damage", ["delete", "corrupt", "hand-edit"])
def test_a_lost_store_fails_closed_naming_the_files_and_the_fix(
    revoked_world: dict[str, Any], damage: str
) -> None:
    running, data = revoked_world["server"], revoked_world["data"]
    for name in (COPY_1, COPY_2):
        path = data / name
        if damage == "delete":
            path.unlink()
        elif damage == "corrupt":
            path.write_bytes(path.read_bytes()[:20] + b"\x00\xff")
        else:  # a valid-looking list with the revoked id taken out: its HMAC no longer matches
            body = json.loads(path.read_bytes())
            path.write_text(json.dumps({**body, "revoked": []}))
    for secret in (revoked_world["good"], revoked_world["bad"]):
        error = refusal(running, secret)
        assert error.code == "AUTH_STATE", error
        assert str(data / COPY_1) in error.message and str(data / COPY_2) in error.message
        assert f"aimem token repair --data {data}" in error.message
    assert code_of(running, running.token) == "ok"  # the operator can still act
    made = CliRunner().invoke(
        main, ["token", "create", "--data", str(data), "--tenant", "a", "--principal", "p"]
    )
    assert made.exit_code == 1 and "aimem token repair" in made.output, made.output


def test_revoke_on_a_lost_store_rebuilds_it_and_never_reenables(
    revoked_world: dict[str, Any],
) -> None:
    running, data = revoked_world["server"], revoked_world["data"]
    _, late_id = make_token(data, "late")
    for name in (COPY_1, COPY_2):
        (data / name).unlink()
    result = json.loads(cli("token", "revoke", "--data", str(data), late_id, "--json").stdout)
    assert result["store_rebuilt"] is True
    # Every token made before the rebuild is refused, the revoked one above all.
    assert code_of(running, revoked_world["bad"]) == "TOKEN_REVOKED"
    assert code_of(running, revoked_world["good"]) == "TOKEN_REVOKED"
    fresh, _ = make_token(data, "fresh")
    assert code_of(running, fresh) == "ok"
    listed = json.loads(cli("token", "list", "--data", str(data), "--json").stdout)
    assert [row["revoked"] for row in listed] == [True, True, True, False]


def test_repair_heals_one_copy_and_rebuilds_a_lost_store(revoked_world: dict[str, Any]) -> None:
    running, data = revoked_world["server"], revoked_world["data"]
    flip(data / COPY_2, 7)
    healed = json.loads(cli("token", "repair", "--data", str(data), "--json").stdout)
    assert (healed["signing_key"], healed["revocations"]) == ("ok", "healed")
    assert (data / COPY_1).read_bytes() == (data / COPY_2).read_bytes()
    assert code_of(running, revoked_world["good"]) == "ok"
    for name in (COPY_1, COPY_2):
        flip(data / name, 7)
    rebuilt = json.loads(cli("token", "repair", "--data", str(data), "--json").stdout)
    assert rebuilt["revocations"] == "rebuilt" and rebuilt["refused_before"].endswith("Z")
    assert code_of(running, revoked_world["bad"]) == "TOKEN_REVOKED"
    assert code_of(running, revoked_world["good"]) == "TOKEN_REVOKED"


def test_an_old_data_directory_is_migrated_and_its_revocations_kept(
    server_factory: Any, tmp_path: Path
) -> None:
    data = tmp_path / "old"
    authority = TokenAuthority(data)
    good, _ = authority.create("alice", "good", TIERS, TIERS, 1, None)
    bad, grant = authority.create("alice", "bad", TIERS, TIERS, 1, None)
    bad_id = grant.token_id
    # Make it a directory of the first format: a raw key and a plain revoked.json.
    (data / "signing.key").write_bytes(authority._key)
    (data / "revoked.json").write_text(json.dumps([bad_id]))
    for name in (COPY_1, COPY_2):
        (data / name).unlink()
    with server_factory(data_dir=data) as running:
        assert (code_of(running, good), code_of(running, bad)) == ("ok", "TOKEN_REVOKED")
        assert not (data / "revoked.json").exists()
        assert (data / "signing.key").read_text().startswith("aimem-signing-key-v2 ")
        for name in (COPY_1, COPY_2):
            (data / name).unlink()  # deleting the new store does not undo the migration
        assert code_of(running, bad) == "AUTH_STATE"


def test_a_damaged_old_revoked_json_fails_closed_and_repair_recovers(
    server_factory: Any, tmp_path: Path
) -> None:
    data = tmp_path / "old"
    authority = TokenAuthority(data)
    bad, _ = authority.create("alice", "bad", TIERS, TIERS, 1, None)
    (data / "signing.key").write_bytes(authority._key)
    (data / "revoked.json").write_text('["0123')
    for name in (COPY_1, COPY_2):
        (data / name).unlink()
    with server_factory(data_dir=data) as running:
        assert code_of(running, bad) == "AUTH_STATE"
        assert code_of(running, running.token) == "ok"
        cli("token", "repair", "--data", str(data))
        assert code_of(running, bad) == "TOKEN_REVOKED"


# -- key and token files ------------------------------------------------------------------------
def _owner_token_cases(path: Path) -> dict[str, bytes]:
    token = path.read_bytes().strip()
    return {
        "flipped bytes": token[:10] + b"\xff\xfe" + token[12:],
        "damaged tail": token[:-3] + b"\x01\x02\x03",
        "22 characters": token[:22],
        "one letter changed": token[:20] + (b"A" if token[20:21] != b"A" else b"B") + token[21:],
        "empty": b"\n",
    }


def test_a_damaged_token_file_is_refused_at_start_naming_it(
    server_factory: Any, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    with server_factory(data_dir=data, token=None) as running:
        assert re.fullmatch(r"aimem-owner\.[A-Za-z0-9_-]{43}\.[0-9a-f]{8}", running.token)
        token = running.token
    path = data / "token"
    for case, damaged in _owner_token_cases(path).items():
        path.write_bytes(damaged)
        with pytest.raises(AuthStateError) as refused, server_factory(data_dir=data, token=None):
            pass
        assert str(path) in refused.value.message and "restart" in refused.value.message, case
    path.write_bytes(b"x" * 43 + b"\n")  # the first format (43 base64url characters) still works
    with server_factory(data_dir=data, token=None) as running:
        assert running.token == "x" * 43
    path.write_text(token + "\n")
    with server_factory(data_dir=data, token=None) as running:
        assert code_of(running, token) == "ok"


def test_aimem_serve_with_a_damaged_token_prints_one_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    DuckDBStore(data).close()  # a data directory that has served: its records are there
    (data / "token").write_bytes(b"\x8f\xa0garbage\xff\n")
    done = subprocess.run(
        [sys.executable, "-c", "from aios_memory.client.cli import main; main()", "serve",
         "--data", str(data), "--port", "0", "--embedder", "none"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr and "UnicodeDecodeError" not in done.stderr
    assert f"Error: {data / 'token'} is damaged" in done.stderr


@pytest.mark.parametrize("damage", ["flip", "truncate", "cut to 32 bytes", "delete"])
def test_a_damaged_signing_key_is_refused_naming_it(
    server_factory: Any, tmp_path: Path, damage: str
) -> None:
    data = tmp_path / "data"
    with server_factory(data_dir=data) as running:
        good, _ = make_token(data, "good")
        assert code_of(running, good) == "ok"
    key = data / "signing.key"
    if damage == "flip":
        flip(key, 30)
    elif damage == "truncate":
        key.write_bytes(key.read_bytes()[:40])
    elif damage == "cut to 32 bytes":  # the length of a first-format key: still refused
        key.write_bytes(key.read_bytes()[:32])
    else:
        key.unlink()
    with pytest.raises(AuthStateError) as refused, server_factory(data_dir=data):
        pass
    assert str(key) in refused.value.message and "--new-key" in refused.value.message
    listed = CliRunner().invoke(main, ["token", "list", "--data", str(data)])
    assert listed.exit_code == 1 and str(key) in listed.output
    cli("token", "repair", "--data", str(data), "--new-key")
    with server_factory(data_dir=data) as running:
        assert code_of(running, good) == "TOKEN_INVALID"  # a new key: old tokens must be remade
        fresh, _ = make_token(data, "fresh")
        assert code_of(running, fresh) == "ok"


# -- the client side ----------------------------------------------------------------------------
def test_the_client_refuses_a_damaged_token_before_calling(server: Any, tmp_path: Path) -> None:
    path = tmp_path / "token"
    for damaged in (b"\xffabc\n", server.token.encode() + b"\x01", b"two words"):
        path.write_bytes(damaged)
        result = CliRunner().invoke(
            main, ["stats", "--server", server.uri, "--token-file", str(path)]
        )
        assert result.exit_code == 1, result.output
        assert f"the token in --token-file {path} has a character" in result.output
        assert "Illegal header" not in result.output and "Traceback" not in result.output
    with pytest.raises(InvalidValueError, match="character no token has"):
        MemoryClient(server.uri, "abc\ndef")


# -- rough edges --------------------------------------------------------------------------------
@pytest.mark.parametrize("tenant", ["..", ".", ".hidden", "a/b", "x" * 65, "été"])
def test_token_create_refuses_a_tenant_the_server_would_refuse(tmp_path: Path, tenant: str) -> None:
    result = CliRunner().invoke(
        main,
        ["token", "create", "--data", str(tmp_path), "--tenant", tenant, "--principal", "p"],
    )
    assert result.exit_code == 2, result.output
    assert "--tenant" in result.output and "is not a tenant name" in result.output
    assert not (tmp_path / "tokens.jsonl").exists()


def test_whoami_prints_the_expiry_in_iso_utc(start: Any) -> None:
    running = start("whoami")
    made = cli("token", "create", "--data", str(running.data_dir), "--tenant", "alice",
               "--principal", "p", "--expires", "30d", "--json")  # fmt: skip
    secret = json.loads(made.stdout)["token"]
    shown = cli("whoami", "--server", running.uri, "--token", secret, "--json")
    me = json.loads(shown.stdout)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", me["expires"]), me
    assert isinstance(me["expires_epoch"], float)
    plain = cli("whoami", "--server", running.uri, "--token", secret).stdout
    assert me["expires"] in plain
