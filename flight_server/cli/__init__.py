"""The server's commands, plugged into ``aimem`` through the ``aimem.commands`` entry points:
``aimem serve`` (``serve``) and ``aimem token`` (``token``)."""
