"""Deprecated alias of ``aios_memory.client.scenes.model``, removed in the next release.

Importing it warns (``DeprecationWarning``) and gives the new module's public names.
"""

from aios_memory.client._moved import warn_moved
from aios_memory.client.scenes import model as _moved
from aios_memory.client.scenes.model import *  # noqa: F403

__all__ = list(_moved.__all__)

warn_moved("aios_memory.client.scene_model", "aios_memory.client.scenes.model")
