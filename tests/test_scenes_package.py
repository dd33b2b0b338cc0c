"""Scenes as the layer above the SDK: its public names, what loads what, and the old module
paths kept as deprecated aliases for one release (the client's aliases: test_scene_memory)."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import aios_memory.client.scenes as scenes_pkg
from aios_memory.schemas import scene_id_of

OLD_MODULES = {
    "aios_memory.client.scene_model": "aios_memory.client.scenes.model",
    "aios_memory.client.scene_codec": "aios_memory.client.scenes.codec",
    "aios_memory.client.scene_import": "aios_memory.client.scenes.importers",
    "aios_memory.client.scene_render": "aios_memory.client.scenes.render",
}


def _loaded_after(statement: str, prefixes: tuple[str, ...]) -> list[str]:
    code = (
        f"import sys; {statement}; "
        f"print('\\n'.join(m for m in sys.modules if m.startswith({prefixes!r})))"
    )
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return done.stdout.split()


# -- the package ------------------------------------------------------------------------------


def test_importing_the_sdk_loads_no_scene_code() -> None:
    statement = "import aios_memory.client, aios_memory.client.client"
    assert _loaded_after(statement, ("aios_memory.client.scene",)) == []


def test_importing_scenes_loads_no_matplotlib_and_no_command() -> None:
    loaded = _loaded_after(
        "import aios_memory.client.scenes",
        ("matplotlib", "aios_memory.client.scenes.render", "aios_memory.client.scenes.commands"),
    )
    assert loaded == []


def test_all_names_the_public_api() -> None:
    assert {
        "Scenes",
        "Scene",
        "SceneObject",
        "Track",
        "Event",
        "ObjectState",
        "EncodedScene",
        "Replayer",
        "encode_scene",
        "decode_scene",
        "read_ucy",
        "read_bvh",
        "generate_scene",
    } <= set(scenes_pkg.__all__)
    for name in scenes_pkg.__all__:
        assert getattr(scenes_pkg, name).__doc__, name


def test_a_scene_record_id_is_the_contracts() -> None:
    assert scene_id_of("01abc") == "01abc:scene"


# -- the old module paths, deprecated --------------------------------------------------------


@pytest.mark.parametrize("old_name", sorted(OLD_MODULES))
def test_each_old_module_path_warns_and_gives_the_same_objects(
    old_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    new = importlib.import_module(OLD_MODULES[old_name])
    monkeypatch.delitem(sys.modules, old_name, raising=False)  # import it afresh: it warns once
    with pytest.warns(DeprecationWarning, match=OLD_MODULES[old_name].replace(".", r"\.")):
        old = importlib.import_module(old_name)
    assert old.__all__ == new.__all__
    for name in new.__all__:
        assert getattr(old, name) is getattr(new, name), name
