"""The server's commands, plugged into ``aimem`` through the ``aimem.commands`` entry points
(so the client never imports them): ``aimem serve`` (``serve``) and ``aimem token``
(``token``). Each loads only when its command runs."""

__all__: list[str] = []
