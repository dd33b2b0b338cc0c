"""The warning an old module path gives for one release after its module moved."""

import warnings

__all__ = ["warn_moved"]


def warn_moved(old: str, new: str) -> None:
    """Warn, from the old module's body, that ``old`` is now ``new`` (CHANGELOG.md)."""
    warnings.warn(
        f"{old} is deprecated and will be removed in the next release; import {new} instead",
        DeprecationWarning,
        stacklevel=3,  # the import statement, past the old module's body
    )
