"""Settings: read once from the environment, validated, cached. Logic receives them; it never reads os.environ."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from functools import lru_cache
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from closeloop.errors import ConfigurationError


class Settings(BaseModel):
    """Everything a Closeloop function is configured with (see the README's configuration table)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    crm_provider: str = Field("hubspot", alias="CRM_PROVIDER")
    accounting_provider: str = Field("xero", alias="ACCOUNTING_PROVIDER")
    webhook_base_url: str = Field("", alias="WEBHOOK_BASE_URL")
    hubspot_api_url: str = Field("https://api.hubapi.com", alias="HUBSPOT_API_URL")
    hubspot_signature_min_version: Literal["v1", "v2", "v3"] = Field(
        "v3", alias="HUBSPOT_SIGNATURE_MIN_VERSION", description="the weakest HubSpot webhook signature accepted"
    )
    xero_api_url: str = Field("https://api.xero.com", alias="XERO_API_URL")
    xero_identity_url: str = Field("https://identity.xero.com", alias="XERO_IDENTITY_URL")
    xero_login_url: str = Field("https://login.xero.com", alias="XERO_LOGIN_URL")
    quickbooks_api_url: str = Field("https://quickbooks.api.intuit.com", alias="QUICKBOOKS_API_URL")
    intuit_oauth_url: str = Field("https://oauth.platform.intuit.com", alias="INTUIT_OAUTH_URL")
    zoho_data_centre: str = Field("com", alias="ZOHO_DATA_CENTRE", pattern=r"^(com|eu|in|com\.au|jp|ca|com\.cn|sa)$")
    zoho_books_api_url: str = Field("", alias="ZOHO_BOOKS_API_URL", description="default: www.zohoapis.<dc>")
    zoho_accounts_url: str = Field("", alias="ZOHO_ACCOUNTS_URL", description="default: accounts.zoho.<dc>")
    pipedrive_api_url: str = Field("https://api.pipedrive.com", alias="PIPEDRIVE_API_URL")
    sugarcrm_url: str = Field(
        "", alias="SUGARCRM_URL", description="the SugarCRM instance, e.g. https://acme.sugarondemand.com"
    )
    sugarcrm_platform: str = Field("closeloop", alias="SUGARCRM_PLATFORM")
    sugarcrm_api_version: str = Field(
        "discover",
        alias="SUGARCRM_API_VERSION",
        pattern=r"^(discover|v?1[01](_\d+)?)$",
        description="the REST version (e.g. v11_20), or discover: the highest the instance answers",
    )
    sync_table: str = Field("", alias="SYNC_TABLE")
    #: The KMS key (id, ARN or alias) OAuth tokens are encrypted with in the sync table.
    token_key_id: str = Field("", alias="TOKEN_KEY_ID")
    idempotency_table: str = Field("", alias="IDEMPOTENCY_TABLE")
    contact_queue_url: str = Field("", alias="CONTACT_QUEUE_URL")
    deal_queue_url: str = Field("", alias="DEAL_QUEUE_URL")
    contact_dlq_url: str = Field("", alias="CONTACT_DLQ_URL")
    deal_dlq_url: str = Field("", alias="DEAL_DLQ_URL")
    report_bucket: str = Field("", alias="REPORT_BUCKET")
    alert_topic_arn: str = Field("", alias="ALERT_TOPIC_ARN")
    credentials_secret_id: str = Field("", alias="CREDENTIALS_SECRET_ID")
    webhook_keys_secret_id: str = Field(
        "", alias="WEBHOOK_KEYS_SECRET_ID", description="the secret of the webhook verification keys"
    )
    credentials_max_age_seconds: int = Field(300, alias="CREDENTIALS_MAX_AGE_SECONDS")
    invoice_status: Literal["DRAFT", "AUTHORISED"] = Field("DRAFT", alias="INVOICE_STATUS")
    invoice_send_email: bool = Field(False, alias="INVOICE_SEND_EMAIL")
    invoice_due_days: int = Field(30, ge=0, le=365, alias="INVOICE_DUE_DAYS")
    default_currency: str = Field("", alias="DEFAULT_CURRENCY")
    sku_item_codes: dict[str, str] = Field(default_factory=dict, alias="SKU_ITEM_CODES")
    tax_rules: str = Field("", alias="TAX_RULES")
    field_rules: str = Field("", alias="FIELD_RULES", description="YAML overriding field_rules.yaml")
    event_bus_name: str = Field("default", alias="EVENT_BUS_NAME")
    report_link_expiry_seconds: int = Field(7 * 86400, ge=60, le=7 * 86400, alias="REPORT_LINK_EXPIRY_SECONDS")
    accounting_rate_limit_per_minute: int = Field(
        0,
        ge=0,
        alias="ACCOUNTING_RATE_LIMIT_PER_MINUTE",
        description="calls a minute the workers share for one accounting organisation; 0: the vendor's published limit",
    )
    time_scale: float = Field(
        1.0,
        gt=0,
        alias="CLOSELOOP_TIME_SCALE",
        description="local tests only: vendor seconds per real second (rate-limit windows, Retry-After, delays)",
    )

    @field_validator("sku_item_codes", mode="before")
    @classmethod
    def _json_object(cls, value: object) -> object:
        return json.loads(value) if isinstance(value, str) else value

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Build settings from an environment mapping; raise ConfigurationError naming the bad key."""
        try:
            return cls.model_validate({k: v for k, v in env.items() if v != ""})
        except (ValidationError, ValueError) as exc:
            raise ConfigurationError(f"invalid configuration: {exc}") from exc

    @property
    def zoho_books_base_url(self) -> str:
        """Zoho Books' API root for the configured data centre (``ZOHO_BOOKS_API_URL`` overrides)."""
        return self.zoho_books_api_url or f"https://www.zohoapis.{self.zoho_data_centre}"

    @property
    def zoho_accounts_base_url(self) -> str:
        """Zoho's OAuth server for the configured data centre (``ZOHO_ACCOUNTS_URL`` overrides)."""
        return self.zoho_accounts_url or f"https://accounts.zoho.{self.zoho_data_centre}"

    def require(self, *names: str) -> None:
        """Raise ConfigurationError if any named setting is empty (a function needs it)."""
        missing = [n for n in names if not getattr(self, n)]
        if missing:
            aliases = [str(type(self).model_fields[n].alias) for n in missing]
            raise ConfigurationError(f"missing configuration: {', '.join(aliases)}")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from os.environ once (tests call ``get_settings.cache_clear()``)."""
    return Settings.from_env(os.environ)
