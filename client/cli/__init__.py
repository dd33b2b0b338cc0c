"""The ``aimem`` command line.

``main`` is the root command (``aimem = "aios_memory.client.cli:main"``).
``kit`` is what every command shares, whichever package it lives in: the
server's and the sync daemon's commands import it, and it imports nothing of
the SDK. ``connection`` adds the options of commands that talk to a server.
"""

from .main import main

__all__ = ["main"]
