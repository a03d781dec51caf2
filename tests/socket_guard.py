"""The unit tier's guard: while it is on, an internet socket that connects or binds raises ``SocketUsed``.

tests/unit/conftest.py turns it on around every phase of every unit test. Unix sockets stay allowed (an
asyncio event loop opens a socketpair).
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

GUARDED = ("connect", "connect_ex", "bind")


class SocketUsed(RuntimeError):
    """A test in the socket-free tier opened an internet socket."""


def refusing(name: str, allowed: Callable[..., Any]) -> Callable[..., Any]:
    def guarded(sock: socket.socket, address: Any, *args: Any) -> Any:
        if sock.family == socket.AF_UNIX:
            return allowed(sock, address, *args)
        sock.close()  # the caller's error handling expects an OSError; this socket would otherwise leak
        raise SocketUsed(
            f"socket.{name}({address!r}) in the unit tier: a test that needs it belongs to tests/integration"
        )

    return guarded


@contextmanager
def no_sockets() -> Iterator[None]:
    originals = {name: getattr(socket.socket, name) for name in GUARDED}
    for name, original in originals.items():
        setattr(socket.socket, name, refusing(name, original))
    try:
        yield
    finally:
        for name, original in originals.items():
            setattr(socket.socket, name, original)
