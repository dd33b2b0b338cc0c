"""Episodes through the real server: stored, found by description, replayed, synced, drawn."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from aios_memory.client import MemoryClient, MemoryInput
from aios_memory.client.cli import main
from aios_memory.client.scenes import Scenes
from aios_memory.client.scenes.codec import Replayer, encode_scene
from aios_memory.client.scenes.model import Event, ObjectState, Scene, SceneObject, Track
from aios_memory.schemas import NotFoundError
from aios_memory.sync import FlightReplica, sync_once


def kitchen(seed: int = 1, frames: int = 50) -> Scene:
    """Two people walking around a table for 5 s at 10 Hz, one picking up a cup."""
    rng = np.random.default_rng(seed)
    walk = np.cumsum(rng.normal(0, 0.05, (2, frames, 3)), axis=1) + [[[1, 1, 0]], [[3, 2, 0]]]
    walk[..., 2] = 0.0
    walk[1, 40:] = np.nan  # Anna leaves
    objects = [
        SceneObject("me", "person", size=(0.5, 0.5, 1.8)),
        SceneObject("anna", "person", size=(0.5, 0.5, 1.7)),
        SceneObject("table", "furniture", size=(1.2, 0.8, 0.75), attributes={"room": "kitchen"}),
    ]
    tracks = {
        "me": Track("me", walk[0]),
        "anna": Track("anna", walk[1]),
        "table": Track("table", np.tile([2.0, 1.5, 0.0], (frames, 1))),
    }
    events = [
        Event(20, "action", "me", {"name": "pick_up", "item": "cup"}),
        Event(30, "attribute", "table", {"cup": "gone"}),
    ]
    return Scene("kitchen", 10.0, frames, objects, tracks, events, {"format": "test"})


def test_an_episode_is_found_by_its_description_and_replays_exactly(client: MemoryClient) -> None:
    scene, scenes = kitchen(), Scenes(client)
    episode = scenes.remember(
        scene,
        "in the kitchen with Anna after lunch",
        tier="long_term",
        metadata={"room": "kitchen"},
    )
    client.remember("bought new running shoes", tier="long_term")
    [hit] = client.recall("kitchen Anna", mode="keyword", k=1)
    assert hit.id == episode and hit.metadata["room"] == "kitchen"
    assert hit.metadata["scene"]["frames"] == 50
    local = Replayer(encode_scene(scene))
    for t in (0.0, 1.25, 2.0, 3.9, 4.0, 4.9):
        stored, expected = scenes.state(episode, t), local.state_at(t)
        assert stored.keys() == expected.keys()
        for name, state in expected.items():
            np.testing.assert_array_equal(stored[name].position, state.position)
            assert stored[name].attributes == state.attributes
    assert "anna" in scenes.state(episode, 3.0) and "anna" not in scenes.state(episode, 4.5)
    assert scenes.state(episode, 3.5)["table"].attributes["cup"] == "gone"
    stats = client.stats()
    assert stats["memories"] == 2  # the episode and the shoes; its scene data is apart
    assert stats["tiers"]["long_term"]["scene_bytes"] > 0
    [listed] = scenes.list()
    assert (listed["id"], listed["description"], listed["objects"]) == (
        episode,
        "in the kitchen with Anna after lunch",
        3,
    )


def test_episodes_survive_a_restart_and_forget_takes_both_records(
    server_factory: Callable[..., Any],
) -> None:
    with server_factory() as running, MemoryClient(running.uri, running.token) as mem:
        episode = Scenes(mem).remember(kitchen(), "kitchen", tier="long_term")
        before = Scenes(mem).state(episode, 2.0)
    with server_factory() as running, MemoryClient(running.uri, running.token) as mem:
        after = Scenes(mem).state(episode, 2.0)
        assert {k: v.position.tolist() for k, v in after.items()} == {
            k: v.position.tolist() for k, v in before.items()
        }
        assert mem.forget(episode) == 1
        with pytest.raises(NotFoundError):
            Scenes(mem).get(episode)
        assert mem.scan(include_deleted=False).num_rows == 0


def test_episodes_sync_to_the_cloud_and_to_another_device(start: Callable[..., Any]) -> None:
    laptop, cloud, phone = start("laptop"), start("cloud", role="cloud"), start("phone")
    with MemoryClient(laptop.uri, laptop.token) as mem:
        episode = Scenes(mem).remember(kitchen(), "kitchen with Anna", tier="long_term", privacy=2)
        expected = Scenes(mem).state(episode, 1.0)
    for device in (laptop, phone):
        with (
            FlightReplica(device.uri, device.token) as a,
            FlightReplica(cloud.uri, cloud.token) as b,
        ):
            sync_once(a, b)
    with MemoryClient(phone.uri, phone.token) as mem:
        got = Scenes(mem).state(episode, 1.0)
        assert {k: v.position.tolist() for k, v in got.items()} == {
            k: v.position.tolist() for k, v in expected.items()
        }
        assert [h.id for h in mem.recall("Anna", mode="keyword")] == [episode]


def test_a_private_episode_is_sealed_scene_and_all(client: MemoryClient) -> None:
    episode = Scenes(client).remember(kitchen(), "a private dinner", privacy=3)
    stored = [r for b in client.iter_records() for r in b.to_pylist()]
    assert {r["codec"] for r in stored} == {"sealed"} and len(stored) == 2
    assert Scenes(client).state(episode, 0.0).keys() == {"me", "anna", "table"}


def test_the_scene_cli_imports_lists_shows_and_measures(
    server: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    pytest.importorskip("matplotlib")
    monkeypatch.setenv("AIMEM_SERVER", server.uri)
    monkeypatch.setenv("AIMEM_TOKEN", server.token)
    ucy = tmp_path / "plaza.txt"
    ucy.write_text(
        "".join(
            f"{f * 10}\t{a}\t{1.0 + 0.1 * f + a}\t{2.0 + 0.05 * f}\n"
            for f in range(12)
            for a in (1, 2)
        )
    )
    runner = CliRunner()
    done = runner.invoke(
        main,
        ["scene", "import", str(ucy), "--format", "ucy", "--description", "the plaza", "--json"],
    )
    assert done.exit_code == 0, done.output
    episode = json.loads(done.output)["id"]
    listed = json.loads(runner.invoke(main, ["scene", "list", "--json"]).output)
    assert [row["id"] for row in listed] == [episode]
    frame = tmp_path / "frame.png"
    done = runner.invoke(main, ["scene", "show", episode, "--at", "2", "--out", str(frame)])
    assert done.exit_code == 0, done.output
    assert frame.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    stats = json.loads(runner.invoke(main, ["scene", "stats", episode, "--json"]).output)
    assert stats["bytes"]["total"] > 0
    refused = runner.invoke(main, ["scene", "show", episode, "--out", str(frame)])
    assert refused.exit_code == 2 and "--at" in refused.output


# -- what Scenes needs of the SDK, public -----------------------------------------------------


def test_encoded_records_are_written_together(client: MemoryClient) -> None:
    items = [MemoryInput("Ada prefers tea"), MemoryInput("Ada lives in Lisbon", tier="core")]
    rows = client.encode_records(items, tier="long_term")
    assert [row["tier"] for row in rows] == ["long_term", "core"]
    ids = client.write_records(rows)
    assert ids == [row["id"] for row in rows]
    assert [m.text for m in client.get(ids)] == ["Ada prefers tea", "Ada lives in Lisbon"]


def test_the_replayer_cache_lives_in_the_scenes_object(client: MemoryClient) -> None:
    scenes = Scenes(client, cached_episodes=1)
    first = scenes.remember(kitchen(), "kitchen")
    second = scenes.remember(kitchen(seed=2), "kitchen again")
    replayer = scenes.replayer(first)
    assert scenes.replayer(first) is replayer
    assert Scenes(client).replayer(first) is not replayer
    scenes.replayer(second)  # the only place is taken: the first is decoded anew
    assert scenes.replayer(first) is not replayer


# -- deprecated aliases -----------------------------------------------------------------------


def _positions(states: dict[str, ObjectState]) -> dict[str, list[float]]:
    return {name: np.asarray(state.position).tolist() for name, state in states.items()}


def test_each_scene_method_of_the_client_warns_and_gives_what_scenes_gives(
    client: MemoryClient,
) -> None:
    scenes = Scenes(client)
    with pytest.warns(DeprecationWarning, match=r"Scenes\(memory\)\.remember") as caught:
        episode = client.remember_scene(kitchen(), "kitchen with Anna", tier="long_term")
    assert caught[0].filename == __file__  # the warning points at the caller
    with pytest.warns(DeprecationWarning, match=r"Scenes\(memory\)\.get"):
        assert client.scene(episode).to_bytes() == scenes.get(episode).to_bytes()
    with pytest.warns(DeprecationWarning, match=r"Scenes\(memory\)\.replayer"):
        replayer = client.scene_replayer(episode)
    assert isinstance(replayer, Replayer)
    assert _positions(replayer.state_at(2.0)) == _positions(scenes.replayer(episode).state_at(2.0))
    with pytest.warns(DeprecationWarning, match=r"Scenes\(memory\)\.replayer"):
        assert client.scene_replayer(episode) is replayer  # one Scenes per client, one cache
    with pytest.warns(DeprecationWarning, match=r"Scenes\(memory\)\.state"):
        assert _positions(client.scene_state(episode, 1.5)) == _positions(
            scenes.state(episode, 1.5)
        )
    with pytest.warns(DeprecationWarning, match=r"Scenes\(memory\)\.list"):
        assert client.scenes() == scenes.list()


def test_the_render_alias_warns_and_draws_what_scenes_draws(
    client: MemoryClient, tmp_path: Path
) -> None:
    pytest.importorskip("matplotlib")
    episode = Scenes(client).remember(kitchen(), "kitchen")
    with pytest.warns(DeprecationWarning, match=r"Scenes\(memory\)\.render"):
        old = client.scene_render(episode, 2.0, tmp_path / "old.png")
    new = Scenes(client).render(episode, 2.0, tmp_path / "new.png")
    assert old == tmp_path / "old.png" and new == tmp_path / "new.png"
    assert old.read_bytes() == new.read_bytes()
