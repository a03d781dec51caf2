"""Keep PII and secrets out of logs and error records: emails, phone numbers, long digit runs, tokens."""

from __future__ import annotations

import re

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")
_PHONE_OR_NUMBER = re.compile(r"\+?\d[\d ().-]{5,}\d")
_BEARER = re.compile(r"(?i)(bearer\s+)[\w.~+/=-]+")
_TOKEN_FIELD = re.compile(r'(?i)("(?:access_token|refresh_token|id_token|client_secret|password)"\s*:\s*")[^"]*')

MAX_EXCERPT = 500


def redact(text: str, limit: int = MAX_EXCERPT) -> str:
    """Mask emails, phone-like and long numeric runs (tax ids), bearer tokens and token fields; truncate."""
    text = _TOKEN_FIELD.sub(r"\1***", text)
    text = _BEARER.sub(r"\1***", text)
    text = _EMAIL.sub("<email>", text)
    text = _PHONE_OR_NUMBER.sub("<number>", text)
    if len(text) > limit:
        text = text[:limit] + "…"
    return text
