"""The Budget tab follows the post-sale process's mode ([cases] budget_mode), unless an
agent gives one case a mode of its own; amounts carry the currency and a total; a bad line
is refused naming its field. Over the API and the console, on both databases."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from sqlalchemy import insert, select

from posventa.core.domain import ChannelName, InboundMessage
from posventa.core.persistence.schema import cases, products
from posventa.service import Service
from tests.intake.console.harness import ConsoleClient, Running, start_console
from tests.support import API_TOKEN, make_config


@pytest.fixture
async def running(database_url, tmp_path) -> AsyncIterator[Running]:
    service = Service(make_config(database_url, tmp_path, cases={"budget_mode": "products_with_amounts"}))
    run = await start_console(service)
    async with service.db.transaction() as conn:
        await conn.execute(insert(products), [{"code": "TON-1", "name": "Tóner"}, {"code": "ROD-2", "name": "Rodillo"}])
    try:
        yield run
    finally:
        await service.stop()


async def _case(running: Running, n: int, *, language: str = "es") -> int:
    receipt = await running.service.inbox.receive(InboundMessage(
        channel=ChannelName.EMAIL, external_id=f"<b{n}@example.org>", sender=f"c{n}@example.org",
        text="Presupuesto de repuestos", subject="Presupuesto", language=language))
    return receipt.case_number


async def _own_mode(running: Running, number: int) -> str | None:
    async with running.service.db.engine.connect() as conn:
        return (await conn.execute(select(cases.c.budget_mode).where(cases.c.id == number))).scalar_one()


async def test_the_console_budget_tab_follows_the_process_mode(running):
    number = await _case(running, 1)
    async with ConsoleClient(running.base) as agent:
        assert (await agent.login(running.users["agent"]))[0] == 200
        status, page = await agent.get(f"/console/cases/{number}?tab=budget")
        # The process keeps products with amounts: the table is there, no "not used" note.
        assert status == 200 and 'id="budget-not-used"' not in page and "mode-products_with_amounts" in page
        assert "The process's: Products, quantities and amounts</option>" in page
        assert "Follows the process" in page and "Amounts in ARS" in page
        # A bad line is refused next to its field: a negative quantity, a word for an amount,
        # a product the catalog does not have.
        for field, value, error in (("quantity_0", "-1", "must not be negative"),
                                    ("unit_amount_0", "abc", "must be a number"),
                                    ("product_0", "XX-9", "is not a product code of the catalog")):
            form = {"budget_mode": "", "product_0": "TON-1", "quantity_0": "2", "unit_amount_0": "12.50", field: value}
            status, page = await agent.post(f"/console/cases/{number}/budget", form)
            assert status == 422 and f'id="error-{field}"' in page and error in page, field
        status, page = await agent.post(f"/console/cases/{number}/budget", {
            "budget_mode": "", "product_0": "TON-1", "quantity_0": "2", "unit_amount_0": "12.50",
            "product_2": "ROD-2", "quantity_2": "1", "unit_amount_2": "10"})
        assert status == 200 and 'id="budget-total">$35,00<' in page and "$25,00" in page
        assert await _own_mode(running, number) == "process"  # still the process's
        # An explicit mode is this case's own; the next case still follows the process.
        status, page = await agent.post(f"/console/cases/{number}/budget", {"budget_mode": "products_only",
                                                                            "product_0": "TON-1"})
        assert status == 200 and "This case has its own mode." in page and 'id="budget-total"' in page
        assert await _own_mode(running, number) == "products_only"
        other = await _case(running, 2, language="pt")
        status, page = await agent.get(f"/console/cases/{other}?tab=budget")
        assert "mode-products_with_amounts" in page and "Amounts in BRL" in page


async def test_the_api_budget_follows_the_process_and_names_the_bad_field(running):
    number = await _case(running, 3, language="en")
    async with aiohttp.ClientSession(running.base, headers={"Authorization": f"Bearer {API_TOKEN}"}) as http:
        async def put(body, status):
            async with http.put(f"/api/v1/cases/{number}/budget", json=body) as r:
                data = await r.json()
                assert r.status == status, data
                return data

        case = await put({"lines": [{"product": "TON-1", "quantity": 3, "unit_amount": "2.50"}]}, 200)
        assert (case["budget_mode"], case["budget_mode_source"], case["budget_currency"]) == (
            "products_with_amounts", "process", "USD")
        assert case["budget_total"] == 7.5 and case["budget_total_text"] == "$7.50"
        for line, field in (({"product": "TON-1", "quantity": -1, "unit_amount": 1}, "quantity"),
                            ({"product": "TON-1", "quantity": 1, "unit_amount": "abc"}, "unit_amount"),
                            ({"product": "TON-1", "quantity": "-2", "unit_amount": 1}, "quantity"),
                            ({"product": "NOPE", "quantity": 1, "unit_amount": 1}, "product")):
            refused = await put({"lines": [line]}, 422)
            assert refused["field"] in (f"lines[0].{field}", f"lines.0.{field}"), refused
        explicit = await put({"mode": "products_only", "lines": [{"product": "ROD-2"}]}, 200)
        assert (explicit["budget_mode"], explicit["budget_mode_source"]) == ("products_only", "case")
        back = await put({"mode": None, "lines": []}, 200)
        assert (back["budget_mode"], back["budget_mode_source"]) == ("products_with_amounts", "process")
