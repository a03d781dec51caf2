"""The unit tier opens no internet socket: the guard in tests/unit/conftest.py refuses it loudly."""

from __future__ import annotations

import socket
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import httpx
import pytest

from tests.socket_guard import SocketUsed


def test_connecting_to_a_server_fails_loudly() -> None:
    # When a unit test reaches for a server, directly or through the HTTP client
    with pytest.raises(SocketUsed, match="tests/integration"):
        socket.create_connection(("127.0.0.1", 9), timeout=1)
    with pytest.raises(SocketUsed):
        httpx.get("http://127.0.0.1:9/", timeout=1)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock, pytest.raises(SocketUsed):
        sock.connect_ex(("127.0.0.1", 9))


def test_starting_a_server_fails_loudly() -> None:
    with pytest.raises(SocketUsed):
        HTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)


def test_unix_sockets_are_allowed(tmp_path: Path) -> None:
    # An asyncio event loop talks to itself over a socketpair; a Unix socket reaches no server
    left, right = socket.socketpair()
    with left, right:
        left.sendall(b"x")
        assert right.recv(1) == b"x"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(tmp_path / "s"))
        assert sock.getsockname() == str(tmp_path / "s")
