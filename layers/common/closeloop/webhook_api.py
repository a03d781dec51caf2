"""The webhook HTTP API (API Gateway HTTP API, payload format 2.0), shared by both webhook functions.

``POST /webhooks/{crm}/contacts`` and ``POST /webhooks/{crm}/deals`` do the same thing — verify, validate,
enqueue — because a CRM batch may mix object types: every event reaches its own pipeline whichever route
it arrived on. The signature is checked against the URI the sender signed: ``WEBHOOK_BASE_URL`` + path +
query when set (custom domains, proxies), otherwise the request as the caller saw it (scheme from
``X-Forwarded-Proto``, host from ``requestContext.domainName``, raw path and raw query). The DynamoDB and SQS
clients (replay store, queues) are built only for a delivery whose signature holds.
"""

from __future__ import annotations

import base64
import copy
import importlib
import json
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.metrics import MetricUnit, single_metric

from closeloop import runtime
from closeloop.config import get_settings
from closeloop.credentials import webhook_keys
from closeloop.errors import ConfigurationError, WebhookRejected
from closeloop.ports import WebhookRequest
from closeloop.sync.ingest import ingest, ingest_accounting, raise_if_wrong_crm
from closeloop.telemetry import METRICS_NAMESPACE
from closeloop.vendors import registry

logger = Logger(child=True)
app = APIGatewayHttpResolver()

PIPELINE_ROUTES = frozenset({"contacts", "deals"})
#: Counted for each webhook answered 503 for missing configuration; template.yaml alarms on it per API
#: (WebhookMisconfiguredAlarm: namespace, name and the ApiId dimension must match it), in METRICS_NAMESPACE.
MISCONFIGURED_METRIC = "WebhookMisconfigured"
#: Logged with a 503 for a missing webhook key: a stack upgraded from a release with one secret has it elsewhere.
MISSING_KEY_FIX = {
    "fix": "set the key in the webhook keys secret; a stack upgraded from a release that kept it in the "
    "credentials secret: run `closeloop upgrade webhook-keys --stack-name <stack>`"
}

#: The path as the sender called it, path secret included, for the adapter's verification only.
_SIGNED_PATH: ContextVar[str | None] = ContextVar("signed_path", default=None)


def without_path_secret(event: Mapping[str, Any]) -> tuple[dict[str, Any], str | None]:
    """``event`` with the last segment of ``/webhooks/{crm}/{pipeline}/{secret}`` removed, and the path it had.

    A CRM's URL secret (its spec's ``capabilities.path_secret_key``) must reach nothing that logs: Powertools'
    debug mode (POWERTOOLS_DEV) prints the whole event and the route arguments. The request is routed as
    ``/webhooks/{crm}/{pipeline}`` and the adapter verifies the secret against the kept path.
    """
    path = str(event.get("rawPath") or "")
    parts = path.rstrip("/").split("/")
    if len(parts) != 5 or parts[1] != "webhooks":
        return dict(event), None
    public = "/".join(parts[:4])
    scrubbed = dict(event)
    scrubbed["rawPath"] = public
    params = {k: v for k, v in (event.get("pathParameters") or {}).items() if k != "secret"}
    scrubbed["pathParameters"] = params or None
    context = dict(event.get("requestContext") or {})
    if isinstance(context.get("http"), Mapping):
        context["http"] = {**context["http"], "path": public}
    scrubbed["requestContext"] = context
    return scrubbed, path


def resolve(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    """The webhook functions' entry point: the path secret is set aside before Powertools sees the event."""
    scrubbed, signed_path = without_path_secret(event)
    token = _SIGNED_PATH.set(signed_path)
    try:
        return app.resolve(scrubbed, context)
    finally:
        _SIGNED_PATH.reset(token)


def raw_body(event: Mapping[str, Any]) -> bytes:
    """The request body exactly as sent (API Gateway base64-encodes bodies that are not text)."""
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        return base64.b64decode(body)
    return str(body).encode("utf-8")


def public_uri(event: Mapping[str, Any], base_url: str, path: str | None = None) -> str:
    """The URI the sender called (and signed); ``path`` when the event's was rewritten (path secrets)."""
    path = path or str(event.get("rawPath") or "/")
    query = str(event.get("rawQueryString") or "")
    suffix = path + (f"?{query}" if query else "")
    if base_url:
        return base_url.rstrip("/") + suffix
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    scheme = str(headers.get("x-forwarded-proto", "https")).split(",")[0].strip() or "https"
    host = (event.get("requestContext") or {}).get("domainName") or headers.get("host", "")
    return f"{scheme}://{host}{suffix}"


def current_request() -> WebhookRequest:
    """The request being handled, as its sender made (and signed) it."""
    event = app.current_event.raw_event
    return WebhookRequest(
        method=app.current_event.http_method,
        uri=public_uri(event, get_settings().webhook_base_url, _SIGNED_PATH.get()),
        headers=dict(app.current_event.headers),
        body=raw_body(event),
    )


@app.post("/accounting-webhooks/<system>")
def receive_accounting_webhook(system: str) -> Response[Any]:
    """An accounting system's change notification: verified, parsed, queued; answered with an empty body.

    An intent-to-receive check may want exactly that: 200 with an empty body for a correctly signed
    delivery (its event list may be empty), 401 with an empty body for a wrongly signed one.
    """
    port = runtime.accounting()
    if system != port.name:
        return Response(status_code=404, content_type=content_types.TEXT_PLAIN, body="")
    request = current_request()
    try:
        queued = ingest_accounting(port, runtime.queues(), request, runtime.lazy_store())
    except WebhookRejected as exc:
        logger.warning("accounting webhook rejected", extra={"status": exc.status, "reason": exc.message})
        return Response(status_code=exc.status, content_type=content_types.TEXT_PLAIN, body="")
    logger.info("accounting webhook accepted", extra={"system": system, "events": queued})
    return Response(status_code=200, content_type=content_types.TEXT_PLAIN, body="")


@app.post("/webhooks/<crm>/<pipeline>")
def receive_webhook(crm: str, pipeline: str) -> dict[str, Any]:
    if pipeline not in PIPELINE_ROUTES:
        raise WebhookRejected(404, f"no webhook route for {pipeline!r}")
    port = runtime.crm()
    raise_if_wrong_crm(port, crm)
    request = current_request()
    result = ingest(port, runtime.queues(), request, runtime.lazy_store())
    logger.info(
        "webhook accepted",
        extra={"route": pipeline, "accepted": result.accepted, "ignored": result.ignored, "replay": result.replayed},
    )
    # A replay (or a retry of a delivery already queued) is answered as accepted: nothing more to do.
    return {"accepted": result.accepted, "ignored": result.ignored}


@app.exception_handler(WebhookRejected)  # type: ignore[untyped-decorator]
def rejected(exc: WebhookRejected) -> Response[Any]:
    logger.warning("webhook rejected", extra={"status": exc.status, "reason": exc.message})
    return Response(status_code=exc.status, content_type=content_types.APPLICATION_JSON, body={"message": exc.message})


def count_misconfigured(event: Mapping[str, Any]) -> None:
    """Emit one ``WebhookMisconfigured`` count (an embedded-metric log line) for the API that got ``event``."""
    api_id = str((event.get("requestContext") or {}).get("apiId") or "unknown")
    with single_metric(
        name=MISCONFIGURED_METRIC, unit=MetricUnit.Count, value=1, namespace=METRICS_NAMESPACE
    ) as metric:
        metric.add_dimension(name="ApiId", value=api_id)


@app.exception_handler(ConfigurationError)  # type: ignore[untyped-decorator]
def misconfigured(exc: ConfigurationError) -> Response[Any]:
    # Not the sender's fault: 503 makes the sender retry after an operator fixes the configuration, and the
    # metric raises an alarm so that someone does.
    missing_key = any(key in str(exc) for key in webhook_keys())
    logger.error(
        "webhook receiver misconfigured", extra={"error": str(exc), **(MISSING_KEY_FIX if missing_key else {})}
    )
    count_misconfigured(app.current_event.raw_event)
    return Response(
        status_code=503,
        content_type=content_types.APPLICATION_JSON,
        body={"message": "the webhook receiver is not configured; the delivery will be retried"},
    )


#: What every webhook route may answer besides 200, added to each route's OpenAPI operation.
_ERRORS = {
    "400": "malformed body",
    "401": "missing, forged, stale or future-dated signature (or wrong credentials or URL secret)",
    "404": "unknown system or pipeline, or not the configured one",
    "413": "body over 1 MB",
    "503": "receiver not configured (the sender retries)",
}


def openapi_document() -> dict[str, Any]:
    """The webhook API's OpenAPI document: the Powertools resolver's, plus each vendor's own routes.

    The body is read raw (its signature covers the exact bytes) rather than through Powertools'
    validation, so each vendor's spec describes its body and signature headers (``WebhookRoute``), and
    the error answers are added here. The generic routes stay, for a request naming no known vendor.
    """
    document: dict[str, Any] = json.loads(app.get_openapi_json_schema(title="Closeloop webhooks", version="1"))
    for path, path_item in document["paths"].items():
        path_item["post"].setdefault("responses", {}).update(_error_responses(path))
    for spec in registry.all_specs():
        for route in spec.webhook_routes:
            operation: dict[str, Any] = copy.deepcopy(dict(route.operation))
            operation.setdefault("summary", f"{spec.title} webhook")
            operation.setdefault("operationId", _operation_id(route.path))
            path_parameters = [
                {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                for name in _path_parameters(route.path)
                if not any(p.get("name") == name and p.get("in") == "path" for p in operation.get("parameters", []))
            ]
            operation["parameters"] = [*path_parameters, *operation.get("parameters", [])]
            responses = {"200": {"description": "accepted"}, **_error_responses(route.path)}
            operation["responses"] = {**responses, **operation.get("responses", {})}
            if route.body is not None:
                schema = _model_schema(route.body, document.setdefault("components", {}).setdefault("schemas", {}))
                operation["requestBody"] = {"required": True, "content": {route.media_type: {"schema": schema}}}
            document["paths"][route.path] = {"post": operation}
    return document


def _model_schema(reference: str, components: dict[str, Any]) -> dict[str, Any]:
    """The JSON schema of the pydantic model ``module:Name`` (validation mode: what the parser accepts), its
    nested models moved into the document's ``components.schemas``."""
    from pydantic import TypeAdapter  # noqa: PLC0415 - only the OpenAPI document needs it

    module, _, name = reference.partition(":")
    model = getattr(importlib.import_module(module), name)
    schema: dict[str, Any] = TypeAdapter(model).json_schema(ref_template="#/components/schemas/{model}")
    for key, definition in schema.pop("$defs", {}).items():
        if components.setdefault(key, definition) != definition:
            raise ValueError(f"two webhook models are both named {key!r}: {reference} and another")
    return schema


def _error_responses(path: str) -> dict[str, Any]:
    """The error answers of a route: a JSON message, or an empty body on the accounting routes (see
    ``receive_accounting_webhook``)."""
    if path.startswith("/accounting-webhooks/"):
        return {status: {"description": why} for status, why in _ERRORS.items()}
    message = {"application/json": {"schema": {"type": "object", "properties": {"message": {"type": "string"}}}}}
    return {status: {"description": why, "content": message} for status, why in _ERRORS.items()}


def _path_parameters(path: str) -> list[str]:
    return [segment[1:-1] for segment in path.split("/") if segment.startswith("{") and segment.endswith("}")]


def _operation_id(path: str) -> str:
    words = [segment.strip("{}") for segment in path.split("/") if segment]
    return "post_" + "_".join(word.replace("-", "_") for word in words)
