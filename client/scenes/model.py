"""What a scene is in memory: objects, their motion frame by frame, and discrete events.

The shared model of scene memory: importers (``importers``) and the
procedural generator build a ``Scene``; the codec (``codec``) turns one
into its stored tables and back; ``state_at`` and rendering read it. Units:
metres, seconds, unit quaternions ``(w, x, y, z)``; frame ``f`` is at time
``f / frame_rate`` seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["SceneObject", "Track", "Event", "Scene", "ObjectState", "EVENT_TYPES", "json_value"]

EVENT_TYPES = ("spawn", "despawn", "attribute", "waypoint", "action")


@dataclass
class SceneObject:
    """One thing in the scene: a person, a joint, a cup. ``parent`` is another object's id
    (a joint's parent joint; a cup on a table), poses are then relative to the parent."""

    id: str
    kind: str
    parent: str | None = None
    size: tuple[float, float, float] = (0.0, 0.0, 0.0)
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass
class Track:
    """An object's pose at every frame of the scene.

    ``positions`` is ``(n_frames, 3)`` float64 metres, NaN rows where the object
    is absent (before its spawn, after its despawn). ``rotations`` is
    ``(n_frames, 4)`` unit quaternions ``(w, x, y, z)``, or None for objects
    that only move (a pedestrian seen from above).
    """

    object_id: str
    positions: np.ndarray
    rotations: np.ndarray | None = None


@dataclass
class Event:
    """Something that happened at a frame: ``type`` is one of ``EVENT_TYPES``.

    ``attribute``: ``params`` holds the attributes that changed; ``action``:
    ``params["name"]`` and its arguments; ``waypoint``: a named place.
    """

    frame: int
    type: str
    object_id: str | None = None
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class Scene:
    """An episode's content, before encoding (or as decoded: then quantized)."""

    name: str
    frame_rate: float
    n_frames: int
    objects: list[SceneObject]
    tracks: dict[str, Track]
    events: list[Event] = field(default_factory=list)
    # Where it came from: {"format": "ucy", "file": ...} or {"generator": name,
    # "version": v, "seed": s}; kept with the episode.
    source: dict[str, Any] = field(default_factory=dict)

    @property
    def duration(self) -> float:
        """Seconds from the first frame to the last."""
        return max(self.n_frames - 1, 0) / self.frame_rate


@dataclass
class ObjectState:
    """One object at one moment (``state_at``): absent objects are left out of a state."""

    position: np.ndarray
    rotation: np.ndarray | None
    attributes: dict[str, Any]


def json_value(value: Any) -> Any:
    """``json.dumps``'s ``default`` for the numpy values scene attributes and parameters
    may hold (a scalar to its Python value, an array to lists)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
