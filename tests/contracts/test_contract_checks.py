"""The contract checker itself: it must catch what it exists to catch (no stack needed)."""

from __future__ import annotations

import json

from closeloop_local.sandboxes.base import Exchange
from tests.contracts.contract import Allowance, load

# HubSpot's example answer for GET /account-info/v3/details (accountInfo.json), with an accountType
ACCOUNT_DETAILS = {
    "portalId": 12345678,
    "accountType": "STANDARD",
    "timeZone": "US/Eastern",
    "companyCurrency": "USD",
    "additionalCurrencies": ["NZD", "AUD", "EUR"],
    "utcOffset": "-04:00",
    "utcOffsetMilliseconds": -14400000,
    "uiDomain": "app-eu1.hubspot.com",
    "dataHostingLocation": "eu1",
}


def _exchange(method: str, path: str, body: object, status: int = 200, answer: object = None) -> Exchange:
    return Exchange(
        host="127.0.0.1:1",
        method=method,
        path=path,
        query="",
        headers={"content-type": "application/json"},
        body=json.dumps(body).encode() if body is not None else b"",
        status=status,
        response_headers={"content-type": "application/json"},
        response_body=json.dumps(answer).encode(),
    )


def test_a_string_where_xero_types_a_number_is_a_violation() -> None:
    # Given Xero's contract and a payment whose Amount is a string (what the demo used to send)
    contract = load("xero")
    payment = {"Invoice": {"InvoiceID": "x"}, "Account": {"Code": "090"}, "Amount": "50.00"}
    # When it is checked
    found = contract.check(_exchange("PUT", "/api.xro/2.0/Payments", {"Payments": [payment]}, answer={}))
    # Then the checker names the field
    assert [v.where for v in found] == ["request"]
    assert "Amount" in found[0].message


def test_an_endpoint_the_vendor_does_not_publish_is_a_violation() -> None:
    found = load("hubspot").check(_exchange("GET", "/crm/v3/made-up", None))
    assert [v.message for v in found] == ["no such operation in the contract"]


def test_an_allowance_covers_only_its_own_disagreement_and_counts_its_use() -> None:
    # Given HubSpot's contract with an allowance for account details without a time zone
    contract = load("hubspot")
    contract.allowances = [
        Allowance("GET /account-info/v3/details", "response", "'timeZone' is a required property", "test")
    ]
    without_time_zone = {k: v for k, v in ACCOUNT_DETAILS.items() if k != "timeZone"}
    without_domain = {k: v for k, v in ACCOUNT_DETAILS.items() if k != "uiDomain"}
    # When the answer it covers and one missing another field are checked
    covered = contract.check(_exchange("GET", "/account-info/v3/details", None, answer=without_time_zone))
    other = contract.check(_exchange("GET", "/account-info/v3/details", None, answer=without_domain))
    # Then only the covered one passes, and the entry records its use
    assert covered == []
    assert [v.message for v in other] == ["<root>: 'uiDomain' is a required property"]
    assert [a.used for a in contract.allowances] == [1]


def test_hubspot_account_details_are_held_to_portal_information_response() -> None:
    # Given HubSpot's contract, its example answer, and answers that depart from it
    contract = load("hubspot")

    def check(answer: object, status: int = 200) -> list[str]:
        return [v.message for v in contract.check(_exchange("GET", "/account-info/v3/details", None, status, answer))]

    # Then the documented answer and a HubSpot error body pass
    assert check(ACCOUNT_DETAILS) == []
    assert check({"status": "error", "message": "no", "correlationId": "c", "category": "MISSING_SCOPES"}, 403) == []
    # And a portal id as a string, an unknown account type or an error body without its category do not
    assert check(ACCOUNT_DETAILS | {"portalId": "12345678"}) == ["portalId: '12345678' is not of type 'integer'"]
    assert len(check(ACCOUNT_DETAILS | {"accountType": "FREE"})) == 1
    assert check({"status": "error", "message": "no", "correlationId": "c"}, 404) == [
        "<root>: 'category' is a required property"
    ]


def test_a_hubspot_webhook_without_its_event_ids_is_a_violation() -> None:
    body = json.dumps([{"objectId": 1, "subscriptionType": "company.creation"}]).encode()
    found = load("hubspot").check_webhook("event", body)
    assert any("eventId" in v.message for v in found)


def test_a_quickbooks_webhook_is_held_to_intuits_cloudevents_payload() -> None:
    # Given Intuit's CloudEvents payload and the legacy eventNotifications body
    cloud_event = {
        "specversion": "1.0",
        "id": "88cd52a1-0a5e-4d2d-8a2f-2d4f1e1c1c11",
        "source": "intuit.dsnBgbseACLLRZNxo2dfc4evmEJdxde58xeeYcZliOU=",
        "type": "qbo.invoice.created.v1",
        "time": "2026-12-03T10:07:20Z",
        "intuitentityid": "6",
        "intuitaccountid": "9341452391187452",
        "data": {},
    }
    legacy = {"eventNotifications": [{"realmId": "9341452391187452", "dataChangeEvent": {"entities": []}}]}
    contract = load("quickbooks")
    # Then the published shape passes and the legacy one does not
    assert contract.check_webhook("event", json.dumps([cloud_event]).encode()) == []
    assert contract.check_webhook("event", json.dumps(legacy).encode())


def test_sugar_paths_match_any_v11_version_and_nothing_else() -> None:
    # Given Sugar's contract, written for /rest/v11_{n}/
    contract = load("sugarcrm")
    answer = {"next_offset": -1, "records": []}
    # When the same filter is sent under two v11 versions and under v10
    found = [
        contract.check(_exchange("POST", f"/rest/{version}/Accounts/filter", {"max_num": 1}, answer=answer))
        for version in ("v11_20", "v11_24", "v10")
    ]
    # Then both v11 versions match the operation and v10 is no published path of it
    assert found[:2] == [[], []]
    assert [v.message for v in found[2]] == ["no such operation in the contract"]


def test_a_zoho_invoice_without_line_items_is_a_violation() -> None:
    found = load("zohobooks").check(
        _exchange("PUT", "/books/v3/invoices", {"customer_id": "1"}, answer={"code": 0, "message": "ok"})
    )
    assert any("line_items" in v.message for v in found)


def test_a_quickbooks_customer_with_a_field_intuit_does_not_define_is_a_violation() -> None:
    body = {"DisplayName": "Northwind", "Nickname": "NW"}
    found = load("quickbooks").check(_exchange("POST", "/v3/company/1/customer", body, answer={}))
    assert any("Nickname" in v.message for v in found)


def test_a_xero_item_update_without_its_code_or_with_a_text_price_is_a_violation() -> None:
    # Given Xero's contract (POST /Items/{ItemID} is updateItem; XS Item requires Code, UnitPrice is a number)
    contract = load("xero")
    path = "/api.xro/2.0/Items/0e9a2c4d-1111-4222-8333-444455556666"
    # When an update without a Code, with the price as text, is checked
    found = contract.check(_exchange("POST", path, {"Items": [{"SalesDetails": {"UnitPrice": "12.50"}}]}, answer={}))
    # Then both are named, on the request
    assert {v.where for v in found} == {"request"}
    assert any("'Code' is a required property" in v.message for v in found)
    assert any("UnitPrice" in v.message for v in found)


def test_a_hubspot_list_page_without_results_or_with_a_cursorless_next_is_a_violation() -> None:
    # Given HubSpot's product list operation (CollectionResponseSimplePublicObjectWithAssociations)
    contract = load("hubspot")
    product = {"id": "1", "properties": {"hs_sku": "W-1"}, "createdAt": "x", "updatedAt": "x", "archived": False}
    good = {"results": [product], "paging": {"next": {"after": "2"}}}
    no_results: dict[str, object] = {"paging": {}}
    no_cursor = {"results": [], "paging": {"next": {"link": "?after=2"}}}
    answers: tuple[object, ...] = (good, no_results, no_cursor)
    # When a good page, a page without results and a next page without its cursor are checked
    found = [contract.check(_exchange("GET", "/crm/v3/objects/products", None, answer=answer)) for answer in answers]
    # Then only the good one passes, and the others name what is missing
    assert found[0] == []
    assert "'results' is a required property" in found[1][0].message
    assert "'after' is a required property" in found[2][0].message
