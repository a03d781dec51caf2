"""A vendor is one package: the registry lists the specs, and runtime, credentials, the webhook API and the
CLI read it. A seventh vendor, made here as a package of its own, needs no edit anywhere else."""

from __future__ import annotations

import importlib
import json
import sys
import textwrap
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any, cast

import pytest
from aws_lambda_powertools.utilities.typing import LambdaContext

from closeloop import runtime, webhook_api
from closeloop.credentials import Credentials, credential_keys, webhook_keys
from closeloop.errors import ConfigurationError
from closeloop.vendors import registry
from closeloop.vendors.spec import Capabilities, NoSettings, VendorSpec
from closeloop_local.cli import build_parser
from tests.fakes import MemoryStore
from tests.source_scan import VENDOR

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"

#: The toy vendor's whole package: a spec, its settings and a small CRM adapter (verify, parse).
TOY_PACKAGE = '''
"""Toy CRM: a seventh vendor, declared in one package."""

from __future__ import annotations

import hmac
from datetime import UTC, datetime

from typing import Literal

from pydantic import BaseModel, Field

from closeloop.errors import WebhookRejected
from closeloop.models import CrmRef, SyncEvent
from closeloop.vendors.spec import Capabilities, VendorSettings, VendorSpec, WebhookRoute


class ToySettings(VendorSettings):
    api_url: str = Field("https://api.toy.example", alias="TOY_API_URL")


class ToyOwner(BaseModel):
    id: int


class ToyDelivery(BaseModel):
    """One toy delivery: the record that changed."""

    id: int
    type: Literal["company", "contact"]
    owner: ToyOwner | None = None


class ToyCrm:
    name = "toycrm"

    def __init__(self, base_url, api_token, webhook_token, sleep):
        self.base_url, self.api_token, self.webhook_token, self.sleep = base_url, api_token, webhook_token, sleep

    def verify_webhook(self, request):
        sent = {k.lower(): v for k, v in request.headers.items()}.get("x-toy-token", "")
        if not sent or not hmac.compare_digest(sent, self.webhook_token()):
            raise WebhookRejected(401, "wrong toy token")

    def parse_webhook(self, body):
        record = ToyDelivery.model_validate_json(body)
        ref = CrmRef(crm=self.name, object_type=record.type, object_id=str(record.id))
        return [SyncEvent(ref=ref, event_id=str(record.id), kind="changed", occurred_at=datetime.now(UTC),
                          source_type="toy.change", dedupe_key=f"toy-{record.id}")]


def build(settings, creds, services):
    return ToyCrm(settings.api_url, lambda: creds.get("TOY_API_TOKEN"), lambda: creds.get("TOY_WEBHOOK_TOKEN"),
                  services.clock().sleep)


SPEC = VendorSpec(
    name="toycrm",
    kind="crm",
    title="Toy CRM",
    settings=ToySettings,
    credential_keys=("TOY_API_TOKEN", "TOY_WEBHOOK_TOKEN"),
    webhook_keys=("TOY_WEBHOOK_TOKEN",),
    build=build,
    capabilities=Capabilities(webhooks=True, oauth=False, objects=("company",)),
    webhook_routes=(
        WebhookRoute(
            "/webhooks/toycrm/{pipeline}",
            {
                "description": "A toy delivery: one record, with its token in X-Toy-Token.",
                "parameters": [{"name": "X-Toy-Token", "in": "header", "required": True, "schema": {"type": "string"}}],
            },
            body="closeloop_toy_vendor:ToyDelivery",
        ),
    ),
)
'''


class _Context:
    function_name = "ContactWebhookFunction"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:ContactWebhookFunction"
    aws_request_id = "request-1"


class RecordingQueues:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def send(self, pipeline: str, body: str, delay_seconds: int = 0) -> None:
        self.sent.append((pipeline, json.loads(body)))


@pytest.fixture
def toy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """The toy vendor's package, written under tmp_path, imported from there and registered."""
    package = tmp_path / "closeloop_toy_vendor"
    package.mkdir()
    (package / "__init__.py").write_text(textwrap.dedent(TOY_PACKAGE))
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("closeloop_toy_vendor")
    registry.register(module.SPEC)
    try:
        yield module
    finally:
        registry.unregister("toycrm")
        sys.modules.pop("closeloop_toy_vendor", None)
        runtime.reset()


@pytest.fixture
def toy_configured(toy: ModuleType, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    for key in ("CREDENTIALS_SECRET_ID", "WEBHOOK_KEYS_SECRET_ID", "WEBHOOK_BASE_URL"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("CRM_PROVIDER", "toycrm")
    monkeypatch.setenv("TOY_API_URL", "https://eu.toy.example")
    monkeypatch.setenv("TOY_API_TOKEN", "api-token")
    monkeypatch.setenv("TOY_WEBHOOK_TOKEN", "hook-token")
    runtime.reset()
    return toy


def test_the_runtime_builds_a_registered_vendor_s_adapter(toy_configured: ModuleType) -> None:
    # Given a seventh vendor registered from its own package, and a deployment that chose it
    # When the runtime builds the CRM
    crm = runtime.crm()
    # Then it is the toy's adapter, built by its spec from its own settings and credentials
    assert isinstance(crm, toy_configured.ToyCrm)
    assert crm.base_url == "https://eu.toy.example"
    assert crm.api_token() == "api-token"
    assert crm.sleep == runtime.clock().sleep
    assert registry.vendor_settings("toycrm").api_url == "https://eu.toy.example"
    # And the registry lists it with the CRMs
    assert registry.get("toycrm", "crm") is toy_configured.SPEC
    assert "toycrm" in registry.names("crm")
    assert toy_configured.SPEC in registry.crms()
    assert toy_configured.SPEC not in registry.accountings()


def test_credentials_know_a_registered_vendor_s_keys(toy: ModuleType) -> None:
    # Given the toy's keys in the environment
    creds = Credentials({"TOY_API_TOKEN": "t", "TOY_WEBHOOK_TOKEN": "w"}, "api-secret", webhook_secret_id="hooks")
    # Then they are read from there (a key no spec declares would not be), and each lives in its own secret
    assert creds.get("TOY_API_TOKEN") == "t"
    assert creds.from_environment("TOY_WEBHOOK_TOKEN")
    assert creds.secret_id_for("TOY_WEBHOOK_TOKEN") == "hooks"
    assert creds.secret_id_for("TOY_API_TOKEN") == "api-secret"
    assert "TOY_API_TOKEN" in credential_keys()
    assert "TOY_WEBHOOK_TOKEN" in webhook_keys()
    import closeloop.credentials as credentials_module  # noqa: PLC0415

    assert "TOY_API_TOKEN" in credentials_module.API_KEYS
    assert "TOY_WEBHOOK_TOKEN" in credentials_module.SECRET_KEYS["WEBHOOK_KEYS_SECRET_ID"]
    # And a key nobody declares is not read from the environment
    assert not Credentials({"TOY_UNDECLARED": "x"}).from_environment("TOY_UNDECLARED")


def _toy_event(token: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / "webhook_contacts_v3.json").read_text())
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/webhooks/toycrm/contacts"
    event["pathParameters"] = {"crm": "toycrm"}
    event["headers"] = {"content-type": "application/json", "x-toy-token": token, "host": "abc.example"}
    event["body"] = json.dumps({"id": 7, "type": "company"})
    return event


def test_the_webhook_api_serves_a_registered_vendor_s_route(
    toy_configured: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the webhook API with in-memory queues and replay store
    queues = RecordingQueues()
    monkeypatch.setattr(runtime, "queues", cache(lambda: queues))  # cached, as runtime.reset() expects
    monkeypatch.setattr(runtime, "lazy_store", MemoryStore)
    context = cast(LambdaContext, _Context())
    # When the toy CRM delivers a change on its route, with the right token and then a wrong one
    accepted = webhook_api.resolve(_toy_event("hook-token"), context)
    refused = webhook_api.resolve(_toy_event("not-the-token"), context)
    # Then the first is verified by the toy's adapter and queued for the contacts pipeline; the second refused
    assert accepted["statusCode"] == 200, accepted
    assert json.loads(accepted["body"]) == {"accepted": {"contacts": 1}, "ignored": 0}
    assert [(pipeline, [e["ref"] for e in body["events"]]) for pipeline, body in queues.sent] == [
        ("contacts", [{"crm": "toycrm", "object_type": "company", "object_id": "7"}])
    ]
    assert refused["statusCode"] == 401


def test_the_openapi_document_describes_a_registered_vendor_s_route(toy: ModuleType) -> None:
    # When the webhook API's OpenAPI document is built
    document = webhook_api.openapi_document()
    # Then the toy's route is in it, with its own description and header, and the errors every route answers
    operation = document["paths"]["/webhooks/toycrm/{pipeline}"]["post"]
    assert operation["description"] == "A toy delivery: one record, with its token in X-Toy-Token."
    parameters = {(p["in"], p["name"]) for p in operation["parameters"]}
    assert {("path", "pipeline"), ("header", "X-Toy-Token")} <= parameters
    assert {"200", "400", "401", "404", "413", "503"} <= set(operation["responses"])
    assert operation["summary"] == "Toy CRM webhook"
    # And its body schema is generated from the model its parser reads the body with, nested models as components
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    assert schema["required"] == ["id", "type"]
    assert schema["properties"]["type"]["enum"] == ["company", "contact"]
    owner = schema["properties"]["owner"]["anyOf"][0]["$ref"]
    assert owner == "#/components/schemas/ToyOwner"
    assert document["components"]["schemas"]["ToyOwner"]["required"] == ["id"]


def test_the_cli_offers_a_registered_vendor(toy: ModuleType) -> None:
    # When the CLI's parser is built after the toy registered
    parser, _ = build_parser()
    # Then `closeloop setup` accepts it as a CRM
    assert parser.parse_args(["setup", "toycrm"]).system == "toycrm"


# ---------------------------------------------------------------- the registry itself


def test_the_built_in_vendors_are_listed_once_by_kind() -> None:
    # Then the registry lists the six built-in vendors, CRMs and accounting systems apart
    assert registry.names("crm") == ["hubspot", "pipedrive", "sugarcrm"]
    assert registry.names("accounting") == ["xero", "quickbooks", "zohobooks"]
    # And no two vendors share a credential key or a settings variable
    keys = registry.credential_keys()
    assert len(keys) == len(set(keys))
    variables = [alias for spec in registry.all_specs() for alias in spec.env_vars()]
    assert len(variables) == len(set(variables))
    # And every webhook route of a CRM is under /webhooks/<name>/, of an accounting system /accounting-webhooks/<name>
    for spec in registry.all_specs():
        prefix = f"/webhooks/{spec.name}/" if spec.kind == "crm" else f"/accounting-webhooks/{spec.name}"
        assert all(route.path.startswith(prefix) for route in spec.webhook_routes), spec.name
        assert bool(spec.webhook_routes) == spec.capabilities.webhooks, spec.name


def test_an_unknown_or_wrong_kind_provider_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match=r"unknown CRM provider 'nope'; known: hubspot, pipedrive, sugarcrm"):
        registry.get("nope", "crm")
    with pytest.raises(ConfigurationError, match="unknown accounting provider 'hubspot'"):
        registry.get("hubspot", "accounting")


def test_a_vendor_cannot_take_a_name_or_a_key_already_registered() -> None:
    def spec(name: str, keys: tuple[str, ...], hooks: tuple[str, ...] = ()) -> VendorSpec:
        return VendorSpec(
            name=name,
            kind="crm",
            title=name,
            settings=NoSettings,
            credential_keys=keys,
            webhook_keys=hooks,
            build=lambda settings, creds, services: None,
            capabilities=Capabilities(webhooks=False, oauth=False, objects=()),
        )

    with pytest.raises(ValueError, match="already registered"):
        registry.register(spec(registry.names("crm")[0], ("OTHER_KEY",)))
    with pytest.raises(ValueError, match="belong to another vendor"):
        registry.register(spec("another", (registry.credential_keys()[0],)))
    with pytest.raises(ValueError, match="not among its credential keys"):
        spec("another", ("A_KEY",), hooks=("B_KEY",))
    with pytest.raises(ValueError, match="built in"):
        registry.unregister(registry.names("accounting")[0])


@pytest.mark.parametrize(
    "module",
    [
        "layers/common/closeloop/runtime.py",
        "layers/common/closeloop/config.py",
        "layers/common/closeloop/credentials.py",
        "layers/common/closeloop/webhook_api.py",
        "local/closeloop_local/cli.py",
    ],
)
def test_the_modules_that_read_the_registry_name_no_vendor(module: str) -> None:
    # Then not even a comment or a docstring names one: the vendors' specs say everything vendor-specific
    text = (ROOT / module).read_text()
    assert [m.group(0) for m in VENDOR.finditer(text)] == []


def _markdown_table(text: str, first_header: str) -> list[list[str]]:
    """The rows (header first) of the markdown table in ``text`` whose first column is ``first_header``."""
    start = text.index(f"| {first_header} |")
    rows = []
    for line in text[start:].splitlines():
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split(" | ")])
    return [rows[0], *rows[2:]]  # the |---| line left out


@pytest.mark.parametrize(("kind", "first_header"), [("crm", "CRM"), ("accounting", "accounting")])
def test_the_readme_s_supported_systems_tables_are_the_specs_capabilities(kind: str, first_header: str) -> None:
    # Given the README's table of the vendors of one kind
    header, *rows = _markdown_table((ROOT / "README.md").read_text(), first_header)
    specs = registry.crms() if kind == "crm" else registry.accountings()
    # Then it has one row per vendor of that kind, in the registry's order, and its columns are the
    # capabilities' table keys
    assert len(rows) == len(specs)
    for spec, row in zip(specs, rows, strict=True):
        assert header[1:] == list(spec.capabilities.table), spec.name
        # And each row is the spec's, so the table can be generated from the specs
        assert row[0].startswith(spec.title), (row[0], spec.title)
        assert row[1:] == list(spec.capabilities.table.values()), spec.name


def test_every_built_in_vendor_can_run_in_a_local_pair() -> None:
    from closeloop_local.pairs import ACCOUNTING, CRMS, TITLES  # noqa: PLC0415 - the sandboxes: only here

    # Then the local pairs (demo, tests/pairs) are made of the registry's vendors, each with a sandbox
    assert list(CRMS) == registry.names("crm")
    assert list(ACCOUNTING) == registry.names("accounting")
    assert {spec.name: spec.title for spec in registry.all_specs()} == TITLES
