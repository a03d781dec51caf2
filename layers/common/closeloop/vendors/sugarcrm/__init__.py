"""SugarCRM, a CRM: its settings, credentials, webhook route and how its adapter is built.

The package: ``client`` (REST calls, version discovery, tokens, error bodies, paging), ``mapping`` (Sugar records
<-> canonical models), ``webhooks`` (web logic hook deliveries), ``adapter`` (the CrmPort and CatalogueCrm over
them), ``quotes`` (the quote port over Quotes and their grouped lines)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from closeloop.vendors.spec import Capabilities, CredentialSource, Services, VendorSettings, VendorSpec, WebhookRoute


class SugarCrmSettings(VendorSettings):
    url: str = Field("", alias="SUGARCRM_URL", description="the SugarCRM instance, e.g. https://acme.sugarondemand.com")
    platform: str = Field("closeloop", alias="SUGARCRM_PLATFORM")
    api_version: str = Field(
        "discover",
        alias="SUGARCRM_API_VERSION",
        pattern=r"^(discover|v?1[01](_\d+)?)$",
        description="the REST version (e.g. v11_20), or discover: the highest the instance answers",
    )
    quote_ready_stages: str = Field(
        "Delivered,Confirmed,Closed Accepted",
        alias="SUGARCRM_QUOTE_READY_STAGES",
        description="the quote stages (quote_stage) of a quote sent to or agreed by the customer: it becomes an "
        "accounting quote",
    )
    quote_rejected_stages: str = Field(
        "Closed Lost,Closed Dead",
        alias="SUGARCRM_QUOTE_REJECTED_STAGES",
        description="the quote stages of a quote turned down or abandoned",
    )


def build(settings: SugarCrmSettings, creds: CredentialSource, services: Services) -> Any:
    from closeloop.http import worst_case_seconds  # noqa: PLC0415
    from closeloop.oauth import RefreshingTokens  # noqa: PLC0415
    from closeloop.vendors.sugarcrm.adapter import SugarCrm  # noqa: PLC0415
    from closeloop.vendors.sugarcrm.client import (  # noqa: PLC0415
        REFRESH_RESEND_WITHIN_SECONDS,
        TOKEN_POSTS_PER_REFRESH,
        password_grant,
    )
    from closeloop.vendors.sugarcrm.quotes import stage_list  # noqa: PLC0415

    settings.require("url")
    # Sugar keeps one session per user and platform: the shared token state and its lease keep
    # concurrent functions from logging each other out. There is no refresh token to seed.
    tokens = RefreshingTokens(
        "sugarcrm",
        services.lazy_store(),
        seed=lambda fresh: "",
        refresh=password_grant(
            settings.url,
            username=lambda: creds.get("SUGARCRM_USERNAME"),
            password=lambda: creds.get("SUGARCRM_PASSWORD"),
            platform=settings.platform,
            client_id=lambda: creds.get_optional("SUGARCRM_CLIENT_ID", "sugar"),
            client_secret=lambda: creds.get_optional("SUGARCRM_CLIENT_SECRET", ""),
            api_version=settings.api_version,
        ),
        write_back=lambda token: False,
        resend_within=REFRESH_RESEND_WITHIN_SECONDS,
        refresh_seconds=TOKEN_POSTS_PER_REFRESH * worst_case_seconds(),
        reissuable=True,  # a lost session is replaced by a password login
        invocation_ends_at=services.invocation_ends_at,
    )
    return SugarCrm(
        instance_url=settings.url,
        tokens=tokens,
        webhook_token=lambda: creds.get("SUGARCRM_WEBHOOK_TOKEN"),
        api_version=settings.api_version,
        sleep=services.clock().sleep,
        quote_ready_stages=stage_list(settings.quote_ready_stages),
        quote_rejected_stages=stage_list(settings.quote_rejected_stages),
    )


SPEC = VendorSpec(
    name="sugarcrm",
    kind="crm",
    title="SugarCRM",
    settings=SugarCrmSettings,
    credential_keys=(
        "SUGARCRM_USERNAME",
        "SUGARCRM_PASSWORD",
        "SUGARCRM_CLIENT_ID",
        "SUGARCRM_CLIENT_SECRET",
        "SUGARCRM_WEBHOOK_TOKEN",
    ),
    webhook_keys=("SUGARCRM_WEBHOOK_TOKEN",),
    build=build,
    capabilities=Capabilities(
        webhooks=True,
        oauth=True,
        objects=("company", "contact", "deal", "product", "purchase_order", "quote", "repeating_invoice"),
        path_secret_key="SUGARCRM_WEBHOOK_TOKEN",
        table={
            "webhook authenticity": "secret path segment (web logic hooks have no signature)",
            "customers read": "filter API, `$in` on ids",
            "won detection": "`sales_stage` Closed Won",
            "write-back": "PUT of `_c` custom fields (created in Studio)",
            "catch-up poll": "filter `date_modified >=` (Sugar never retries a hook)",
        },
    ),
    webhook_routes=(
        WebhookRoute(
            "/webhooks/sugarcrm/{pipeline}/{secret}",
            {
                "description": (
                    "A SugarCRM web logic hook (one record), authenticated by the URL's last path segment "
                    "(SUGARCRM_WEBHOOK_TOKEN): web logic hooks carry no signature."
                ),
                "parameters": [{"name": "secret", "in": "path", "required": True, "schema": {"type": "string"}}],
            },
            body="closeloop.vendors.sugarcrm.webhooks:SugarCrmWebhookDelivery",
        ),
    ),
)
