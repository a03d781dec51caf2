"""Pipedrive, a CRM: its settings, credentials, webhook route and how its adapter
(``closeloop.vendors.pipedrive.adapter``) is built."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from closeloop.vendors.spec import Capabilities, CredentialSource, Services, VendorSettings, VendorSpec, WebhookRoute


class PipedriveSettings(VendorSettings):
    api_url: str = Field("https://api.pipedrive.com", alias="PIPEDRIVE_API_URL")
    quote_stages: str = Field(
        "",
        alias="PIPEDRIVE_QUOTE_STAGES",
        pattern=r"^\s*(\d+\s*(,\s*\d+\s*)*)?$",
        description="the stage ids (comma-separated) in which an open deal is quoted; empty: no deal is",
    )

    @property
    def quote_stage_ids(self) -> tuple[str, ...]:
        return tuple(stage.strip() for stage in self.quote_stages.split(",") if stage.strip())


def build(settings: PipedriveSettings, creds: CredentialSource, services: Services) -> Any:
    from closeloop.vendors.pipedrive.adapter import PipedriveCrm  # noqa: PLC0415

    return PipedriveCrm(
        api_token=lambda: creds.get("PIPEDRIVE_API_TOKEN"),
        webhook_user=lambda: creds.get("PIPEDRIVE_WEBHOOK_USER"),
        webhook_password=lambda: creds.get("PIPEDRIVE_WEBHOOK_PASSWORD"),
        webhook_path_secret=lambda: creds.get("PIPEDRIVE_WEBHOOK_PATH_SECRET"),
        base_url=settings.api_url,
        quote_stages=settings.quote_stage_ids,
        sleep=services.clock().sleep,
    )


SPEC = VendorSpec(
    name="pipedrive",
    kind="crm",
    title="Pipedrive",
    settings=PipedriveSettings,
    credential_keys=(
        "PIPEDRIVE_API_TOKEN",
        "PIPEDRIVE_WEBHOOK_USER",
        "PIPEDRIVE_WEBHOOK_PASSWORD",
        "PIPEDRIVE_WEBHOOK_PATH_SECRET",
    ),
    webhook_keys=("PIPEDRIVE_WEBHOOK_USER", "PIPEDRIVE_WEBHOOK_PASSWORD", "PIPEDRIVE_WEBHOOK_PATH_SECRET"),
    build=build,
    capabilities=Capabilities(
        webhooks=True,
        oauth=False,
        objects=("company", "contact", "deal", "product", "purchase_order", "quote", "repeating_invoice"),
        path_secret_key="PIPEDRIVE_WEBHOOK_PATH_SECRET",
        table={
            "webhook authenticity": "HTTP Basic + secret path segment (v2 webhooks)",
            "customers read": "v2 organizations/persons",
            "won detection": '`data.status == "won"` with `previous.status`',
            "write-back": "v2 PATCH of custom fields by hash key",
            "catch-up poll": "`/v1/recents`",
        },
    ),
    webhook_routes=(
        WebhookRoute(
            "/webhooks/pipedrive/{pipeline}/{secret}",
            {
                "description": (
                    "A Pipedrive v2 webhook (one event), authenticated by HTTP Basic credentials and the URL's "
                    "last path segment (PIPEDRIVE_WEBHOOK_PATH_SECRET)."
                ),
                "parameters": [
                    {"name": "secret", "in": "path", "required": True, "schema": {"type": "string"}},
                    {"name": "Authorization", "in": "header", "required": False, "schema": {"type": "string"}},
                ],
            },
            body="closeloop.vendors.pipedrive.webhooks:PipedriveWebhookPayload",
        ),
    ),
)
