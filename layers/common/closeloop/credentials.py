"""Vendor credentials: from the environment locally, from the stack's Secrets Manager secret when deployed.

The secret holds one JSON object whose keys are the same names as the environment variables
(``CREDENTIAL_KEYS``; only the configured vendors' keys need values). A non-empty environment variable
wins, so a developer's shell never touches the secret. Values are never logged.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from closeloop.errors import ConfigurationError

CREDENTIAL_KEYS = (
    "HUBSPOT_ACCESS_TOKEN",
    "HUBSPOT_CLIENT_ID",
    "HUBSPOT_CLIENT_SECRET",
    "HUBSPOT_REFRESH_TOKEN",
    "PIPEDRIVE_API_TOKEN",
    "PIPEDRIVE_WEBHOOK_USER",
    "PIPEDRIVE_WEBHOOK_PASSWORD",
    "PIPEDRIVE_WEBHOOK_PATH_SECRET",
    "SUGARCRM_USERNAME",
    "SUGARCRM_PASSWORD",
    "SUGARCRM_CLIENT_ID",
    "SUGARCRM_CLIENT_SECRET",
    "SUGARCRM_WEBHOOK_TOKEN",
    "XERO_CLIENT_ID",
    "XERO_CLIENT_SECRET",
    "XERO_REFRESH_TOKEN",
    "XERO_TENANT_ID",
    "XERO_WEBHOOK_KEY",
    "QUICKBOOKS_CLIENT_ID",
    "QUICKBOOKS_CLIENT_SECRET",
    "QUICKBOOKS_REFRESH_TOKEN",
    "QUICKBOOKS_REALM_ID",
    "QUICKBOOKS_WEBHOOK_VERIFIER_TOKEN",
    "ZOHO_CLIENT_ID",
    "ZOHO_CLIENT_SECRET",
    "ZOHO_REFRESH_TOKEN",
    "ZOHO_BOOKS_ORGANIZATION_ID",
)


class Credentials:
    """Read (and for rotated tokens, write back) credentials by key."""

    def __init__(self, env: Mapping[str, str], secret_id: str = "", max_age: int = 300) -> None:
        self._env = {k: env[k] for k in CREDENTIAL_KEYS if env.get(k)}
        self._secret_id = secret_id
        self._max_age = max_age

    def _secret(self, fresh: bool) -> dict[str, Any]:
        if not self._secret_id:
            return {}
        from aws_lambda_powertools.utilities import parameters  # noqa: PLC0415 - boto3-heavy; only when used

        value = parameters.get_secret(self._secret_id, transform="json", max_age=self._max_age, force_fetch=fresh)
        return value if isinstance(value, dict) else {}

    def get(self, key: str, *, fresh: bool = False) -> str:
        """The credential ``key``; raise ConfigurationError naming the key (never its value) if unset."""
        if key in self._env:
            return self._env[key]
        value = str(self._secret(fresh).get(key) or "")
        if not value:
            where = f"secret {self._secret_id}" if self._secret_id else "the environment"
            raise ConfigurationError(f"credential {key} is not set in {where}")
        return value

    def get_optional(self, key: str, default: str) -> str:
        """The credential ``key``, or ``default`` when it is not set anywhere."""
        try:
            return self.get(key)
        except ConfigurationError:
            return default

    def from_environment(self, key: str) -> bool:
        return key in self._env

    def put(self, key: str, value: str) -> bool:
        """Write ``key`` back into the secret (rotated refresh tokens). False when it lives in the env."""
        if key in self._env or not self._secret_id:
            return False
        import boto3  # noqa: PLC0415 - only the rotating path pays for the client

        client = boto3.client("secretsmanager")
        current = json.loads(client.get_secret_value(SecretId=self._secret_id)["SecretString"] or "{}")
        current[key] = value
        client.put_secret_value(SecretId=self._secret_id, SecretString=json.dumps(current))
        return True
