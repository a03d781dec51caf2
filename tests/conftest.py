"""Test-wide safety: fake AWS credentials and region, no real endpoints, fresh caches per test."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

# A helper module whose functions hold a test's assertions (the pair scenarios, which the pair suite runs
# and the contract suite records): pytest rewrites them for readable failures only if told before import.
pytest.register_assert_rewrite("tests.pairs.scenarios")

# Set before any boto3 client exists: nothing in the tests may reach a real AWS account.
for key in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
    os.environ.pop(key, None)
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",  # noqa: S105 - moto's dummy credentials
        "AWS_DEFAULT_REGION": "us-east-1",
        "POWERTOOLS_SERVICE_NAME": "closeloop-tests",
        "POWERTOOLS_METRICS_NAMESPACE": "closeloop-tests",
        "POWERTOOLS_TRACE_DISABLED": "true",
    }
)


@pytest.fixture(autouse=True)
def _fresh_runtime_caches() -> Iterator[None]:
    from closeloop import runtime

    runtime.reset()
    yield
    runtime.reset()


@pytest.fixture(autouse=True)
def _fresh_sugarcrm_api_versions() -> Iterator[None]:
    # The SugarCRM REST version is learnt once per process and instance URL; sandboxes reuse ports.
    from closeloop.vendors.sugarcrm.client import forget_api_versions

    forget_api_versions()
    yield
    forget_api_versions()


#: The tiers by how long their modules run, longest first: with ``--dist loadfile`` the workers take whole
#: modules in collection order, so the long stack modules start first and the run ends on quick unit tests
#: instead of one worker finishing a pair module alone.
_TIER_ORDER = ("pairs", "faults", "e2e", "contracts", "integration", "sandboxes", "unit")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def tier(item: pytest.Item) -> int:
        parts = item.path.relative_to(item.config.rootpath).parts
        folder = parts[1] if len(parts) > 2 and parts[0] == "tests" else ""  # noqa: PLR2004 - tests/<tier>/<file>
        return _TIER_ORDER.index(folder) if folder in _TIER_ORDER else len(_TIER_ORDER)

    items.sort(key=tier)  # stable: each module keeps its own order (a parametrised pair stays together)
