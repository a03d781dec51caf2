"""What Lambda, API Gateway (HTTP API) and the SQS event source do for a function, played in-process.

The local stack (``stack.py``) reads these specs from the translated template and wires them up:

- ``FunctionRuntime`` imports a handler from its CodeUri/Handler on first use and calls it with a
  Lambda-shaped context, JSON round-tripping event and result as the Lambda runtime does;
- ``HttpApiServer`` serves the HTTP API routes on a loopback port and builds payload-format-2.0 events;
- ``SqsConsumer`` long-polls a queue for one event source mapping, builds Lambda SQS events and applies
  the function's answer (``ReportBatchItemFailures``) to the queue.

Known differences from AWS: a function's timeout is reported by the context but not enforced (a thread
cannot be killed); one consumer thread per mapping, so MaximumConcurrency is at most 1 locally.
"""

from __future__ import annotations

import base64
import errno
import importlib.util
import json
import logging
import re
import secrets
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import parse_qsl

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

logger = logging.getLogger("closeloop_local")

#: API Gateway rejects request bodies over 10 MB with 413.
MAX_REQUEST_BODY_BYTES = 10 * 1024 * 1024
#: SQS returns at most 10 messages per ReceiveMessage call.
SQS_MAX_RECEIVE = 10
#: HTTP API delivers these content types as text; everything else (including no content type and
#: form posts) arrives base64-encoded.
_TEXT_MEDIA_TYPES = frozenset({"application/json", "application/xml", "application/javascript"})
#: System attributes Lambda copies into an SQS record's ``attributes``.
_SQS_RECORD_ATTRIBUTES = (
    "ApproximateReceiveCount",
    "SentTimestamp",
    "SenderId",
    "ApproximateFirstReceiveTimestamp",
    "SequenceNumber",
    "MessageGroupId",
    "MessageDeduplicationId",
    "AWSTraceHeader",
    "DeadLetterQueueSourceArn",
)

Invoker = Callable[[str, dict[str, Any]], Any]


# ---------------------------------------------------------------------------------------------- specs


@dataclass(frozen=True)
class FunctionSpec:
    """A function as the template declares it, with its code on the local disk."""

    logical_id: str
    code_dir: Path
    handler: str
    timeout: int = 3
    memory_size: int = 128
    environment: Mapping[str, Any] = field(default_factory=dict)
    layer_dirs: tuple[Path, ...] = ()


@dataclass(frozen=True)
class RouteSpec:
    """One HTTP API route: ``method`` is upper-case or ``ANY``; ``path`` an OpenAPI path or ``$default``."""

    method: str
    path: str
    function: str
    payload_format_version: str = "2.0"

    @property
    def route_key(self) -> str:
        return "$default" if self.path == "$default" else f"{self.method} {self.path}"


@dataclass(frozen=True)
class QueueEventSource:
    """An SQS event source mapping: which queue (logical id) feeds which function, and how."""

    logical_id: str
    function: str
    queue: str
    batch_size: int = 10
    report_batch_item_failures: bool = False
    maximum_concurrency: int | None = None
    enabled: bool = True


# -------------------------------------------------------------------------------------- Lambda runtime


class LambdaContext:
    """The attributes and method of the Python runtime's context object that handlers and Powertools use."""

    def __init__(
        self,
        *,
        function_name: str,
        memory_limit_in_mb: int,
        timeout_seconds: int,
        region: str,
        account_id: str,
    ) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:{region}:{account_id}:function:{function_name}"
        self.memory_limit_in_mb = memory_limit_in_mb
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = f"{datetime.now(UTC):%Y/%m/%d}/[$LATEST]{secrets.token_hex(16)}"
        self.identity = None
        self.client_context = None
        self._deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


_import_lock = threading.Lock()


class FunctionRuntime:
    """Loads one function's handler lazily and invokes it the way the Lambda Python runtime does."""

    def __init__(
        self,
        spec: FunctionSpec,
        *,
        function_name: str,
        region: str,
        account_id: str,
        module_prefix: str,
    ) -> None:
        self.spec = spec
        self.function_name = function_name
        self.region = region
        self.account_id = account_id
        self._module_name = f"{module_prefix}_{spec.logical_id}"
        self._handler: Callable[..., Any] | None = None
        self.module: ModuleType | None = None

    def handler(self) -> Callable[..., Any]:
        """Import the handler module (once per function, like a cold start) and return the handler."""
        if self._handler is not None:
            return self._handler
        with _import_lock:
            if self._handler is None:
                self._handler = self._load()
        return self._handler

    def _load(self) -> Callable[..., Any]:
        module_path, _, attribute = self.spec.handler.rpartition(".")
        if not module_path or not attribute:
            raise ValueError(f"{self.spec.logical_id}: Handler {self.spec.handler!r} is not 'module.function'")
        source = self.spec.code_dir.joinpath(*module_path.split(".")).with_suffix(".py")
        if not source.is_file():
            raise FileNotFoundError(f"{self.spec.logical_id}: handler module {source} does not exist")
        spec = importlib.util.spec_from_file_location(self._module_name, source)
        if spec is None or spec.loader is None:
            raise ImportError(f"{self.spec.logical_id}: cannot import {source}")
        module = importlib.util.module_from_spec(spec)
        # Lambda puts the function's own directory first on sys.path: sibling modules import as in AWS.
        code_dir = str(self.spec.code_dir)
        sys.path.insert(0, code_dir)
        sys.modules[self._module_name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(self._module_name, None)
            raise
        finally:
            sys.path.remove(code_dir)
        self.module = module
        handler = getattr(module, attribute, None)
        if not callable(handler):
            raise AttributeError(f"{self.spec.logical_id}: {source} has no callable {attribute!r}")
        return handler

    def new_context(self) -> LambdaContext:
        return LambdaContext(
            function_name=self.function_name,
            memory_limit_in_mb=self.spec.memory_size,
            timeout_seconds=self.spec.timeout,
            region=self.region,
            account_id=self.account_id,
        )

    def invoke(self, event: Any, context: Any = None) -> Any:
        """Call the handler with a JSON copy of ``event``; return its result as the runtime serialises it.

        Raises whatever the handler raises, and ``TypeError`` when the result is not JSON-serialisable
        (the runtime's ``Runtime.MarshalError``).
        """
        handler = self.handler()
        payload = json.loads(json.dumps(event))
        started = time.perf_counter()
        result = handler(payload, context if context is not None else self.new_context())
        elapsed_ms = (time.perf_counter() - started) * 1000
        logger.debug("%s returned in %.0f ms", self.spec.logical_id, elapsed_ms)
        try:
            return json.loads(json.dumps(result))
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{self.spec.logical_id} returned a result Lambda cannot serialise: {exc}") from exc


# ---------------------------------------------------------------------------------------- HTTP API


class _RouteMatcher:
    def __init__(self, route: RouteSpec) -> None:
        self.route = route
        self.names: list[str] = []
        pattern = ""
        for part in re.split(r"(\{[^}]+\})", route.path):
            if part.startswith("{") and part.endswith("}"):
                name = part[1:-1]
                greedy = name.endswith("+")
                self.names.append(name.rstrip("+"))
                pattern += f"(?P<p{len(self.names) - 1}>{'.+' if greedy else '[^/]+'})"
            else:
                pattern += re.escape(part)
        self.regex = re.compile(f"^{pattern}$")
        literal = re.sub(r"\{[^}]+\}", "", route.path)
        # Most specific first: more literal characters, then fewer greedy parameters.
        self.priority = (len(literal), -route.path.count("+}"))

    def match(self, path: str) -> dict[str, str] | None:
        found = self.regex.match(path)
        if found is None:
            return None
        return {name: found.group(f"p{index}") for index, name in enumerate(self.names)}


def _is_text_body(content_type: str | None) -> bool:
    if not content_type:
        return False
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type.startswith("text/") or media_type in _TEXT_MEDIA_TYPES


def _json_response(status: int, payload: Any, headers: Mapping[str, str] | None = None) -> Response:
    response = Response(json.dumps(payload), status=status, content_type="application/json")
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


class _QuietRequestHandler(WSGIRequestHandler):
    """werkzeug's handler, logging requests to the ``closeloop_local.http`` logger instead of stderr."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        logging.getLogger("closeloop_local.http").info('"%s" %s', self.requestline, code)


class HttpApiServer:
    """Serves HTTP API routes on ``host:port`` and invokes their functions with payload format 2.0 events."""

    def __init__(
        self,
        routes: Sequence[RouteSpec],
        invoke: Invoker,
        *,
        host: str = "127.0.0.1",
        port: int = 3000,
        api_id: str = "localapi01",
        account_id: str = "123456789012",
        stage: str = "$default",
    ) -> None:
        self._invoke = invoke
        self._matchers = sorted(
            (_RouteMatcher(route) for route in routes if route.path != "$default"),
            key=lambda matcher: matcher.priority,
            reverse=True,
        )
        self._default_routes = {route.method: route for route in routes if route.path == "$default"}
        self._host = host
        self._port = port
        self.api_id = api_id
        self.account_id = account_id
        self.stage = stage
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("server not started")
        return int(self._server.port)

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self.port}"

    def start(self) -> None:
        try:
            self._server = make_server(
                self._host, self._port, self.wsgi_app, threaded=True, request_handler=_QuietRequestHandler
            )
        except SystemExit as exc:  # werkzeug prints the cause and exits when it cannot bind; raise instead
            raise OSError(errno.EADDRINUSE, f"cannot listen on {self._host}:{self._port}") from exc
        server = self._server
        self._thread = threading.Thread(
            target=lambda: server.serve_forever(poll_interval=0.05), name="closeloop-http", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    # -- routing

    def find_route(self, method: str, path: str) -> tuple[RouteSpec, dict[str, str]] | None:
        """The route HTTP API would pick: exact method before ANY, most specific path first."""
        for wanted in (method, "ANY"):
            for matcher in self._matchers:
                if matcher.route.method != wanted:
                    continue
                params = matcher.match(path)
                if params is not None:
                    return matcher.route, params
        for wanted in (method, "ANY"):
            if wanted in self._default_routes:
                return self._default_routes[wanted], {}
        return None

    # -- WSGI

    def wsgi_app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = Request(environ)
        response = self._handle(request)
        return response(environ, start_response)

    def _handle(self, request: Request) -> Response:
        found = self.find_route(request.method, request.path)
        if found is None:
            return _json_response(404, {"message": "Not Found"})
        route, path_params = found
        if request.content_length is not None and request.content_length > MAX_REQUEST_BODY_BYTES:
            return _json_response(413, {"message": "Request Entity Too Large"})
        body = request.stream.read(MAX_REQUEST_BODY_BYTES + 1)
        if len(body) > MAX_REQUEST_BODY_BYTES:
            return _json_response(413, {"message": "Request Entity Too Large"})
        event = self.build_event(request, route, path_params, body)
        request_id = event["requestContext"]["requestId"]
        try:
            result = self._invoke(route.function, event)
            return self._to_response(result, request_id)
        except Exception:
            logger.exception("%s failed handling %s", route.function, route.route_key)
            return _json_response(500, {"message": "Internal Server Error"}, {"apigw-requestid": request_id})

    def build_event(
        self, request: Request, route: RouteSpec, path_params: Mapping[str, str], body: bytes
    ) -> dict[str, Any]:
        """An API Gateway HTTP API payload format 2.0 event for ``request``."""
        environ = request.environ
        raw_uri = str(environ.get("RAW_URI") or environ.get("REQUEST_URI") or request.path)
        raw_path = raw_uri.split("?", 1)[0]
        raw_query = str(environ.get("QUERY_STRING", ""))
        source_ip = request.remote_addr or "127.0.0.1"
        now = datetime.now(UTC)
        request_id = base64.b64encode(secrets.token_bytes(12)).decode().rstrip("=")[:14] + "="

        headers: dict[str, str] = {}
        cookies: list[str] = []
        for key, value in request.headers.items():
            name = key.lower()
            if name == "cookie":
                cookies.extend(part.strip() for part in value.split(";") if part.strip())
                continue
            headers[name] = f"{headers[name]},{value}" if name in headers else value
        forwarded_for = headers.get("x-forwarded-for")
        headers["x-forwarded-for"] = f"{forwarded_for}, {source_ip}" if forwarded_for else source_ip
        headers["x-forwarded-port"] = str(environ.get("SERVER_PORT", ""))
        headers["x-forwarded-proto"] = str(environ.get("wsgi.url_scheme", "http"))
        headers["x-amzn-trace-id"] = f"Root=1-{int(now.timestamp()):08x}-{secrets.token_hex(12)}"
        domain_name = request.headers.get("Host") or f"{self._host}:{self.port}"

        event: dict[str, Any] = {
            "version": "2.0",
            "routeKey": route.route_key,
            "rawPath": raw_path,
            "rawQueryString": raw_query,
        }
        if cookies:
            event["cookies"] = cookies
        event["headers"] = headers
        query: dict[str, str] = {}
        for key, value in parse_qsl(raw_query, keep_blank_values=True):
            query[key] = f"{query[key]},{value}" if key in query else value
        if query:
            event["queryStringParameters"] = query
        event["requestContext"] = {
            "accountId": self.account_id,
            "apiId": self.api_id,
            "domainName": domain_name,
            "domainPrefix": domain_name.split(".", 1)[0],
            "http": {
                "method": request.method,
                "path": raw_path,
                "protocol": str(environ.get("SERVER_PROTOCOL", "HTTP/1.1")),
                "sourceIp": source_ip,
                "userAgent": request.headers.get("User-Agent", ""),
            },
            "requestId": request_id,
            "routeKey": route.route_key,
            "stage": self.stage,
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now.timestamp() * 1000),
        }
        if path_params:
            event["pathParameters"] = dict(path_params)
        is_base64 = False
        if body:
            text: str | None = None
            if _is_text_body(request.content_type):
                try:
                    text = body.decode("utf-8")
                except UnicodeDecodeError:
                    text = None
            if text is None:
                text, is_base64 = base64.b64encode(body).decode("ascii"), True
            event["body"] = text
        event["isBase64Encoded"] = is_base64
        return event

    @staticmethod
    def _to_response(result: Any, request_id: str) -> Response:
        """Map a handler result the way HTTP API maps payload format 2.0 responses."""
        if not (isinstance(result, dict) and "statusCode" in result):
            # No statusCode: API Gateway assumes 200 and returns the function's JSON as the body.
            return _json_response(200, result, {"apigw-requestid": request_id})
        try:
            status = int(result["statusCode"])
        except (TypeError, ValueError) as exc:
            raise ValueError(f"invalid statusCode {result['statusCode']!r}") from exc
        body = result.get("body")
        if body is None:
            payload = b""
        elif result.get("isBase64Encoded"):
            payload = base64.b64decode(str(body))
        else:
            payload = (body if isinstance(body, str) else json.dumps(body)).encode("utf-8")
        response = Response(payload, status=status)
        headers = result.get("headers") or {}
        if not isinstance(headers, dict):
            raise ValueError("headers must be an object")
        response.headers.remove("Content-Type")
        for key, value in headers.items():
            response.headers[str(key)] = str(value)
        if "Content-Type" not in response.headers:
            response.headers["Content-Type"] = "application/json"
        for cookie in result.get("cookies") or []:
            response.headers.add("Set-Cookie", str(cookie))
        response.headers["apigw-requestid"] = request_id
        return response


# ------------------------------------------------------------------------------------------ SQS


def batch_outcome(
    message_ids: Sequence[str],
    result: Any,
    *,
    failed: bool,
    report_batch_item_failures: bool,
) -> tuple[list[str], list[str]]:
    """Split a batch into (succeeded, failed) message ids the way Lambda reads a worker's answer.

    An invocation error fails the whole batch. With ReportBatchItemFailures, ``batchItemFailures``
    names the failures; a missing/empty list (or no result) is full success, and any identifier that
    is empty or not in the batch, or an answer that is not an object, fails the whole batch.
    """
    ids = list(message_ids)
    if failed:
        return [], ids
    if not report_batch_item_failures or result is None:
        return ids, []
    if not isinstance(result, dict):
        logger.warning("batch response is not an object (%r): the whole batch failed", result)
        return [], ids
    failures = result.get("batchItemFailures") or []
    if not isinstance(failures, list):
        logger.warning("batchItemFailures is not a list: the whole batch failed")
        return [], ids
    failed_ids: list[str] = []
    for item in failures:
        identifier = item.get("itemIdentifier") if isinstance(item, dict) else None
        if not identifier or identifier not in ids:
            logger.warning("invalid itemIdentifier %r: the whole batch failed", identifier)
            return [], ids
        failed_ids.append(identifier)
    return [i for i in ids if i not in failed_ids], [i for i in ids if i in failed_ids]


def _record_message_attributes(attributes: Mapping[str, Any]) -> dict[str, Any]:
    shaped: dict[str, Any] = {}
    for name, value in attributes.items():
        record: dict[str, Any] = {
            "stringListValues": list(value.get("StringListValues", [])),
            "binaryListValues": [base64.b64encode(item).decode("ascii") for item in value.get("BinaryListValues", [])],
            "dataType": value.get("DataType", "String"),
        }
        if "StringValue" in value:
            record["stringValue"] = value["StringValue"]
        if "BinaryValue" in value:
            record["binaryValue"] = base64.b64encode(value["BinaryValue"]).decode("ascii")
        shaped[name] = record
    return shaped


def sqs_record(message: Mapping[str, Any], *, queue_arn: str, region: str) -> dict[str, Any]:
    """One message from ReceiveMessage as a record of a Lambda SQS event."""
    attributes = message.get("Attributes", {})
    record: dict[str, Any] = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message.get("Body", ""),
        "attributes": {name: attributes[name] for name in _SQS_RECORD_ATTRIBUTES if name in attributes},
        "messageAttributes": _record_message_attributes(message.get("MessageAttributes", {})),
        "md5OfBody": message.get("MD5OfBody", ""),
    }
    if "MD5OfMessageAttributes" in message:
        record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
    record.update({"eventSource": "aws:sqs", "eventSourceARN": queue_arn, "awsRegion": region})
    return record


class SqsConsumer:
    """Plays one SQS event source mapping: long-poll, invoke the function, delete or release messages.

    ``retry_visibility_seconds`` is a local speed-up: failed messages become visible again after that
    many seconds instead of the queue's visibility timeout (``None`` keeps the queue's). Redrive to the
    DLQ after maxReceiveCount is the queue's own RedrivePolicy at work.
    """

    def __init__(
        self,
        source: QueueEventSource,
        *,
        sqs_client: Any,
        queue_url: str,
        queue_arn: str,
        region: str,
        invoke: Invoker,
        retry_visibility_seconds: int | None = 1,
        poll_interval: float = 0.2,
        wait_time_seconds: int = 1,
    ) -> None:
        self.source = source
        self.queue_url = queue_url
        self.queue_arn = queue_arn
        self._sqs = sqs_client
        self._region = region
        self._invoke = invoke
        self._retry_visibility = retry_visibility_seconds
        self._poll_interval = poll_interval
        self._wait_time = wait_time_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._state_lock = threading.Lock()
        self._busy = False
        self._batches = 0

    def activity(self) -> tuple[bool, int]:
        """(a batch is being received or processed, batches started so far): for ``drain``."""
        with self._state_lock:
            return self._busy, self._batches

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"closeloop-sqs-{self.source.queue}", daemon=True)
        self._thread.start()

    def signal_stop(self) -> bool:
        """Ask the consumer to stop; True when it is processing a batch (``join`` waits for that batch).

        An idle consumer is in a long poll: it receives nothing more (a batch received after this is left to
        become visible again) and ends when the poll returns, so the stack need not wait for it.
        """
        with self._state_lock:
            self._stop.set()
            return self._busy

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once(wait_time_seconds=self._wait_time)
            except Exception:
                if self._stop.is_set():
                    break
                logger.exception("polling %s failed", self.source.queue)
                self._stop.wait(self._poll_interval)

    def poll_once(self, wait_time_seconds: int = 0) -> int:
        """Receive one batch and process it; return how many messages it held."""
        response = self._sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=max(1, min(self.source.batch_size, SQS_MAX_RECEIVE)),
            WaitTimeSeconds=wait_time_seconds,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        messages = response.get("Messages", [])
        if not messages:
            return 0
        # Until the batch is settled its messages are in flight, so `drain` sees them either way.
        with self._state_lock:
            if self._stop.is_set():  # stopping: not processed, the messages come back after their timeout
                return 0
            self._busy = True
            self._batches += 1
        try:
            self._process(messages)
        finally:
            with self._state_lock:
                self._busy = False
        return len(messages)

    def _process(self, messages: Sequence[Mapping[str, Any]]) -> None:
        event = {"Records": [sqs_record(m, queue_arn=self.queue_arn, region=self._region) for m in messages]}
        result: Any = None
        failed = False
        try:
            result = self._invoke(self.source.function, event)
        except (Exception, SystemExit):  # a crashed invocation (even sys.exit) fails its batch, as in Lambda
            failed = True
            logger.exception(
                "%s failed on a batch of %d from %s", self.source.function, len(messages), self.source.queue
            )
        ids = [m["MessageId"] for m in messages]
        succeeded, failures = batch_outcome(
            ids, result, failed=failed, report_batch_item_failures=self.source.report_batch_item_failures
        )
        handles = {m["MessageId"]: m["ReceiptHandle"] for m in messages}
        if succeeded:
            self._sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": handles[mid]} for i, mid in enumerate(succeeded)],
            )
        if failures:
            logger.info(
                "%s: %d of %d messages failed and will be retried", self.source.function, len(failures), len(ids)
            )
            if self._retry_visibility is not None:
                self._sqs.change_message_visibility_batch(
                    QueueUrl=self.queue_url,
                    Entries=[
                        {
                            "Id": str(i),
                            "ReceiptHandle": handles[mid],
                            "VisibilityTimeout": self._retry_visibility,
                        }
                        for i, mid in enumerate(failures)
                    ],
                )
