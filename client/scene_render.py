"""Deprecated alias of ``aios_memory.client.scenes.render``, removed in the next release.

Importing it warns (``DeprecationWarning``) and gives the new module's public names.
"""

import warnings

from aios_memory.client.scenes import render as _moved
from aios_memory.client.scenes.render import *  # noqa: F403

__all__ = list(_moved.__all__)

warnings.warn(
    "aios_memory.client.scene_render is deprecated and will be removed in the next release; "
    "import aios_memory.client.scenes.render instead",
    DeprecationWarning,
    stacklevel=2,
)
