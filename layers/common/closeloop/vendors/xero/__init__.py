"""Xero, an accounting system: its settings, credentials, webhook route and how its adapter is built.

The package: ``adapter`` (the AccountingPort, thin), ``client`` (HTTP: tokens, rate limits, error bodies,
paging), ``mapping`` (canonical <-> Xero JSON), ``webhooks`` (signature, delivery body), ``guesses``."""

from __future__ import annotations

from typing import Any

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


class XeroSettings(VendorSettings):
    api_url: str = Field("https://api.xero.com", alias="XERO_API_URL")
    identity_url: str = Field("https://identity.xero.com", alias="XERO_IDENTITY_URL")
    login_url: str = Field("https://login.xero.com", alias="XERO_LOGIN_URL")


def build(settings: XeroSettings, creds: CredentialSource, services: Services) -> Any:
    from closeloop.vendors.xero.adapter import XeroAccounting  # noqa: PLC0415
    from closeloop.vendors.xero.client import REFRESH_RESEND_WITHIN_SECONDS, refresh_with_identity  # noqa: PLC0415

    tokens = services.client_tokens(
        creds,
        "xero",
        "XERO",
        refresh_with_identity,
        settings.identity_url,
        resend_within=REFRESH_RESEND_WITHIN_SECONDS,
    )
    tenant_id = lambda: creds.get("XERO_TENANT_ID")  # noqa: E731
    return XeroAccounting(
        base_url=settings.api_url,
        tokens=tokens,
        tenant_id=tenant_id,
        webhook_key=lambda: creds.get_optional("XERO_WEBHOOK_KEY", ""),
        sleep=services.clock().sleep,
        pacer=services.pacer("xero", XeroAccounting.RATE_LIMIT, tenant_id),
    )


SPEC = VendorSpec(
    name="xero",
    kind="accounting",
    title="Xero",
    settings=XeroSettings,
    credential_keys=(*oauth_app_keys("XERO"), "XERO_TENANT_ID", "XERO_WEBHOOK_KEY"),
    webhook_keys=("XERO_WEBHOOK_KEY",),
    build=build,
    capabilities=Capabilities(
        webhooks=True,
        oauth=True,
        rotating_refresh_tokens=True,
        connect=True,
        objects=("customer", "invoice", "payment", "product", "purchase_order", "quote", "repeating_invoice"),
        table={
            "auth": "OAuth2, rotating single-use refresh tokens",
            "customer stamp (finds a record made before a crash)": "`ContactNumber`",
            "invoice idempotency": "`Idempotency-Key` + `Reference` lookup",
            "bulk customers": "`PUT /Contacts` 50 a call; 1,000-row pages or OR-ed `where`",
            "change feed for payments": "`If-Modified-Since`",
        },
    ),
    webhook_routes=(
        WebhookRoute(
            "/accounting-webhooks/xero",
            {
                "description": (
                    "A Xero webhook delivery (contact and invoice events; an empty list is the intent-to-receive "
                    "check), signed with base64(HMAC-SHA256(XERO_WEBHOOK_KEY, body)). Answered with an empty body."
                ),
                "parameters": [
                    {"name": "x-xero-signature", "in": "header", "required": True, "schema": {"type": "string"}}
                ],
            },
            body="closeloop.vendors.xero.webhooks:XeroWebhookPayload",
        ),
    ),
)
