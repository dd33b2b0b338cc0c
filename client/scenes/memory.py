"""Episodes in the memory store: ``Scenes``, built on a ``MemoryClient``.

An episode is two records written in one put:

- the **episode** (kind ``episode``): its text is the description, embedded
  and keyword-indexed like any memory, so "when was I in the kitchen with
  Anna" finds it; its metadata carries a summary of the scene (frames, rate,
  objects, bytes, errors) under ``scene``;
- the **scene data** (kind ``scene-data``, id ``scene_id_of(<episode id>)``, that is
  ``<episode id>:scene``): the encoded tables (``EncodedScene.to_bytes``), compressed
  and, for private episodes, sealed like any record. The server never decodes it.

Both travel through Flight, sync, access control and end-to-end encryption
exactly as other records do. Replays are decoded on the client, cached per
episode (``Replayer``) in the ``Scenes`` object, and pictures are drawn on
demand, never stored. ``Scenes`` uses only the client's public methods.
"""

from __future__ import annotations

import builtins
import json
from collections import OrderedDict
from pathlib import Path
from typing import Any

from aios_memory.client.client import MemoryClient
from aios_memory.client.codec.text import content_hash, decode_payload, encode_bytes
from aios_memory.client.importers import MemoryInput
from aios_memory.schemas import (
    DEFAULT_LIMITS,
    EPISODE_KIND,
    SCENE_KIND,
    CorruptDataError,
    NotFoundError,
    TextTooLargeError,
    scene_id_of,
)

from .codec import EncodedScene, Replayer, decode_scene, encode_scene
from .model import ObjectState, Scene

__all__ = ["Scenes", "DEFAULT_CACHED_EPISODES", "scene_summary"]

DEFAULT_CACHED_EPISODES = 8  # decoded episodes a ``Scenes`` keeps


class Scenes:
    """The episodes of one client's tenant: remember, get, replay, draw and list them.

    Parameters
    ----------
    memory : MemoryClient
        The connection episodes are written and read through (its tenant, codec
        policy and keys apply).
    cached_episodes : int
        Decoded episodes kept, the most recently used: replaying or drawing one
        of them again fetches and decodes nothing.

    Not thread-safe (the replayer cache): use one ``Scenes`` per thread.

    Examples
    --------
    >>> scenes = Scenes(memory)                                        # doctest: +SKIP
    >>> episode = scenes.remember(read_ucy("zara01.txt"), "the plaza at noon")  # doctest: +SKIP
    >>> scenes.state(episode, 12.5)                                    # doctest: +SKIP
    >>> scenes.render(episode, 12.5, "frame.png")                      # doctest: +SKIP
    """

    def __init__(
        self, memory: MemoryClient, *, cached_episodes: int = DEFAULT_CACHED_EPISODES
    ) -> None:
        self.memory = memory
        self._cache_size = cached_episodes
        self._cache: OrderedDict[str, tuple[EncodedScene, Replayer]] = OrderedDict()

    def __repr__(self) -> str:
        return f"Scenes({self.memory!r})"

    def remember(
        self,
        scene: Scene,
        description: str,
        *,
        tier: str = "working",
        privacy: int = 1,
        metadata: dict[str, Any] | None = None,
        session: str | None = None,
        agent: str | None = None,
        step_m: float = 0.01,
        step_deg: float = 0.05,
        keyframe_every: int | None = None,
        predictor: str | None = None,
        max_error_m: float | None = None,
        max_error_deg: float | None = None,
    ) -> str:
        """Store an episode: ``scene`` encoded, ``description`` searchable; return its id.

        Parameters
        ----------
        scene : Scene
            What happened (``read_ucy``, ``read_bvh``, ``generate_scene``...).
        description : str
            The text recall finds it by ("with Anna in the kitchen after lunch").
        tier, privacy, metadata, session, agent
            As for ``MemoryClient.remember``; the metadata also gets the scene's
            summary under ``scene``.
        step_m, step_deg : float
            Quantization steps; the encoder measures its error and refuses to exceed
            the bound they declare.
        keyframe_every, predictor, max_error_m, max_error_deg
            Codec settings (see ``encode_scene``): ``predictor="knots"`` with a bound
            above the steps' stores only the frames a straight line cannot stand in for.

        Raises
        ------
        TextTooLargeError
            The encoded scene is over one record's limit (256 KiB): split the episode.
        """
        encoded = encode_scene(
            scene,
            step_m=step_m,
            step_deg=step_deg,
            keyframe_every=keyframe_every,
            predictor=predictor,
            max_error_m=max_error_m,
            max_error_deg=max_error_deg,
        )
        blob = encoded.to_bytes()
        if len(blob) > DEFAULT_LIMITS.max_text_bytes:
            raise TextTooLargeError(
                f"scene {scene.name!r} encodes to {len(blob)} bytes; one episode may hold "
                f"{DEFAULT_LIMITS.max_text_bytes}. Split it into shorter episodes or use a "
                "coarser step.",
                limit=DEFAULT_LIMITS.max_text_bytes,
            )
        summary = {**(metadata or {}), "scene": scene_summary(encoded, len(blob))}
        item = MemoryInput(
            text=description,
            metadata=summary,
            tier=tier,
            kind=EPISODE_KIND,
            session=session,
            agent=agent,
            privacy=privacy,
        )
        [episode] = self.memory.encode_records([item], tier=tier)
        self.memory.write_records([_scene_row(episode, blob), episode])
        return str(episode["id"])

    def get(self, episode_id: str) -> EncodedScene:
        """The stored tables of an episode, fetched and checked against their hash.

        Raises
        ------
        NotFoundError
            No such episode (or it was forgotten).
        CorruptDataError
            The stored tables do not match their hash, or do not decode.
        """
        rows = [
            row
            for batch in self.memory.iter_records(ids=[scene_id_of(episode_id)])
            for row in batch.to_pylist()
        ]
        if not rows:
            raise NotFoundError(
                f"no episode {episode_id!r} in tenant {self.memory.tenant!r}",
                memory_id=episode_id,
            )
        row = self.memory.codebook.open(rows[0])
        data = decode_payload(
            row["codec"], row["payload"], row["raw_size"], max_bytes=DEFAULT_LIMITS.max_text_bytes
        )
        if content_hash(data) != row["content_hash"]:
            raise CorruptDataError(
                f"episode {episode_id}: its scene does not match its hash", memory_id=episode_id
            )
        return EncodedScene.from_bytes(data)

    def replayer(self, episode_id: str) -> Replayer:
        """A replayer of the episode, decoded once and kept (the last few episodes)."""
        return self._episode(episode_id)[1]

    def state(self, episode_id: str, t: float) -> dict[str, ObjectState]:
        """Every present object's pose and attributes at ``t`` seconds into the episode."""
        return self.replayer(episode_id).state_at(t)

    def render(
        self,
        episode_id: str,
        t: float,
        path: str | Path,
        *,
        t_to: float | None = None,
        frames: int = 6,
        gif: bool = False,
        **options: Any,
    ) -> Path:
        """Draw the episode at ``t`` into ``path`` (PNG); with ``t_to``, a strip of
        ``frames`` moments, or a GIF with ``gif=True``. Needs matplotlib (``[scenes]``).

        ``options`` go to the drawing functions of ``aios_memory.client.scenes.render``.
        """
        from . import render as scene_render  # matplotlib: loaded only to draw

        encoded, replayer = self._episode(episode_id)
        episode = encoded.episode
        # The whole episode's extent (a sequential decode, tens of ms): every frame of a
        # strip, and every picture of one episode, at one scale.
        style = {
            "name": episode["name"],
            "frame_rate": episode["frame_rate"],
            "up": episode["source"].get("up", "z") if isinstance(episode["source"], dict) else "z",
            "bounds": scene_render.scene_bounds(decode_scene(encoded)),
            **options,
        }
        objects = list(encoded.layout.objects)
        if t_to is None:
            return scene_render.render_frame(objects, replayer.state_at, t, path, **style)
        draw = scene_render.render_gif if gif else scene_render.render_strip
        return draw(objects, replayer.state_at, t, t_to, path, frames=frames, **style)

    def _episode(self, episode_id: str) -> tuple[EncodedScene, Replayer]:
        if episode_id not in self._cache:
            encoded = self.get(episode_id)
            self._cache[episode_id] = (encoded, Replayer(encoded))
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        self._cache.move_to_end(episode_id)
        return self._cache[episode_id]

    # Last: within the class body, ``list`` names this method from here on.
    def list(self) -> builtins.list[dict[str, Any]]:
        """The tenant's episodes, oldest first: id, tier, description, created_at, and the
        scene's summary (frames, frame_rate, duration_s, objects, events, bytes, errors)."""
        table = self.memory.scan(kind=EPISODE_KIND)
        return [
            {
                "id": row["id"],
                "tier": row["tier"],
                "created_at": row["created_at"],
                "description": row["text"],
                **json.loads(row["metadata"] or "{}").get("scene", {}),
            }
            for row in table.to_pylist()
        ]


def scene_summary(encoded: EncodedScene, stored_bytes: int) -> dict[str, Any]:
    """What an episode's metadata says of its scene (small: it is searchable metadata)."""
    facts = encoded.facts()
    return {
        "frames": facts["n_frames"],
        "frame_rate": facts["frame_rate"],
        "duration_s": round(max(facts["n_frames"] - 1, 0) / facts["frame_rate"], 3),
        "objects": facts["objects"],
        "events": facts["events"],
        "bytes": stored_bytes,
        "max_error_m": facts["measured_max_error_m"],
        "max_error_deg": facts["measured_max_error_deg"],
        "source": facts["source"],
    }


def _scene_row(episode: dict[str, Any], blob: bytes) -> dict[str, Any]:
    """The record of an episode's tables: the episode's own fields, its own payload."""
    encoded = encode_bytes(blob)
    return {
        **episode,
        "id": scene_id_of(episode["id"]),
        "kind": SCENE_KIND,
        "metadata": None,
        "codec": encoded.codec,
        "dict_id": None,
        "payload": encoded.payload,
        "raw_size": encoded.raw_size,
        "content_hash": encoded.content_hash,
        "embedding": None,
        "embedding_scale": None,
        "embed_model": None,
    }
