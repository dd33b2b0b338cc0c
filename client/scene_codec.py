"""Deprecated alias of ``aios_memory.client.scenes.codec``, removed in the next release.

Importing it warns (``DeprecationWarning``) and gives the new module's public names.
"""

import warnings

from aios_memory.client.scenes import codec as _moved
from aios_memory.client.scenes.codec import *  # noqa: F403

__all__ = list(_moved.__all__)

warnings.warn(
    "aios_memory.client.scene_codec is deprecated and will be removed in the next release; "
    "import aios_memory.client.scenes.codec instead",
    DeprecationWarning,
    stacklevel=2,
)
