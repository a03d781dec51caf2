"""The local-stack fixture for the fault suite (module-scoped: one stack per test module)."""

from tests.stack_fixtures import loop  # noqa: F401 - a fixture, used by name
