"""Scene memory: episodes (where things were, what happened) stored, replayed and drawn.

The layer above the SDK: ``Scenes`` works through a ``MemoryClient``'s public methods,
and the SDK imports nothing of this package (``import aios_memory.client`` loads no
scene module).

>>> from aios_memory.client import MemoryClient                    # doctest: +SKIP
>>> from aios_memory.client.scenes import Scenes, read_ucy          # doctest: +SKIP
>>> with MemoryClient() as memory:                                  # doctest: +SKIP
...     scenes = Scenes(memory)
...     episode = scenes.remember(read_ucy("zara01.txt"), "the plaza at noon")
...     poses = scenes.state(episode, 12.5)          # every present object at 12.5 s
...     scenes.render(episode, 12.5, "frame.png")    # needs matplotlib ([scenes])

The public modules, from what a scene is to where it is kept:

``model``
    What a scene is: a ``Scene`` holds objects (``SceneObject``), a ``Track`` of poses
    per moving object, and events (``Event``); ``ObjectState`` is one object at one
    moment. Metres, seconds, unit quaternions ``(w, x, y, z)``.
``importers``
    Scenes from files and seeds: ``read_ucy`` (pedestrian tracks), ``read_bvh`` (motion
    capture), ``generate_scene`` (procedural, reproducible from its seed).
``codec``
    A ``Scene`` to five small Arrow tables and back: ``encode_scene`` (quantized, with a
    measured error bound), ``EncodedScene`` (the tables and their stored bytes),
    ``decode_scene``, and ``Replayer`` (any moment, from the keyframe before it). The
    tables' schemas are the contract's: ``aios_memory.schemas.scenes``.
``memory``
    ``Scenes``: episodes in the memory store, an episode record (the searchable
    description) beside a record of its tables.
``render``
    Pictures of moments, strips and GIFs. Not loaded by this package: it is imported
    when something is drawn, and imports matplotlib only then.
``commands``
    ``aimem scene`` (the ``scene`` entry point); loaded only by the CLI.

Private modules, bottom up: ``_quantize`` (the grids), ``_motion`` (residual segments),
``_knots`` (error-bounded adaptive keyframes), ``_tables`` (the writer), ``_container``
(the stored bytes), ``_layout`` (the checked reader), ``_decode``, ``_encoded``
(``EncodedScene``), ``_replay`` (``Replayer``), ``_bvh`` (the BVH parser).

``MemoryClient.remember_scene``, ``scene``, ``scene_replayer``, ``scene_state``,
``scene_render`` and ``scenes``, and the modules ``aios_memory.client.scene_model``,
``scene_codec``, ``scene_import`` and ``scene_render``, are deprecated aliases of the
names here, removed in the next release.
"""

from .codec import EncodedScene, Replayer, decode_scene, encode_scene
from .importers import generate_scene, read_bvh, read_ucy
from .memory import Scenes
from .model import Event, ObjectState, Scene, SceneObject, Track

__all__ = [
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
]
