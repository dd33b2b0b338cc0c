"""Deprecated alias of ``aios_memory.client.scenes.model``, removed in the next release.

Importing it warns (``DeprecationWarning``) and gives the new module's public names.
"""

import warnings

from aios_memory.client.scenes import model as _moved
from aios_memory.client.scenes.model import *  # noqa: F403

__all__ = list(_moved.__all__)

warnings.warn(
    "aios_memory.client.scene_model is deprecated and will be removed in the next release; "
    "import aios_memory.client.scenes.model instead",
    DeprecationWarning,
    stacklevel=2,
)
