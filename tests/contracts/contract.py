"""A vendor's published contract, as the tests hold exchanges and webhook bodies against it.

Each vendor has a folder beside this module:

- ``openapi.json`` files (Xero: the vendor's own OpenAPI, cut down by ``extract.py``), mounted at a wire
  prefix given in ``contract.json``;
- ``operations.json``: JSON Schemas we wrote from the vendor's published reference where it publishes no
  machine-readable spec (each operation names its source page or file); ``contract.json`` may list
  ``defs`` files whose ``$defs`` the table refers to (QuickBooks: schemas generated from Intuit's XSDs);
- ``allow.json``: the known disagreements we chose to live with, each explained in ``GUESSES.md``. An
  entry matches a violation by vendor operation, side and a piece of the message; an unused entry is
  itself a failure, so the list cannot rot.

A request to a path the contract lacks is a violation, so an adapter cannot drift onto an undocumented
endpoint; so is an answer with a status the operation does not document.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import yaml
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
from jsonschema.exceptions import ValidationError  # type: ignore[import-untyped]
from openapi_schema_validator import OAS30Validator, OAS31Validator

from closeloop_local.sandboxes.base import Exchange

HERE = Path(__file__).resolve().parent
Schema = dict[str, Any]
JSON_TYPES = ("application/json", "text/json")


@dataclass(frozen=True)
class Operation:
    method: str
    template: str  # the wire path, prefix included, with {params}
    source: str
    request: Schema | None  # None: the operation takes no body
    responses: Mapping[str, Schema | None]  # status or "default" -> body schema (None: not checked)
    validator: type[Any] = Draft202012Validator

    @property
    def pattern(self) -> re.Pattern[str]:
        return re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(self.template)) + "$")

    @property
    def name(self) -> str:
        return f"{self.method} {self.template}"


@dataclass
class Allowance:
    operation: str  # "METHOD /template" or "webhook <name>"
    where: str  # "request" | "response" | "webhook"
    contains: str
    guess: str
    used: int = 0

    def covers(self, violation: Violation) -> bool:
        return (
            self.operation == violation.operation
            and self.where == violation.where
            and self.contains in violation.message
        )


@dataclass(frozen=True)
class Violation:
    vendor: str
    operation: str
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.vendor}: {self.operation} [{self.where}] {self.message}"


def _json_body(raw: bytes, content_type: str) -> tuple[bool, Any]:
    """(parsed, value): JSON or form bodies parse; anything else is reported as not parsed."""
    if not raw:
        return True, None
    if "x-www-form-urlencoded" in content_type:
        return True, dict(parse_qsl(raw.decode(), keep_blank_values=True))
    try:
        return True, json.loads(raw)
    except ValueError:
        return False, None


def _errors(validator: type[Any], schema: Schema, value: Any) -> list[str]:
    found: Iterable[ValidationError] = validator(schema).iter_errors(value)
    return [f"{'/'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message[:300]}" for e in found]


@dataclass
class Contract:
    vendor: str
    operations: list[Operation]
    webhooks: dict[str, tuple[type[Any], Schema]]
    allowances: list[Allowance] = field(default_factory=list)

    def operation(self, method: str, path: str) -> Operation | None:
        matches = [op for op in self.operations if op.method == method and op.pattern.match(path)]
        return min(matches, key=lambda op: op.template.count("{"), default=None)

    def check(self, exchange: Exchange) -> list[Violation]:
        """Every way ``exchange`` departs from the contract that no allowance covers."""
        op = self.operation(exchange.method, exchange.path)
        if op is None:
            name = f"{exchange.method} {exchange.path}"
            return self._unallowed([Violation(self.vendor, name, "request", "no such operation in the contract")])
        found: list[Violation] = []

        def report(where: str, message: str) -> None:
            found.append(Violation(self.vendor, op.name, where, message))

        parsed, body = _json_body(exchange.body, exchange.headers.get("content-type", ""))
        if op.request is None:
            if exchange.body:
                report("request", "a body where the operation takes none")
        elif not parsed:
            report("request", "the body is neither JSON nor a form")
        else:
            for error in _errors(op.validator, op.request, body):
                report("request", error)
        status = str(exchange.status)
        if status not in op.responses and "default" not in op.responses:
            report("response", f"status {status} is not documented")
        else:
            schema = op.responses.get(status, op.responses.get("default"))
            content_type = exchange.response_headers.get("content-type", "")
            if schema is not None:
                if not any(t in content_type for t in JSON_TYPES):
                    report("response", f"content-type {content_type!r} where JSON is documented")
                else:
                    _, answer = _json_body(exchange.response_body, "application/json")
                    for error in _errors(op.validator, schema, answer):
                        report("response", error)
        return self._unallowed(found)

    def check_webhook(self, name: str, body: bytes) -> list[Violation]:
        if name not in self.webhooks:
            return self._unallowed([Violation(self.vendor, f"webhook {name}", "webhook", "no such webhook")])
        validator, schema = self.webhooks[name]
        try:
            value = json.loads(body)
        except ValueError:
            return self._unallowed([Violation(self.vendor, f"webhook {name}", "webhook", "body is not JSON")])
        return self._unallowed(
            [Violation(self.vendor, f"webhook {name}", "webhook", e) for e in _errors(validator, schema, value)]
        )

    def _unallowed(self, violations: list[Violation]) -> list[Violation]:
        left = []
        for violation in violations:
            allowance = next((a for a in self.allowances if a.covers(violation)), None)
            if allowance is None:
                left.append(violation)
            else:
                allowance.used += 1
        return left


# -- loading ------------------------------------------------------------------------------------------------


def _openapi_operations(spec: Schema, prefix: str, source: str) -> list[Operation]:
    validator = OAS31Validator if str(spec["openapi"]).startswith("3.1") else OAS30Validator
    components = {"components": spec.get("components", {})}

    def rooted(schema: Schema | None) -> Schema | None:
        return None if schema is None else schema | components

    def resolved(node: Schema) -> Schema:
        while "$ref" in node:
            kind, name = node["$ref"].removeprefix("#/components/").split("/")
            node = spec["components"][kind][name]
        return node

    def json_schema(content: Mapping[str, Any] | None) -> Schema | None:
        media = next((v for k, v in (content or {}).items() if "json" in k), None)
        return rooted(media.get("schema")) if media else None

    operations = []
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if method not in ("get", "put", "post", "patch", "delete"):
                continue
            body = resolved(op["requestBody"]) if "requestBody" in op else None
            responses = {code: json_schema(resolved(r).get("content")) for code, r in op["responses"].items()}
            request = json_schema(body["content"]) if body else None
            operations.append(
                Operation(
                    method.upper(),
                    prefix + path,
                    f"{source} {op.get('operationId', '')}",
                    request,
                    responses,
                    validator,
                )
            )
    return operations


def _table_operations(table: Schema, source: str) -> tuple[list[Operation], dict[str, tuple[type[Any], Schema]]]:
    defs = {"$defs": table.get("$defs", {})}

    def rooted(schema: Schema | None) -> Schema | None:
        return None if schema is None else schema | defs

    operations = [
        Operation(
            op["method"],
            op["path"],
            op["source"],
            rooted(op.get("request")),
            {code: rooted(s) for code, s in op["responses"].items()},
        )
        for op in table.get("operations", [])
    ]
    webhooks = {
        name: (Draft202012Validator, rooted(w["schema"]) or {}) for name, w in table.get("webhooks", {}).items()
    }
    return operations, webhooks


@cache
def _shared_tables() -> Schema:
    """Schemas that several vendors share (OAuth 2.0 token endpoint), by name, for ``"use"`` in a table."""
    return dict(json.loads((HERE / "oauth2.json").read_text()))


def _expand_uses(table: Schema, more_defs: Schema) -> Schema:
    shared = _shared_tables() | {"$defs": _shared_tables().get("$defs", {}) | more_defs}
    operations = []
    for op in table.get("operations", []):
        used = shared["operations"][op["use"]] if "use" in op else {}
        operations.append(used | {k: v for k, v in op.items() if k != "use"})
    return table | {"operations": operations, "$defs": shared.get("$defs", {}) | table.get("$defs", {})}


def load(vendor: str) -> Contract:
    """The contract of ``vendor`` from its folder, with a fresh allow-list (use counts at zero)."""
    folder = HERE / vendor
    mounts = json.loads((folder / "contract.json").read_text()) if (folder / "contract.json").exists() else {}
    operations: list[Operation] = []
    webhooks: dict[str, tuple[type[Any], Schema]] = {}
    for file_name, prefix in mounts.get("openapi", {}).items():
        text = (folder / file_name).read_text()
        spec = json.loads(text) if file_name.endswith(".json") else yaml.safe_load(text)
        operations += _openapi_operations(spec, prefix, f"{vendor}/{file_name}")
    for file_name, names in mounts.get("openapi_webhooks", {}).items():
        spec = yaml.safe_load((folder / file_name).read_text())
        validator = OAS31Validator if str(spec["openapi"]).startswith("3.1") else OAS30Validator
        for name, schema_name in names.items():
            webhooks[name] = (
                validator,
                {"$ref": f"#/components/schemas/{schema_name}"} | {"components": spec["components"]},
            )
    if (folder / "operations.json").exists():
        more_defs: Schema = {}
        for file_name in mounts.get("defs", []):  # schema files the table refers to as #/$defs/<name>
            more_defs |= json.loads((folder / file_name).read_text())["$defs"]
        table = _expand_uses(json.loads((folder / "operations.json").read_text()), more_defs)
        more, hooks = _table_operations(table, f"{vendor}/operations.json")
        operations += more
        webhooks |= hooks
    allowances = []
    if (folder / "allow.json").exists():
        allowances = [Allowance(**entry) for entry in json.loads((folder / "allow.json").read_text())]
    return Contract(vendor, operations, webhooks, allowances)
