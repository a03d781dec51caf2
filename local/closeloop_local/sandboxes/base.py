"""What every vendor sandbox shares: the request pipeline, routing, fault injection, the control API and a
threaded HTTP server on loopback; and what the accounting sandboxes share (``AccountingSandbox``): an OAuth
app's credentials and money as exact JSON numbers.

A sandbox is a ``SandboxApp`` (a WSGI application, werkzeug) that keeps state in memory and behaves like the
vendor's real API; its module holds only that vendor's API (auth, limits, routes, bodies). Tests and the local
stack point the production adapters at ``SandboxServer.url`` through the ordinary base-URL environment
variables; production code never imports this package.

Every sandbox also serves a small control API under ``/_sandbox/`` (no auth) so tests can seed data,
read the request log, inject faults and move the clock. Those paths do not exist on the real APIs and
are never called by production code.
"""

from __future__ import annotations

import fnmatch
import hmac
import io
import json
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cached_property
from typing import Any, ClassVar

from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
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

    ``delay`` sleeps before answering (timeouts); ``headers``/``body`` shape the error reply. ``status`` 0 only
    delays: the request is then answered as usual (a slow vendor rather than a failing one).
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


def plain_json(payload: Any, status: int = 200) -> Response:
    """``application/json`` without a charset: how some sandboxes answer a fault given a JSON body."""
    return Response(json.dumps(payload), status=status, content_type="application/json")


Handler = Callable[..., Any]


class Router:
    """Method + path rules (werkzeug syntax: ``/crm/v3/objects/<otype>``) to handlers.

    ``match`` answers the handler and its path arguments, or raises werkzeug's ``NotFound`` (no rule has the
    path) or ``MethodNotAllowed`` (a rule has the path, none the method): vendors answer those their own way.
    """

    def __init__(self, **map_options: Any) -> None:
        self._rules: list[Rule] = []
        self._handlers: list[Handler] = []
        self._map_options = map_options
        self._map: Map | None = None

    def add(self, methods: str | Iterable[str], path: str, handler: Handler) -> None:
        methods = [methods] if isinstance(methods, str) else list(methods)
        self._rules.append(Rule(path, methods=methods, endpoint=len(self._handlers)))
        self._handlers.append(handler)
        self._map = None

    def match(self, method: str, path: str) -> tuple[Handler, dict[str, Any]]:
        if self._map is None:
            self._map = Map([rule.empty() for rule in self._rules], **self._map_options)
        endpoint, args = self._map.bind("sandbox").match(path, method)
        return self._handlers[endpoint], dict(args)

    def find(self, method: str, path: str) -> tuple[Handler, dict[str, Any]] | None:
        """``match``, or None where no rule serves ``method`` and ``path`` (the vendor answers it its own way)."""
        try:
            return self.match(method, path)
        except HTTPException:  # NotFound, MethodNotAllowed
            return None


def _json_key_type(key: Any) -> bool:
    """Whether the stdlib JSON encoder accepts ``key`` as an object key."""
    return key is None or isinstance(key, str | int | float)


class WireEncoder(json.JSONEncoder):
    """A JSON encoder that writes a ``Decimal`` as the exact number it holds, scale included.

    ``Decimal("100.00")`` goes out as ``100.00`` and ``Decimal("0.3333")`` as ``0.3333``, like Xero's JSON;
    the stdlib encoder only knows float (``100.0``, and binary noise for other values). Every other value is
    written exactly as ``json.dumps`` would with the same options (separators, ``ensure_ascii``,
    ``allow_nan``, ``skipkeys``, ``sort_keys``, ``default``); ``indent`` is not supported.
    """

    def iterencode(self, o: Any, _one_shot: bool = False) -> Iterator[str]:
        if getattr(self, "indent", None) is not None:  # typeshed types it without its default, None
            raise ValueError("WireEncoder does not support indent")
        yield self._value(o)

    def _value(self, value: Any) -> str:
        if isinstance(value, Decimal):
            return self._decimal(value)
        if value is None or isinstance(value, str | int | float):  # bool is an int
            return json.dumps(value, ensure_ascii=self.ensure_ascii, allow_nan=self.allow_nan)
        if isinstance(value, dict):
            items = sorted(value.items()) if self.sort_keys else value.items()
            members = [
                f"{self._key(key)}{self.key_separator}{self._value(item)}"
                for key, item in items
                if _json_key_type(key) or not self.skipkeys
            ]
            return "{" + self.item_separator.join(members) + "}"
        if isinstance(value, list | tuple):
            return "[" + self.item_separator.join(self._value(item) for item in value) + "]"
        return self._value(self.default(value))

    def _key(self, key: Any) -> str:
        """Object keys as the stdlib writes them: strings as they are, numbers/bools/None as their JSON text."""
        if not _json_key_type(key):
            raise TypeError(f"keys must be str, int, float, bool or None, not {type(key).__name__}")
        text = key if isinstance(key, str) else json.dumps(key)
        return json.dumps(text, ensure_ascii=self.ensure_ascii)

    def _decimal(self, value: Decimal) -> str:
        if value.is_finite():
            return format(value, "f")  # positional, every digit and the scale kept: 100.00, 0.3333, 1.000000
        if not self.allow_nan:
            raise ValueError(f"Out of range float values are not JSON compliant: {value}")
        if value.is_nan():
            return "NaN"
        return "-Infinity" if value.is_signed() else "Infinity"


class SandboxApp:
    """The request pipeline of every sandbox, as a WSGI app.

    ``/_sandbox`` paths go to the control API (``control_routes``): not logged, never faulted, no auth. Any
    other request is logged on arrival, then answered by an injected ``Fault`` when one matches, else by the
    vendor's ``handle`` (its auth, limits, routes). A subclass sets ``state`` and implements ``handle`` and
    ``reset``; the other hooks shape answers the vendor's way and have plain defaults.
    """

    state: SandboxState
    #: How ``json`` writes answers: the encoder (e.g. one writing Decimals exactly) and the content type.
    json_encoder: ClassVar[type[json.JSONEncoder] | None] = None
    json_content_type: ClassVar[str] = "application/json; charset=utf-8"
    #: A header every API answer carries with a fresh id unless the handler set it (a vendor's request id).
    correlation_header: ClassVar[str] = ""
    #: The content type of a fault's text body (``Fault.body`` given as str or bytes).
    fault_text_type: ClassVar[str] = "application/json"

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        if request.path == "/_sandbox" or request.path.startswith("/_sandbox/"):
            response = self.control(request)
        else:
            response = self.serve_api(request)
        result: Iterable[bytes] = response(environ, start_response)
        return result

    def serve_api(self, request: Request) -> Response:
        entry = logged_request(request)
        self.state.log(entry)
        try:
            fault = self.state.take_fault(request.method, request.path)
            if fault is not None and fault.status:
                response = self.fault_response(fault)
            else:
                response = self.handle(request, fault.delay if fault is not None else 0.0)
        except Exception:  # a sandbox bug must still answer like the vendor, and be visible in the test output
            traceback.print_exc(file=sys.stderr)
            response = self.internal_error()
        if self.correlation_header and self.correlation_header not in response.headers:
            response.headers[self.correlation_header] = str(uuid.uuid4())
        with self.state.lock:
            entry.status = response.status_code
        return response

    def handle(self, request: Request, delay: float) -> Response:
        """The vendor's answer. ``delay``: seconds a delay-only fault asks for; sleep them where the vendor is
        slow (most sandboxes: first; Xero: inside its concurrency limit)."""
        raise NotImplementedError

    def reset(self) -> None:
        """Forget data, tokens, limits, the request log and faults (``POST /_sandbox/reset``)."""
        raise NotImplementedError

    # -- answers ----------------------------------------------------------------------------------------

    def json(self, payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
        """A JSON answer in the vendor's encoding (control API answers use it too)."""
        return Response(
            json.dumps(payload, cls=self.json_encoder, default=str),
            status=status,
            headers=headers or {},
            content_type=self.json_content_type,
        )

    def fault_error(self, status: int) -> Response:
        """The answer to a fault without a body: the vendor's error for ``status`` (default: an empty body)."""
        return Response(b"", status=status, content_type=self.fault_text_type)

    def fault_json(self, payload: Any, status: int) -> Response:
        """The answer to a fault whose body is JSON (default: in the vendor's encoding)."""
        return self.json(payload, status)

    def fault_response(self, fault: Fault) -> Response:
        if fault.delay:
            time.sleep(fault.delay)
        if fault.body is None:
            response = self.fault_error(fault.status)
        elif isinstance(fault.body, str | bytes):
            response = Response(fault.body, status=fault.status, content_type=self.fault_text_type)
        else:
            response = self.fault_json(fault.body, fault.status)
        response.headers.update(fault.headers)
        return response

    def internal_error(self) -> Response:
        """The answer when the sandbox itself fails (a bug): the vendor's 500."""
        return self.json({"error": "internal sandbox error"}, 500)

    # -- control API ------------------------------------------------------------------------------------

    @cached_property
    def _control_router(self) -> Router:
        return self.control_routes()

    def control_routes(self) -> Router:
        """The control endpoints; a vendor adds its own (seeding, webhooks) to ``super().control_routes()``.

        A handler takes the JSON body (``{}`` when empty) and the path's arguments, and returns a JSON-able
        payload, a ``Response``, or None (``{"ok": true}``). ValueError/TypeError answer 400, KeyError 404.
        """
        routes = Router()
        routes.add("POST", "/_sandbox/reset", lambda body: self.reset())
        routes.add("GET", "/_sandbox/requests", lambda body: {"requests": self.request_log()})
        routes.add("POST", "/_sandbox/faults", self._add_faults)
        routes.add("DELETE", "/_sandbox/faults", self._clear_faults)
        routes.add(["GET", "POST"], "/_sandbox/clock", self._move_clock)
        return routes

    def control(self, request: Request) -> Response:
        try:
            handler, args = self._control_router.match(request.method, request.path)
        except HTTPException:
            return self.json({"error": f"no control endpoint {request.method} {request.path}"}, 404)
        try:
            raw = request.get_data(cache=True)
            result = handler(json.loads(raw) if raw.strip() else {}, **args)
        except (ValueError, TypeError) as exc:
            return self.json({"error": str(exc)}, 400)
        except KeyError as exc:
            return self.json({"error": str(exc.args[0]) if exc.args else "not found"}, 404)
        if isinstance(result, Response):
            return result
        return self.json({"ok": True} if result is None else result)

    def request_log(self) -> list[dict[str, Any]]:
        with self.state.lock:
            return [
                {
                    "method": r.method,
                    "path": r.path,
                    "query": r.query,
                    "headers": r.headers,
                    "body": r.body.decode("utf-8", "replace"),
                    "status": r.status,
                }
                for r in self.state.requests
            ]

    def clock_reading(self) -> dict[str, Any]:
        """``GET``/``POST /_sandbox/clock``'s answer: the sandbox's now, in the vendor's terms."""
        return {"now": self.state.clock.now()}

    def _add_faults(self, body: Any) -> Response:
        faults = [Fault(**spec) for spec in (body if isinstance(body, list) else [body])]
        with self.state.lock:
            self.state.faults.extend(faults)
        return self.json({"ok": True, "faults": len(faults)}, 201)

    def _clear_faults(self, body: Any) -> None:
        with self.state.lock:
            self.state.faults.clear()

    def _move_clock(self, body: Any) -> dict[str, Any]:
        if isinstance(body, dict):
            self.state.clock.advance(float(body.get("advance", 0)))
        return self.clock_reading()


class AccountingSandbox(SandboxApp):
    """The base of an accounting system's sandbox: one OAuth app connected to one organisation.

    It holds the app's client id and secret and the refresh token the connection starts with (a sandbox keeps
    the tokens it mints from there), and answers the way the accounting APIs do: money as exact JSON numbers
    (``WireEncoder``), a fault's text body as plain text.
    """

    json_encoder = WireEncoder  # Decimals written exactly
    fault_text_type = "text/plain"

    def __init__(self, client_id: str, client_secret: str, refresh_token: str) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.initial_refresh_token = refresh_token
        self.state = SandboxState()

    def is_client(self, client_id: str | None, client_secret: str | None) -> bool:
        """Whether a token request's client id and secret are the app's (compared in constant time)."""
        id_matches = hmac.compare_digest((client_id or "").encode(), self.client_id.encode())
        secret_matches = hmac.compare_digest((client_secret or "").encode(), self.client_secret.encode())
        return client_id is not None and client_secret is not None and id_matches and secret_matches
