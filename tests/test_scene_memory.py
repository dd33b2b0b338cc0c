"""Episodes through the real server: stored, found by description, replayed, synced, drawn."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from aios_memory.client import MemoryClient
from aios_memory.client.cli import main
from aios_memory.client.scenes.codec import Replayer, encode_scene
from aios_memory.client.scenes.model import Event, Scene, SceneObject, Track
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
    scene = kitchen()
    episode = client.remember_scene(
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
        stored, expected = client.scene_state(episode, t), local.state_at(t)
        assert stored.keys() == expected.keys()
        for name, state in expected.items():
            np.testing.assert_array_equal(stored[name].position, state.position)
            assert stored[name].attributes == state.attributes
    assert "anna" in client.scene_state(episode, 3.0) and "anna" not in client.scene_state(
        episode, 4.5
    )
    assert client.scene_state(episode, 3.5)["table"].attributes["cup"] == "gone"
    stats = client.stats()
    assert stats["memories"] == 2  # the episode and the shoes; its scene data is apart
    assert stats["tiers"]["long_term"]["scene_bytes"] > 0
    [listed] = client.scenes()
    assert (listed["id"], listed["description"], listed["objects"]) == (
        episode,
        "in the kitchen with Anna after lunch",
        3,
    )


def test_episodes_survive_a_restart_and_forget_takes_both_records(
    server_factory: Callable[..., Any],
) -> None:
    with server_factory() as running, MemoryClient(running.uri, running.token) as mem:
        episode = mem.remember_scene(kitchen(), "kitchen", tier="long_term")
        before = mem.scene_state(episode, 2.0)
    with server_factory() as running, MemoryClient(running.uri, running.token) as mem:
        after = mem.scene_state(episode, 2.0)
        assert {k: v.position.tolist() for k, v in after.items()} == {
            k: v.position.tolist() for k, v in before.items()
        }
        assert mem.forget(episode) == 1
        with pytest.raises(NotFoundError):
            mem.scene(episode)
        assert mem.scan(include_deleted=False).num_rows == 0


def test_episodes_sync_to_the_cloud_and_to_another_device(start: Callable[..., Any]) -> None:
    laptop, cloud, phone = start("laptop"), start("cloud", role="cloud"), start("phone")
    with MemoryClient(laptop.uri, laptop.token) as mem:
        episode = mem.remember_scene(kitchen(), "kitchen with Anna", tier="long_term", privacy=2)
        expected = mem.scene_state(episode, 1.0)
    for device in (laptop, phone):
        with (
            FlightReplica(device.uri, device.token) as a,
            FlightReplica(cloud.uri, cloud.token) as b,
        ):
            sync_once(a, b)
    with MemoryClient(phone.uri, phone.token) as mem:
        got = mem.scene_state(episode, 1.0)
        assert {k: v.position.tolist() for k, v in got.items()} == {
            k: v.position.tolist() for k, v in expected.items()
        }
        assert [h.id for h in mem.recall("Anna", mode="keyword")] == [episode]


def test_a_private_episode_is_sealed_scene_and_all(client: MemoryClient) -> None:
    episode = client.remember_scene(kitchen(), "a private dinner", privacy=3)
    stored = [r for b in client.iter_records() for r in b.to_pylist()]
    assert {r["codec"] for r in stored} == {"sealed"} and len(stored) == 2
    assert client.scene_state(episode, 0.0).keys() == {"me", "anna", "table"}


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
