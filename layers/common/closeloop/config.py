"""Settings: read once from the environment, validated, cached. Logic receives them; it never reads os.environ."""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import lru_cache

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from closeloop.errors import ConfigurationError


class Settings(BaseModel):
    """Everything a Closeloop function is configured with (see the README's configuration table)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    crm_provider: str = Field("hubspot", alias="CRM_PROVIDER")
    accounting_provider: str = Field("xero", alias="ACCOUNTING_PROVIDER")
    webhook_base_url: str = Field("", alias="WEBHOOK_BASE_URL")
    hubspot_api_url: str = Field("https://api.hubapi.com", alias="HUBSPOT_API_URL")
    xero_api_url: str = Field("https://api.xero.com", alias="XERO_API_URL")
    xero_identity_url: str = Field("https://identity.xero.com", alias="XERO_IDENTITY_URL")
    xero_login_url: str = Field("https://login.xero.com", alias="XERO_LOGIN_URL")
    sync_table: str = Field("", alias="SYNC_TABLE")
    idempotency_table: str = Field("", alias="IDEMPOTENCY_TABLE")
    contact_queue_url: str = Field("", alias="CONTACT_QUEUE_URL")
    deal_queue_url: str = Field("", alias="DEAL_QUEUE_URL")
    report_bucket: str = Field("", alias="REPORT_BUCKET")
    alert_topic_arn: str = Field("", alias="ALERT_TOPIC_ARN")
    credentials_secret_id: str = Field("", alias="CREDENTIALS_SECRET_ID")
    credentials_max_age_seconds: int = Field(300, alias="CREDENTIALS_MAX_AGE_SECONDS")

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Build settings from an environment mapping; raise ConfigurationError naming the bad key."""
        try:
            return cls.model_validate({k: v for k, v in env.items() if v != ""})
        except ValidationError as exc:
            raise ConfigurationError(f"invalid configuration: {exc}") from exc

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
