"""What every vendor sandbox shares: a threaded HTTP server on loopback, a request log, fault injection.

A sandbox is a WSGI application (werkzeug) that keeps state in memory and behaves like the vendor's
real API. Tests and the local stack point the production adapters at ``SandboxServer.url`` through the
ordinary base-URL environment variables; production code never imports this package.

Every sandbox also serves a small control API under ``/_sandbox/`` (no auth) so tests can seed data,
read the request log, inject faults and move the clock. Those paths do not exist on the real APIs and
are never called by production code.
"""

from __future__ import annotations

import fnmatch
import io
import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response


@dataclass
class LoggedRequest:
    """One request as the sandbox received it (control API calls are not logged)."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    status: int = 0


@dataclass
class Fault:
    """Answer the next ``times`` requests matching ``method``/``path_glob`` with ``status``.

    ``delay`` sleeps before answering (timeouts); ``headers``/``body`` shape the error reply.
    """

    path_glob: str
    status: int
    times: int = 1
    method: str = "*"
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None

    def matches(self, method: str, path: str) -> bool:
        return (self.method in ("*", method)) and fnmatch.fnmatchcase(path, self.path_glob)


class Clock:
    """The sandbox's notion of now; tests advance it instead of sleeping."""

    def __init__(self) -> None:
        self._offset = 0.0
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return time.time() + self._offset

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._offset += seconds


class SandboxState:
    """Request log, faults and clock: the parts of a sandbox that are not vendor-specific."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.clock = Clock()
        self.requests: list[LoggedRequest] = []
        self.faults: list[Fault] = []

    def log(self, entry: LoggedRequest) -> None:
        with self.lock:
            self.requests.append(entry)

    def take_fault(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.times > 0 and fault.matches(method, path):
                    fault.times -= 1
                    return fault
            return None

    def reset_log(self) -> None:
        with self.lock:
            self.requests.clear()
            self.faults.clear()

    def calls(self, method: str = "*", path_glob: str = "*") -> list[LoggedRequest]:
        """Logged requests matching ``method`` and ``path_glob``."""
        with self.lock:
            return [r for r in self.requests if Fault(path_glob, 0, method=method).matches(r.method, r.path)]


WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class _QuietHandler(WSGIRequestHandler):
    """No werkzeug ``Server`` banner (real vendors do not send one) and no per-request access log."""

    def send_header(self, keyword: str, value: str) -> None:
        if keyword.lower() != "server":
            super().send_header(keyword, value)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return


@dataclass(frozen=True)
class Exchange:
    """One API request and the sandbox's answer, as seen on the wire (``host`` tells the servers apart)."""

    host: str
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    status: int
    response_headers: dict[str, str]
    response_body: bytes


class Recorder:
    """Every API exchange of the servers started while ``recording()`` is open (control API excluded).

    Off by default: a server started outside ``recording()`` serves its app unwrapped. The contract tests
    (tests/contracts) use it to hold each exchange against the vendor's published spec.
    """

    def __init__(self) -> None:
        self.exchanges: list[Exchange] = []
        self._lock = threading.Lock()

    def wrap(self, app: WsgiApp) -> WsgiApp:
        def recorded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            if environ.get("PATH_INFO", "").startswith("/_sandbox"):
                return app(environ, start_response)
            request = Request(environ)
            body = request.get_data()
            environ["wsgi.input"] = io.BytesIO(body)  # the app reads the same bytes again
            environ["CONTENT_LENGTH"] = str(len(body))
            answer: dict[str, Any] = {}

            def capture(status: str, headers: list[tuple[str, str]], *exc: Any) -> Any:
                answer.update(status=int(status.split(" ", 1)[0]), headers={k.lower(): v for k, v in headers})
                return start_response(status, headers, *exc)

            chunks = app(environ, capture)
            try:
                response_body = b"".join(chunks)
            finally:
                close = getattr(chunks, "close", None)
                if close is not None:
                    close()
            exchange = Exchange(
                host=request.host,
                method=request.method,
                path=request.path,
                query=request.query_string.decode("latin-1"),
                headers={k.lower(): v for k, v in request.headers.items()},
                body=body,
                status=answer.get("status", 0),
                response_headers=answer.get("headers", {}),
                response_body=response_body,
            )
            with self._lock:
                self.exchanges.append(exchange)
            return [response_body]

        return recorded


_recorder: Recorder | None = None


@contextmanager
def recording() -> Iterator[Recorder]:
    """Record the exchanges of every ``SandboxServer`` created inside this block (one block at a time)."""
    global _recorder  # noqa: PLW0603 - the switch is process-wide on purpose: servers are built deep in helpers
    if _recorder is not None:
        raise RuntimeError("a recording is already open")
    _recorder = Recorder()
    try:
        yield _recorder
    finally:
        _recorder = None


class SandboxServer:
    """Serve a WSGI app on 127.0.0.1 in a background thread; ``port=0`` picks a free port."""

    def __init__(self, app: WsgiApp, host: str = "127.0.0.1", port: int = 0) -> None:
        if _recorder is not None:
            app = _recorder.wrap(app)
        self._server: BaseWSGIServer = make_server(host, port, app, threaded=True, request_handler=_QuietHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self._server.host}:{self._server.port}"

    def start(self) -> SandboxServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(payload, default=str),
        status=status,
        headers=headers or {},
        content_type="application/json; charset=utf-8",
    )


def logged_request(request: Request) -> LoggedRequest:
    return LoggedRequest(
        method=request.method,
        path=request.path,
        query=request.query_string.decode("latin-1"),
        headers={k.lower(): v for k, v in request.headers.items()},
        body=request.get_data(cache=True),
    )
