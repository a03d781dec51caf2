"""End to end with HubSpot connected as an OAuth app: its access token expires while the stack runs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from closeloop.models import CrmRef
from closeloop_local.demo import sandbox_environment
from closeloop_local.sandboxes import hubspot as hubspot_sandbox
from closeloop_local.sandboxes import xero as xero_sandbox
from closeloop_local.stack import LocalStack
from tests.stack_fixtures import ROOT, Loop

pytestmark = pytest.mark.e2e

TOKEN_LIFETIME = 180


@pytest.fixture(scope="module")
def oauth_loop() -> Iterator[Loop]:
    # HubSpot as an OAuth app: client id, secret and refresh token; no private-app token
    xero, xero_server = xero_sandbox.serve()
    # Tokens live 3 minutes here (HubSpot: 30) so that jumping HubSpot's clock past one keeps the webhooks it
    # signs inside the 5-minute signature window; Closeloop still thinks the token fresh (60 s margin).
    hubspot, hubspot_server = hubspot_sandbox.serve(hubspot_sandbox.HubSpotSandbox(oauth_token_lifetime=TOKEN_LIFETIME))
    driver = hubspot_sandbox.HubSpotDriver(hubspot, hubspot_server.url, oauth=True)
    environment = sandbox_environment(xero, xero_server.url, hubspot_server.url) | driver.environment(
        hubspot_server.url
    )
    stack = LocalStack(ROOT, port=0, env_overrides=environment)
    stack.start()
    driver.subscribe(stack.api_url)
    try:
        yield Loop(stack, xero, xero_server, hubspot, hubspot_server)
    finally:
        stack.stop()
        hubspot.close()
        hubspot_server.stop()
        xero_server.stop()


def _company(object_id: object) -> CrmRef:
    return CrmRef(crm="hubspot", object_type="company", object_id=str(object_id))


def _xero_contact(loop: Loop, name: str) -> dict[str, Any]:
    (contact,) = [c for c in loop.active_xero_contacts() if c.get("Name") == name]
    return contact


def test_contact_loop_survives_the_oauth_access_token_expiring_mid_run(oauth_loop: Loop) -> None:
    loop = oauth_loop
    # Given a company created in HubSpot and synced with the first access token the stack got
    acme = loop.hubspot.create_object("companies", {"name": "Tokened Anvils Ltd", "city": "London"})
    loop.hubspot.create_object(
        "contacts",
        {"firstname": "Ann", "email": "ann@tokened.test"},
        associations=[{"to_type": "companies", "to_id": acme["id"], "primary": True}],
    )
    loop.settle()
    assert _xero_contact(loop, "Tokened Anvils Ltd")["EmailAddress"] == "ann@tokened.test"
    tokens = [r for r in loop.hubspot.state.requests if r.path == "/oauth/v1/token"]
    assert len(tokens) == 1
    assert b"grant_type=refresh_token" in tokens[0].body
    assert not [r for r in loop.hubspot.state.requests if r.path.startswith("/crm/") and r.status == 401]
    # When HubSpot's clock passes the access token's lifetime and the company is edited
    loop.hubspot.state.clock.advance(TOKEN_LIFETIME + 1)
    before = len(loop.hubspot.state.requests)
    loop.hubspot.update_object("companies", acme["id"], {"city": "Paris"})
    loop.settle()
    # Then the first read is refused as expired, the token is refreshed once, and the edit reaches Xero
    after = loop.hubspot.state.requests[before:]
    assert [r.path for r in after if r.path == "/oauth/v1/token"] == ["/oauth/v1/token"]
    refused = [r for r in after if r.status == 401]
    assert len(refused) == 1
    assert refused[0].path.startswith("/crm/")
    assert all(r.status < 400 for r in after[after.index(refused[0]) + 1 :])
    assert _xero_contact(loop, "Tokened Anvils Ltd")["Addresses"]
    audit = loop.store.list_audit(_company(acme["id"]))
    assert [a.action for a in audit] == ["created", "updated"]
    assert audit[1].changes == {"address.city": {"before": "London", "after": "Paris"}}
    assert loop.store.get_failed_sync(_company(acme["id"])) is None
