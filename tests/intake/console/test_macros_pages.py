"""The canned responses page over plain HTTP: who may share, errors next to their field,
and another agent's macros out of reach."""

from __future__ import annotations

from posventa.core.macros import MacroInput
from tests.intake.console.harness import SQLITE_ONLY, ConsoleClient

FORM = {"name": "Saludo", "scope": "personal", "body_es": "Hola {{ customer.name }}", "body_pt": "", "body_en": "",
        "action_type": "", "action_activity": "", "action_note": ""}


@SQLITE_ONLY
async def test_agents_keep_personal_macros_and_managers_share(running, agent):
    status, page = await agent.post("/console/macros", {**FORM, "scope": "shared"})
    assert status == 422 and "only managers share" in page
    status, page = await agent.post("/console/macros", {**FORM, "body_pt": "Olá {{ cliente }}"})
    assert status == 422 and "unknown placeholder" in page and 'id="error-bodies_pt"' in page
    status, page = await agent.post("/console/macros", {**FORM, "action_activity": "answer_sent"})
    assert status == 200 and "Canned response saved" in page and "Saludo" in page
    [mine] = await running.service.macros.list(visible_to=running.users["agent"])
    assert mine["owner"] == running.users["agent"] and mine["actions"] == {"activity": "answer_sent"}

    others = await running.service.macros.create(MacroInput(name="Privada", bodies={"es": "x"}, owner="someone"))
    status, _ = await agent.get(f"/console/macros/{others['id']}")
    assert status == 404
    status, _ = await agent.post(f"/console/macros/{others['id']}/delete", {})
    assert status == 404

    async with ConsoleClient(running.base) as manager:
        await manager.login(running.users["manager"])
        status, page = await manager.post("/console/macros", {**FORM, "name": "Equipo", "scope": "shared"})
        assert status == 200 and "Equipo" in page
    status, page = await agent.get("/console/macros")
    assert "Equipo" in page and "Privada" not in page
    status, page = await agent.post(f"/console/macros/{mine['id']}/delete", {})
    assert status == 200 and "Canned response deleted" in page
