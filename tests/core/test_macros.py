"""Canned responses on both databases: validation naming the field, the sandbox, the
customer's language with fallback, using one (reply through the outbox, usage, actions),
and who sees which."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select

from posventa.core.accounts import Accounts, Role
from posventa.core.cases import CaseService, NewCase
from posventa.core.errors import NotFound, ValidationError
from posventa.core.macros import MAX_OUTPUT, MacroInput, MacroService
from posventa.core.outgoing import Outgoing
from posventa.core.persistence.schema import messages, outbox
from posventa.intake.text_templates import SandboxedTemplates
from tests.support import FakeClock

GREETING = {
    "es": "Hola {{ customer.name }}, su caso #{{ case.number }} está en curso. {{ agent.name }}",
    "pt": "Olá {{ customer.name }}, o seu caso #{{ case.number }} está em andamento. {{ agent.name }}",
}


@pytest.fixture
async def desk(db):
    clock = FakeClock()
    cases = CaseService(db=db, outgoing=Outgoing(email_domain="example.com", max_attempts=3), clock=clock)
    return cases, MacroService(db=db, cases=cases, clock=clock, templates=SandboxedTemplates(), default_language="es",
                               company_name="Soporte")


async def a_case(cases: CaseService, language: str = "pt", name: str = "João") -> int:
    case = await cases.create_case(NewCase(case_type="request", title="Pedido", description="Não chegou", contact_name=name,
                                           contact_email=f"{name.lower()}@cliente.com.br", language=language),
                                   actor="agent:ana")
    return case["number"]


@pytest.mark.parametrize("bodies, field", [
    ({"pt": "Olá {{ customer.name"}, "bodies.pt"),                                   # syntax
    ({"es": "{{ cliente.nombre }}"}, "bodies.es"),                                    # unknown variable
    ({"en": "{% for x in case %}{{ x }}{% endfor %}"}, "bodies.en"),                  # loops: unbounded cost
    ({"es": "{{ customer.name|center(1000000000) }}"}, "bodies.es"),                   # output that explodes
    ({"es": "{% set x = 1 %}"}, "bodies.es"),
    ({"es": "{% include 'base.html' %}"}, "bodies.es"),
    ({"fr": "Bonjour"}, "bodies"),
    ({"es": "  "}, "bodies"),
    ({"es": "ok\x00"}, "bodies.es"),
])
async def test_a_bad_body_is_refused_naming_its_field(desk, bodies, field):
    _, macros = desk
    with pytest.raises(ValidationError) as refused:
        await macros.create(MacroInput(name="x", bodies=bodies))
    assert refused.value.field == field


async def test_bad_actions_and_duplicate_names_are_refused(desk):
    _, macros = desk
    for actions, field in [({"type": "nope"}, "actions.type"), ({"activity": "flying"}, "actions.activity"),
                           ({"colour": "red"}, "actions.colour"), ({"subcategory_id": 3}, "actions.category_id"),
                           ({"category_id": "1"}, "actions.category_id")]:
        with pytest.raises(ValidationError) as refused:
            await macros.create(MacroInput(name="x", bodies={"es": "hola"}, actions=actions))
        assert refused.value.field == field
    await macros.create(MacroInput(name="Saludo", bodies={"es": "hola"}))
    with pytest.raises(ValidationError) as dup:
        await macros.create(MacroInput(name="saludo", bodies={"es": "otra"}))
    assert dup.value.field == "name"
    await macros.create(MacroInput(name="saludo", bodies={"es": "mía"}, owner="ana"))  # personal: another space


async def test_the_customers_language_picks_the_body_with_fallback(desk):
    cases, macros = desk
    macro = await macros.create(MacroInput(name="Saludo", bodies=GREETING))
    brazilian = await a_case(cases, "pt", "João")
    text, language = await macros.render(macro, brazilian, agent="Ana")
    assert (text, language) == (f"Olá João, o seu caso #{brazilian} está em andamento. Ana", "pt")
    english = await a_case(cases, "en", "Mary")
    text, language = await macros.render(macro, english, agent="Ana")  # no English body: the default, es
    assert language == "es" and text.startswith("Hola Mary, su caso")
    only_en = await macros.create(MacroInput(name="Only en", bodies={"en": "Hi {{ customer.name }}"}))
    assert await macros.render(only_en, brazilian, agent="Ana") == ("Hi João", "en")


async def test_agent_name_is_the_agents_display_name_not_their_login(desk, db):
    cases, macros = desk
    accounts = Accounts(db=db, clock=FakeClock())
    await accounts.create("ana", password_hash="x", role=Role.AGENT, display_name="Ana Agente")
    await accounts.create("bea", password_hash="x", role=Role.AGENT, display_name=None)
    macro = await macros.create(MacroInput(name="Firma", bodies={"pt": "Atenciosamente, {{ agent.name }}"}))
    number = await a_case(cases)
    assert await macros.render(macro, number, agent="ana") == ("Atenciosamente, Ana Agente", "pt")
    # No display name, or no console account (an API caller's own name): the name as given.
    assert await macros.render(macro, number, agent="bea") == ("Atenciosamente, bea", "pt")
    assert await macros.render(macro, number, agent="Mesa de ayuda") == ("Atenciosamente, Mesa de ayuda", "pt")
    sent = await macros.use("firma", number, agent="ana", owner="ana")
    assert sent["text"] == "Atenciosamente, Ana Agente"


async def test_the_sandbox_reaches_nothing_but_the_variables(desk):
    cases, macros = desk
    number = await a_case(cases)
    for body in ("{{ customer.__class__ }}", "{{ customer.items.__globals__ }}", "{{ case.number.real.__class__ }}",
                 "{{ customer.missing }}"):
        macro = await macros.create(MacroInput(name=body[:60], bodies={"pt": body}))
        with pytest.raises(ValidationError) as refused:
            await macros.render(macro, number, agent="Ana")
        assert refused.value.field == "bodies.pt"
    # A long but legal body is cut off at the output bound, with the field named.
    long_title = await cases.create_case(NewCase(case_type="request", title="t" * 300, description="x", contact_name="Rui",
                                                 language="pt"), actor="agent:ana")
    long = await macros.create(MacroInput(name="long", bodies={"pt": "{{ case.title }}" * 1000}))
    with pytest.raises(ValidationError) as too_long:
        await macros.render(long, long_title["number"], agent="Ana")
    assert too_long.value.field == "bodies.pt" and str(MAX_OUTPUT) in str(too_long.value)


async def test_using_a_macro_replies_counts_and_runs_its_actions(desk, db):
    cases, macros = desk
    number = await a_case(cases)
    macro = await macros.create(MacroInput(name="Resolvido", bodies=GREETING, actions={
        "type": "request", "activity": "answer_sent", "note": "Respondido con la respuesta predefinida"}))
    sent = await macros.use("resolvido", number, agent="Ana", owner="ana")
    assert sent["text"].startswith("Olá João") and sent["channel"] == "email"
    async with db.engine.connect() as conn:
        [payload] = (await conn.execute(select(outbox.c.payload).where(outbox.c.kind == "reply"))).scalars()
        notes = (await conn.execute(select(messages.c.text).where(messages.c.author == "note"))).scalars().all()
    assert payload["text"] == sent["text"]
    assert notes == ["Respondido con la respuesta predefinida"]
    case = await cases.get_case(number)
    assert (case["type"], case["activity"]) == ("request", "answer_sent")
    # The agent's edit of the rendered text goes out instead; the use still counts.
    edited = await macros.use(macro["id"], number, agent="Ana", owner="ana", text="Olá João, resolvido.")
    assert edited["text"] == "Olá João, resolvido."
    assert (await macros.get(macro["id"]))["usage_count"] == 2


async def test_concurrent_uses_all_count(desk):
    cases, macros = desk
    number = await a_case(cases)
    macro = await macros.create(MacroInput(name="Saludo", bodies=GREETING))
    await asyncio.gather(*(macros.use(macro["id"], number, agent="Ana", owner=None) for _ in range(8)))
    assert (await macros.get(macro["id"]))["usage_count"] == 8


async def test_personal_macros_are_their_owners_only(desk):
    cases, macros = desk
    number = await a_case(cases)
    shared = await macros.create(MacroInput(name="Saludo", bodies={"pt": "Olá (equipe)"}))
    mine = await macros.create(MacroInput(name="Saludo", bodies={"pt": "Olá (da Ana)"}, owner="ana"))
    assert {m["id"] for m in await macros.list(visible_to="ana")} == {shared["id"], mine["id"]}
    assert {m["id"] for m in await macros.list(visible_to="bruno")} == {shared["id"]}
    # By name, the agent's own comes first; someone else's is not found at all.
    assert (await macros.use("saludo", number, agent="Ana", owner="ana"))["text"] == "Olá (da Ana)"
    assert (await macros.use("saludo", number, agent="Bruno", owner="bruno"))["text"] == "Olá (equipe)"
    with pytest.raises(NotFound):
        await macros.use(mine["id"], number, agent="Bruno", owner="bruno")
    assert [m["name"] for m in await macros.list(visible_to="ana", name_prefix="SAL")] == ["Saludo", "Saludo"]
    await macros.delete(mine["id"])
    with pytest.raises(NotFound):
        await macros.get(mine["id"])
