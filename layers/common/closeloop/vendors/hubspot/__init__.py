"""HubSpot, a CRM: its settings, credentials, webhook route and how its adapter
(``closeloop.vendors.hubspot.adapter``) is built."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from closeloop.vendors.spec import (
    Capabilities,
    CredentialSource,
    Services,
    VendorSettings,
    VendorSpec,
    WebhookRoute,
    oauth_app_keys,
)


class HubSpotSettings(VendorSettings):
    api_url: str = Field("https://api.hubapi.com", alias="HUBSPOT_API_URL")
    signature_min_version: Literal["v1", "v2", "v3"] = Field(
        "v3", alias="HUBSPOT_SIGNATURE_MIN_VERSION", description="the weakest HubSpot webhook signature accepted"
    )


def build(settings: HubSpotSettings, creds: CredentialSource, services: Services) -> Any:
    from closeloop.vendors.hubspot.adapter import HubSpotCrm  # noqa: PLC0415
    from closeloop.vendors.hubspot.client import REFRESH_RESEND_WITHIN_SECONDS, refresh_with_hubspot  # noqa: PLC0415

    # A private app's token when set; else an OAuth app's tokens (HubSpot's refresh tokens do not rotate).
    return HubSpotCrm(
        client_secret=lambda: creds.get("HUBSPOT_CLIENT_SECRET"),
        access_token=lambda: creds.get_optional("HUBSPOT_ACCESS_TOKEN", ""),
        oauth_tokens=lambda: services.client_tokens(
            creds,
            "hubspot",
            "HUBSPOT",
            refresh_with_hubspot,
            settings.api_url,
            resend_within=REFRESH_RESEND_WITHIN_SECONDS,
            rotates=False,
        ),
        base_url=settings.api_url,
        signature_min_version=settings.signature_min_version,
        sleep=services.clock().sleep,
    )


SPEC = VendorSpec(
    name="hubspot",
    kind="crm",
    title="HubSpot",
    settings=HubSpotSettings,
    credential_keys=("HUBSPOT_ACCESS_TOKEN", *oauth_app_keys("HUBSPOT")),
    webhook_keys=("HUBSPOT_CLIENT_SECRET",),
    build=build,
    capabilities=Capabilities(
        webhooks=True,
        oauth=True,
        objects=("company", "contact", "deal", "product", "purchase_order", "quote", "repeating_invoice"),
        table={
            "webhook authenticity": "v3 signature (v2/v1 too), 5-minute window",
            "customers read": "batch reads + v4 batch associations",
            "won detection": "stage metadata `isClosed`+probability 1",
            "write-back": "batch update of `closeloop_*` properties",
            "catch-up poll": "search on last-modified, keyset paging",
        },
    ),
    webhook_routes=(
        WebhookRoute(
            "/webhooks/hubspot/{pipeline}",
            {
                "description": "A HubSpot webhook batch (at most 100 events), signed with HubSpot's v3 or v1 scheme.",
                "parameters": [
                    {"name": "X-HubSpot-Signature-v3", "in": "header", "required": False, "schema": {"type": "string"}},
                    {
                        "name": "X-HubSpot-Request-Timestamp",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string"},
                    },
                ],
            },
            body="closeloop.vendors.hubspot.webhooks:HubSpotWebhookBatch",
        ),
    ),
)
