"""Fixtures of the sandbox tests."""

from tests.sugar_sandbox_client import sugar  # noqa: F401 (the SugarCRM sandbox and a logged-in client)
