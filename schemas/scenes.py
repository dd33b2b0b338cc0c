"""The Arrow schemas of a stored scene episode, version 1.

An episode is five tables (``aios_memory.client.scenes.codec`` writes and reads them), stored
in one record, ``scene_id_of(episode_id)``, beside the episode's own record:

episode    one row: what the scene is and how it was coded. Steps, predictor,
           keyframe interval, the declared and the measured (at encode time)
           maximum errors, the source (JSON) and ``scene_hash`` (BLAKE2b-128 hex
           of the quantized scene, so a procedural generator that changed shows).
           ``presence_events``: how the scene's spawn/despawn events follow from
           presence, so they are not stored twice (``PRESENCE_RULES``): ``closed``,
           a spawn at each first and a despawn at each last present frame of a
           stretch; ``open``, the same without the despawn of a stretch that
           lasts to the last frame; ``none``, they are stored as events.
objects    one row per object: id, kind, parent, size, attributes (JSON), whether
           it has a track and rotations, and ``presence``: the frames at which it
           appears and disappears, alternating, starting with an appearance. Its
           initial pose is its first keyframe row (not stored twice: 6% of a
           pedestrian scene).
motion     one row per (segment, channel group): the residuals of every object
           active in frames ``[first_frame, first_frame + n_frames)`` at the frames
           where it is present, after its keyframe value; zigzagged, split into
           byte planes and zstd-compressed (``encoding``). A seek decodes one row
           per group.
events     one row per discrete event: frame, type, object id, parameters (JSON).
keyframes  one row per (keyframe frame, object active in that segment): presence
           at that frame and the quantized pose the segment's residuals start
           from (its pose at its first present frame in the segment).

Short strings are ``string_view``: 12 bytes or fewer sit inline in fixed
16-byte slots, so repeated kinds and ids compress to almost nothing (a sixth
of a pedestrian scene's objects table).

Quantized values are integers: a position is ``ints * step_m`` metres; a
rotation is three integers ``ints * rotation_step_of(step_deg) = p``, the
modified Rodrigues parameters of its unit quaternion (``p = (x, y, z) / (1 + w)``,
back by ``q = (1 - |p|^2, 2 p) / (1 + |p|^2)``: no trigonometry, so every
machine decodes the same floats).
Every schema carries ``aios_memory.schema`` and ``aios_memory.version`` metadata.
"""

from __future__ import annotations

import math

import pyarrow as pa

__all__ = [
    "SCENE_KIND",
    "EPISODE_KIND",
    "SCENE_SCHEMA_VERSION",
    "SCENE_TABLES",
    "SCENE_SCHEMAS",
    "EPISODE_SCHEMA",
    "OBJECTS_SCHEMA",
    "MOTION_SCHEMA",
    "EVENTS_SCHEMA",
    "KEYFRAMES_SCHEMA",
    "CHANNEL_GROUPS",
    "PREDICTORS",
    "PRESENCE_RULES",
    "MOTION_ENCODINGS",
    "motion_encoding_of",
    "rotation_step_of",
    "scene_id_of",
]

# Record kinds the store uses: an episode memory, and the data rows that hold its tables.
EPISODE_KIND = "episode"
SCENE_KIND = "scene-data"

SCENE_SCHEMA_VERSION = 1
CHANNEL_GROUPS = ("position", "rotation")
# The previous value, constant velocity, constant acceleration; or error-bounded adaptive
# keyframes: straight lines between the stored frames, within the declared bound.
PREDICTORS = ("delta", "velocity", "acceleration", "knots")
PRESENCE_RULES = ("none", "closed", "open")
# zigzag integers split into little-endian byte planes, each segment one zstd frame: of
# the residuals of every frame, or (the ``knots`` predictor) of the knots alone.
MOTION_ENCODINGS = ("zigzag-planes-zstd", "knots-zstd")


def scene_id_of(episode_id: str) -> str:
    """The id of the record that holds an episode's tables: ``<episode id>:scene``.

    A record-id convention of the contract: the scene layer writes the record under it, and
    forgetting an episode forgets this record too.
    """
    return f"{episode_id}:scene"


def motion_encoding_of(predictor: str) -> str:
    """The encoding of an episode's motion rows, which its predictor decides."""
    return MOTION_ENCODINGS[predictor == "knots"]


def _meta(name: str) -> dict[bytes, bytes]:
    return {
        b"aios_memory.schema": f"scene-{name}".encode(),
        b"aios_memory.version": str(SCENE_SCHEMA_VERSION).encode(),
    }


def _ints(prefix: str, axes: str) -> list[pa.Field]:
    return [pa.field(f"{prefix}{axis}", pa.int32()) for axis in axes]


EPISODE_SCHEMA = pa.schema(
    [
        pa.field("name", pa.string(), nullable=False),
        pa.field("frame_rate", pa.float64(), nullable=False),
        pa.field("n_frames", pa.uint32(), nullable=False),
        pa.field("n_objects", pa.uint32(), nullable=False),
        pa.field("step_m", pa.float64(), nullable=False),
        pa.field("step_deg", pa.float64(), nullable=False),
        pa.field("keyframe_every", pa.uint32(), nullable=False),
        pa.field("predictor", pa.string(), nullable=False),
        pa.field("presence_events", pa.string(), nullable=False),
        # Axes with any non-zero coordinate: the Euclidean position bound counts only these.
        pa.field("position_axes", pa.uint8(), nullable=False),
        pa.field("declared_max_error_m", pa.float64(), nullable=False),
        pa.field("measured_max_error_m", pa.float64(), nullable=False),
        pa.field("measured_mean_error_m", pa.float64(), nullable=False),
        pa.field("declared_max_error_deg", pa.float64(), nullable=False),
        pa.field("measured_max_error_deg", pa.float64(), nullable=False),
        pa.field("measured_mean_error_deg", pa.float64(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("scene_hash", pa.string(), nullable=False),
    ],
    metadata=_meta("episode"),
)

OBJECTS_SCHEMA = pa.schema(
    [
        pa.field("object_id", pa.string_view(), nullable=False),
        pa.field("kind", pa.string_view(), nullable=False),
        pa.field("parent", pa.string_view()),
        pa.field("size_x", pa.float64(), nullable=False),
        pa.field("size_y", pa.float64(), nullable=False),
        pa.field("size_z", pa.float64(), nullable=False),
        pa.field("attributes", pa.string_view(), nullable=False),
        pa.field("has_track", pa.bool_(), nullable=False),
        pa.field("has_rotation", pa.bool_(), nullable=False),
        pa.field("presence", pa.list_(pa.uint32()), nullable=False),
    ],
    metadata=_meta("objects"),
)

MOTION_SCHEMA = pa.schema(
    [
        pa.field("group", pa.string(), nullable=False),
        pa.field("first_frame", pa.uint32(), nullable=False),
        pa.field("n_frames", pa.uint32(), nullable=False),
        pa.field("n_objects", pa.uint32(), nullable=False),
        pa.field("encoding", pa.string(), nullable=False),
        pa.field("data", pa.binary(), nullable=False),
    ],
    metadata=_meta("motion"),
)

EVENTS_SCHEMA = pa.schema(
    [
        pa.field("frame", pa.uint32(), nullable=False),
        pa.field("type", pa.string_view(), nullable=False),
        pa.field("object_id", pa.string_view()),
        pa.field("params", pa.string_view(), nullable=False),
    ],
    metadata=_meta("events"),
)

KEYFRAMES_SCHEMA = pa.schema(
    [
        pa.field("frame", pa.uint32(), nullable=False),
        pa.field("object_index", pa.uint32(), nullable=False),
        pa.field("present", pa.bool_(), nullable=False),
        *[pa.field(f"p{axis}", pa.int32(), nullable=False) for axis in "xyz"],
        *_ints("r", "xyz"),
    ],
    metadata=_meta("keyframes"),
)

# The tables of an episode, in the order a stored container keeps them.
SCENE_TABLES = ("episode", "objects", "motion", "events", "keyframes")
SCENE_SCHEMAS: dict[str, pa.Schema] = {
    "episode": EPISODE_SCHEMA,
    "objects": OBJECTS_SCHEMA,
    "motion": MOTION_SCHEMA,
    "events": EVENTS_SCHEMA,
    "keyframes": KEYFRAMES_SCHEMA,
}


def rotation_step_of(step_deg: float) -> float:
    """The grid step of the rotation parameters ``p`` for rotation steps of ``step_deg``.

    A change ``dp`` turns the rotation by at most ``4 |dp|`` radians (exactly that
    near the identity, less elsewhere), so a step of ``radians(step_deg) / 4`` is a
    grid cell of ``step_deg`` degrees, and half a step on each of the three
    parameters is at most ``sqrt(3) / 2 * step_deg`` degrees: the default bound.
    """
    return math.radians(step_deg) / 4.0
