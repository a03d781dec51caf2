"""The SugarCRM sandbox's Quotes (groups and lines: ProductBundles -> Products) and Contracts, over real HTTP:
read, filter, page, poll by date_modified, follow links, write back, totals as Sugar's vardefs compute them,
and web logic hooks."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import httpx

from closeloop_local.sandboxes.sugarcrm import SugarSandbox
from tests.sugar_sandbox_client import Sugar

QUOTE_STAGES = ("Draft", "Negotiation", "Delivered", "On Hold", "Confirmed", "Closed Accepted", "Closed Lost",
                "Closed Dead")  # fmt: skip


def _quote(sandbox: SugarSandbox, **header: Any) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """An account, a catalogue product and a quote for it: one group of two lines (one discounted 10 %)."""
    account = sandbox.create_record("Accounts", {"name": "Acme"})
    opportunity = sandbox.create_record("Opportunities", {"name": "Deal", "account_id": account["id"]})
    widget = sandbox.create_record(
        "ProductTemplates", {"name": "Widget", "mft_part_num": "W-1", "discount_price": "12.50", "cost_price": "4"}
    )
    quote = sandbox.create_quote(
        {"name": "Q1", "quote_stage": "Draft", "date_quote_expected_closed": "2027-01-31",
         "billing_account_id": account["id"], "opportunity_id": opportunity["id"], **header},
        [{"name": "Hardware", "products": [
            {"product_template_id": widget["id"], "quantity": "4"},
            {"name": "Install", "mft_part_num": "SVC-1", "discount_price": "200", "quantity": "1",
             "discount_amount": "10", "tax_class": "Non-Taxable"},
        ]}],
    )  # fmt: skip
    return account, opportunity, quote


def test_a_quote_reads_with_its_header_number_and_totals(sugar: Sugar) -> None:
    account, opportunity, quote = _quote(sugar.sandbox)
    # When the quote is read over the API
    answer = sugar.call("GET", f"/Quotes/{quote['id']}")
    assert answer.status_code == 200, answer.text
    record = answer.json()
    # Then it carries Sugar's fields: a number, the stage, expiry, currency, account, opportunity and totals
    assert record["_module"] == "Quotes" and record["quote_num"] == 1
    assert (record["name"], record["quote_stage"], record["date_quote_expected_closed"]) == (
        "Q1",
        "Draft",
        "2027-01-31",
    )
    assert (record["billing_account_id"], record["opportunity_id"], record["currency_id"]) == (
        account["id"],
        opportunity["id"],
        "-99",
    )
    # subtotal 4 x 12.50 + 200 = 250; discount 10 % of 200 = 20; taxable only the widget (50); no tax rate
    totals = {k: record[k] for k in ("subtotal", "deal_tot", "new_sub", "taxable_subtotal", "tax", "shipping", "total")}
    assert totals == {"subtotal": "250.000000", "deal_tot": "20.000000", "new_sub": "230.000000",
                      "taxable_subtotal": "50.000000", "tax": "0.000000", "shipping": "0.000000",
                      "total": "230.000000"}  # fmt: skip


def test_a_tax_rate_taxes_the_taxable_lines_and_shipping_adds_to_the_total(sugar: Sugar) -> None:
    rate = sugar.sandbox.create_record("TaxRates", {"name": "VAT 20", "value": "20"})
    _, _, quote = _quote(sugar.sandbox, taxrate_id=rate["id"], shipping="5")
    record = sugar.call("GET", f"/Quotes/{quote['id']}").json()
    assert (record["taxrate_value"], record["tax"], record["total"]) == ("20.000000", "10.000000", "245.000000")


def test_quote_numbers_increase_and_cannot_be_written(sugar: Sugar) -> None:
    _, _, first = _quote(sugar.sandbox)
    second = sugar.sandbox.create_quote({"name": "Q2", "quote_num": 99})
    assert (first["quote_num"], second["quote_num"]) == (1, 2)
    written = sugar.call("PUT", f"/Quotes/{first['id']}", json={"quote_num": 7, "total": "1"}).json()
    assert (written["quote_num"], written["total"]) == (1, "230.000000")  # calculated: the write is ignored


def test_groups_and_lines_follow_the_related_record_links_in_position_order(sugar: Sugar) -> None:
    _, _, quote = _quote(sugar.sandbox)
    # When the quote's groups, then the group's lines are read through their links
    groups = sugar.call("GET", f"/Quotes/{quote['id']}/link/product_bundles").json()
    assert groups["next_offset"] == -1 and [g["name"] for g in groups["records"]] == ["Hardware"]
    group = groups["records"][0]
    assert (group["_module"], group["position"], group["new_sub"]) == ("ProductBundles", 0, "230.000000")
    lines = sugar.call("GET", f"/ProductBundles/{group['id']}/link/products", params={"order_by": "position"}).json()
    # Then each line carries its catalogue product, SKU, quantity, price, discount and totals
    got = [(r["position"], r["name"], r["mft_part_num"], r["quantity"], r["discount_price"], r["total_amount"])
           for r in lines["records"]]  # fmt: skip
    assert got == [
        (0, "Widget", "W-1", "4", "12.500000", "50.000000"),
        (1, "Install", "SVC-1", "1", "200.000000", "180.000000"),
    ]
    widget_line = lines["records"][0]
    assert widget_line["product_template_name"] == "Widget" and widget_line["cost_price"] == "4.000000"
    assert widget_line["quote_id"] == quote["id"] and widget_line["_module"] == "Products"
    # And a line pages like any link, and knows its quote
    page = sugar.call("GET", f"/ProductBundles/{group['id']}/link/products", params={"max_num": 1}).json()
    assert page["next_offset"] == 1 and len(page["records"]) == 1
    back = sugar.call("GET", f"/Products/{widget_line['id']}/link/quotes").json()["records"]
    assert [r["id"] for r in back] == [quote["id"]]


def test_the_quotes_account_and_opportunity_links(sugar: Sugar) -> None:
    account, opportunity, quote = _quote(sugar.sandbox)
    billed = sugar.call("GET", f"/Quotes/{quote['id']}/link/billing_accounts").json()["records"]
    assert [r["id"] for r in billed] == [account["id"]]
    assert [r["id"] for r in sugar.call("GET", f"/Quotes/{quote['id']}/link/opportunities").json()["records"]] == [
        opportunity["id"]
    ]
    of_opportunity = sugar.call("GET", f"/Opportunities/{opportunity['id']}/link/quotes").json()["records"]
    assert [r["id"] for r in of_opportunity] == [quote["id"]]
    missing = sugar.call("GET", f"/Quotes/{quote['id']}/link/nothing")
    assert (missing.status_code, missing.json()["error"]) == (404, "not_found")


def test_quotes_filter_by_stage_and_page_and_poll_by_date_modified(sugar: Sugar) -> None:
    # Given three quotes in different stages, made a minute apart
    for i, stage in enumerate(("Draft", "Delivered", "Closed Accepted")):
        sugar.sandbox.create_quote({"name": f"Q{i}", "quote_stage": stage})
        sugar.sandbox.state.clock.advance(60)
    # Then the filter syntax selects by stage, pages, and the keyset poll on date_modified finds the newer ones
    accepted = sugar.filter("Quotes", filter=[{"quote_stage": {"$in": ["Closed Accepted", "Confirmed"]}}])
    assert [r["name"] for r in accepted["records"]] == ["Q2"]
    first = sugar.filter("Quotes", max_num=2, order_by="date_modified:ASC,id:ASC", fields="name,quote_stage")
    assert [r["name"] for r in first["records"]] == ["Q0", "Q1"] and first["next_offset"] == 2
    assert set(first["records"][0]) == {"id", "name", "quote_stage", "date_modified", "_acl", "_module"}
    since = first["records"][1]["date_modified"]
    newer = sugar.filter("Quotes", filter=[{"date_modified": {"$gt": since}}], order_by="date_modified:ASC")
    assert [r["name"] for r in newer["records"]] == ["Q2"]
    bad = sugar.call("POST", "/Quotes/filter", json={"filter": [{"no_such_field": "x"}]})
    assert (bad.status_code, bad.json()["error"]) == (422, "invalid_parameter")


def test_a_line_edit_re_totals_its_quote_and_moves_the_quotes_date_modified(sugar: Sugar) -> None:
    _, _, quote = _quote(sugar.sandbox)
    line = sugar.sandbox.quote_lines(quote["id"])[0]
    sugar.sandbox.state.clock.advance(60)
    # When a line's quantity changes over the API
    answer = sugar.call("PUT", f"/Products/{line['id']}", json={"quantity": "8"})
    assert answer.status_code == 200 and answer.json()["total_amount"] == "100.000000"
    # Then the quote's totals and date_modified follow, so the poller sees the quote
    after = sugar.call("GET", f"/Quotes/{quote['id']}").json()
    assert after["subtotal"] == "300.000000" and after["date_modified"] > quote["date_modified"]
    # And a line added or deleted re-totals it too
    sugar.sandbox.add_quote_line(quote["id"], {"name": "Cable", "discount_price": "5", "quantity": "2"})
    assert sugar.call("GET", f"/Quotes/{quote['id']}").json()["subtotal"] == "310.000000"
    assert sugar.call("DELETE", f"/Products/{line['id']}").status_code == 200
    assert sugar.call("GET", f"/Quotes/{quote['id']}").json()["subtotal"] == "210.000000"
    assert [r["name"] for r in sugar.sandbox.quote_lines(quote["id"])] == ["Install", "Cable"]


def test_writing_back_to_a_quote_stores_known_fields_and_ignores_others(sugar: Sugar) -> None:
    _, _, quote = _quote(sugar.sandbox)
    # Sugar's API stores an enum value as sent (SugarFieldBase::apiValidate accepts it) and ignores unknown fields
    written = sugar.call(
        "PUT", f"/Quotes/{quote['id']}", json={"quote_stage": "Closed Accepted", "purchase_order_num": "INV-7",
                                               "no_such_field_c": "x"}
    )  # fmt: skip
    assert written.status_code == 200
    assert (written.json()["quote_stage"], written.json()["purchase_order_num"]) == ("Closed Accepted", "INV-7")
    assert "no_such_field_c" not in written.json()
    bad = sugar.call("PUT", f"/Quotes/{quote['id']}", json={"shipping": "lots"})
    assert (bad.status_code, bad.json()["error"]) == (422, "invalid_parameter")
    missing = sugar.call("PUT", "/Quotes/nope", json={"name": "x"})
    assert (missing.status_code, missing.json()["error"]) == (404, "not_found")


def test_every_quote_stage_of_quote_stage_dom_is_stored(sugar: Sugar) -> None:
    quote = sugar.sandbox.create_quote({"name": "Q"})
    for stage in QUOTE_STAGES:
        assert sugar.call("PUT", f"/Quotes/{quote['id']}", json={"quote_stage": stage}).json()["quote_stage"] == stage


def test_a_contract_reads_filters_and_links_to_its_opportunity_and_account(sugar: Sugar) -> None:
    account = sugar.sandbox.create_record("Accounts", {"name": "Acme"})
    opportunity = sugar.sandbox.create_record("Opportunities", {"name": "Renewal", "account_id": account["id"]})
    contract = sugar.sandbox.create_record(
        "Contracts",
        {"name": "Support 2027", "status": "inprogress", "start_date": "2027-01-01", "end_date": "2027-12-31",
         "account_id": account["id"], "opportunity_id": opportunity["id"], "total_contract_value": "1200"},
    )  # fmt: skip
    sugar.sandbox.create_record("Contracts", {"name": "Old", "status": "notstarted", "account_id": account["id"]})
    # When it is read
    record = sugar.call("GET", f"/Contracts/{contract['id']}").json()
    # Then it has its status, term, value and currency
    assert (record["status"], record["start_date"], record["end_date"]) == ("inprogress", "2027-01-01", "2027-12-31")
    assert (record["total_contract_value"], record["currency_id"]) == ("1200.000000", "-99")
    # And it filters by status and by its term
    running = sugar.filter("Contracts", filter=[{"status": {"$in": ["inprogress", "signed"]}}])
    assert [r["name"] for r in running["records"]] == ["Support 2027"]
    ending = sugar.filter("Contracts", filter=[{"end_date": {"$lte": "2027-12-31"}}])
    assert [r["name"] for r in ending["records"]] == ["Support 2027"]
    # And it links to its opportunity and account, and they back to it
    linked = sugar.call("GET", f"/Contracts/{contract['id']}/link/opportunities").json()["records"]
    assert [r["id"] for r in linked] == [opportunity["id"]]
    of_opportunity = sugar.call("GET", f"/Opportunities/{opportunity['id']}/link/contracts").json()["records"]
    assert [r["id"] for r in of_opportunity] == [contract["id"]]
    of_account = sugar.call("GET", f"/Accounts/{account['id']}/link/contracts").json()
    assert len(of_account["records"]) == 2
    # And a cancelled (ended) contract is a PUT of its end date and status
    ended = sugar.call("PUT", f"/Contracts/{contract['id']}", json={"end_date": "2027-06-30", "status": "signed"})
    assert (ended.json()["end_date"], ended.json()["status"]) == ("2027-06-30", "signed")


def test_quote_and_contract_saves_send_web_logic_hooks(sugar: Sugar) -> None:
    # Given after_save hooks on Quotes and Contracts (to a URL nothing listens on: the payload is what counts)
    sugar.sandbox.add_hook("Quotes", "http://127.0.0.1:9/hooks")
    sugar.sandbox.add_hook("Contracts", "http://127.0.0.1:9/hooks")
    _, _, quote = _quote(sugar.sandbox)
    sugar.sandbox.create_record("Contracts", {"name": "C", "status": "signed"})
    sugar.call("PUT", f"/Quotes/{quote['id']}", json={"quote_stage": "Closed Accepted"})
    # When the dispatch job runs
    sent = sugar.sandbox.run_hook_job()
    payloads = [json.loads(d["body"]) for d in sent]
    # Then each save was one payload naming the bean class, the last carrying the stage change
    assert {p["bean"] for p in payloads} == {"Quote", "Contract"}
    last = [p for p in payloads if p["bean"] == "Quote"][-1]
    assert last["isUpdate"] is True and last["dataChanges"]["quote_stage"]["after"] == "Closed Accepted"
    assert last["data"]["quote_num"] == 1 and Decimal(last["data"]["total"]) == Decimal("230")


def test_a_quote_over_the_control_api(sugar: Sugar) -> None:
    body = {"name": "Via control", "bundles": [{"name": "G", "products": [{"name": "X", "discount_price": "3",
                                                                           "quantity": "3"}]}]}  # fmt: skip
    made = httpx.post(f"{sugar.url}/_sandbox/quotes", json=body)
    assert made.status_code == 201 and made.json()["total"] == "9.000000"
    extra = {"name": "Y", "quantity": "1", "discount_price": "1"}
    line = httpx.post(f"{sugar.url}/_sandbox/quotes/{made.json()['id']}/lines", json=extra)
    assert line.status_code == 201 and line.json()["position"] == 1
    assert sugar.sandbox.get_record("Quotes", made.json()["id"])["total"] == "10.000000"  # type: ignore[index]


def test_metadata_lists_the_new_modules_fields(sugar: Sugar) -> None:
    meta = sugar.call("GET", "/metadata", params={"type_filter": "modules", "module_filter": "Quotes,Contracts"})
    fields = meta.json()["modules"]
    assert fields["Quotes"]["fields"]["quote_stage"]["type"] == "enum"
    assert fields["Contracts"]["fields"]["total_contract_value"]["type"] == "currency"
