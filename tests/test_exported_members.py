"""Every package's public API is its ``__all__``, and what each package loads is what it needs.

As in httpx's ``tests/test_exported_members.py``: a name that is public in a
package (no leading underscore, not a sub-module) must be in its ``__all__``,
and everything in ``__all__`` must resolve. The import checks run in a fresh
interpreter, since this one has loaded everything already.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

import aios_memory.client
import aios_memory.flight_server
import aios_memory.schemas
import aios_memory.sync
from aios_memory.schemas import errors

ROOTS = (aios_memory.schemas, aios_memory.client, aios_memory.flight_server, aios_memory.sync)
# Old module paths kept for one release; importing them warns (see CHANGELOG.md).
DEPRECATED = {"aios_memory.client.scene_codec", "aios_memory.client.scene_import",
              "aios_memory.client.scene_model", "aios_memory.client.scene_render"}  # fmt: skip


def _packages() -> list[str]:
    found = []
    for root in ROOTS:
        found.append(root.__name__)
        for info in pkgutil.walk_packages(root.__path__, root.__name__ + "."):
            if info.ispkg:
                found.append(info.name)
    return found


def _modules() -> list[str]:
    return [
        info.name
        for root in ROOTS
        for info in pkgutil.walk_packages(root.__path__, root.__name__ + ".")
        if info.name not in DEPRECATED
    ]


PACKAGES = _packages()


def test_every_package_is_walked() -> None:
    assert {"aios_memory.client.codec", "aios_memory.flight_server.store",
            "aios_memory.sync.protocol"} <= set(PACKAGES)  # fmt: skip


@pytest.mark.parametrize("name", PACKAGES)
def test_all_is_exactly_the_public_names(name: str) -> None:
    package = importlib.import_module(name)
    exported = set(package.__all__)
    public = {
        member
        for member in dir(package)
        if not member.startswith("_") and not isinstance(getattr(package, member), types.ModuleType)
    }
    assert exported == public, f"{name}: __all__ and the public names differ"
    for member in exported:
        assert getattr(package, member) is not None


@pytest.mark.parametrize("name", _modules())
def test_every_name_in_a_module_all_exists(name: str) -> None:
    module = importlib.import_module(name)
    missing = [member for member in getattr(module, "__all__", ()) if not hasattr(module, member)]
    assert not missing, f"{name}.__all__ names {missing}, which it does not define"


def test_the_sdk_exports_every_error_and_its_classes() -> None:
    exported = set(aios_memory.client.__all__)
    assert set(errors.__all__) <= exported
    assert {"MemoryClient", "Hit", "Memory", "MemoryInput"} <= exported
    for name in errors.__all__:
        assert getattr(aios_memory.client, name) is getattr(errors, name)


def _loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print('\\n'.join(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return set(done.stdout.split())


def _ours(loaded: set[str], prefix: str) -> set[str]:
    return {name for name in loaded if name == prefix or name.startswith(prefix + ".")}


def test_the_server_loads_only_the_codec_layer_of_the_client() -> None:
    loaded = _loaded_after("import aios_memory.flight_server")
    client = _ours(loaded, "aios_memory.client") - {"aios_memory.client"}
    assert client and all(name.startswith("aios_memory.client.codec") for name in client), client
    sync = _ours(loaded, "aios_memory.sync") - {"aios_memory.sync"}
    assert sync and all(name.startswith("aios_memory.sync.protocol") for name in sync), sync
    # The lake's engines load only in a lake replica: a device needs no [lake] extra.
    assert not {name for name in loaded if name.startswith(("lance", "obstore"))}


def test_the_sdk_loads_no_scene_code_and_no_server() -> None:
    loaded = _loaded_after("from aios_memory.client import MemoryClient; MemoryClient")
    assert "aios_memory.client.client" in loaded
    assert not _ours(loaded, "aios_memory.client.scenes")
    forbidden = ("aios_memory.flight_server", "aios_memory.sync", "duckdb", "hnswlib", "tantivy")
    assert not {name for name in loaded if name.startswith(forbidden)}


def test_the_protocol_loads_nothing_of_the_daemon() -> None:
    loaded = _loaded_after("import aios_memory.sync.protocol")
    assert _ours(loaded, "aios_memory.sync") == {
        "aios_memory.sync", "aios_memory.sync.protocol", "aios_memory.sync.protocol.frames",
        "aios_memory.sync.protocol.reconcile"}  # fmt: skip
    assert not _ours(loaded, "aios_memory.client")


def test_every_package_is_in_the_distribution() -> None:
    """A sub-package missing from pyproject's ``packages`` works editable and is absent from a
    wheel: each folder with an ``__init__.py`` must be listed."""
    root = Path(__file__).resolve().parent.parent
    listed = set(re.findall(r'"(aios_memory(?:\.\w+)+)"', (root / "pyproject.toml").read_text()))
    for folder in ("schemas", "client", "flight_server", "sync"):
        for init in (root / folder).rglob("__init__.py"):
            parts = init.parent.relative_to(root).parts
            assert ".".join(("aios_memory", *parts)) in listed, f"{init.parent} is not packaged"
