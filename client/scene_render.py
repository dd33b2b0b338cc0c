"""Deprecated alias of ``aios_memory.client.scenes.render``, removed in the next release.

Importing it warns (``DeprecationWarning``) and gives the new module's public names.
"""

from aios_memory.client._moved import warn_moved
from aios_memory.client.scenes import render as _moved
from aios_memory.client.scenes.render import *  # noqa: F403

__all__ = list(_moved.__all__)

warn_moved("aios_memory.client.scene_render", "aios_memory.client.scenes.render")
