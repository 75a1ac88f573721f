"""Full-text search on both databases: what it searches, how it matches, ranks and
highlights, and that the index follows every write (insert, edit, delete)."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import delete, text

from posventa.core.cases import CaseFilter, CaseService, NewCase
from posventa.core.domain import ChannelName, InboundMessage
from posventa.core.errors import ValidationError
from posventa.core.inbox import InboxService
from posventa.core.outgoing import Outgoing
from posventa.core.persistence.schema import cases
import posventa.core.search as search_module
from posventa.core.search import INDEX, WALK, TermStats, hits, parse_query, read_term_stats
from tests.support import FakeClock


@pytest.fixture
async def desk(db):
    outgoing = Outgoing(email_domain="example.com", max_attempts=3)
    clock = FakeClock()
    service = CaseService(db=db, outgoing=outgoing, clock=clock)
    inbox = InboxService(db=db, outgoing=outgoing, clock=clock)
    async with inbox:
        yield service, inbox


async def search(service: CaseService, q: str, **kw) -> list[dict]:
    return await service.list_cases(CaseFilter(text=q, **kw))


def marked(match: dict) -> list[str]:
    return [match["snippet"][a:b] for a, b in match["highlights"]]


async def test_accent_and_case_insensitive_in_every_searched_field(desk):
    service, inbox = desk
    licence = await service.create_case(NewCase(case_type="request", title="Activación", description="No activa el producto",
                                                contact_name="João Gonçalves", contact_email="joao@cliente.com.br",
                                                language="pt"), actor="agent:ana")
    await service.reply(licence["number"], "Sua licença foi renovada, obrigado", agent="ana")
    other = await service.create_case(NewCase(case_type="request", title="Renovación anual", description="Quiero renovar",
                                              contact_name="Lucía"), actor="agent:ana")
    await service.add_note(other["number"], "Ya RENOVAMOS el contrato en marzo", agent="ana")
    chat = await inbox.receive(InboundMessage(channel=ChannelName.TELEGRAM, external_id="t1", sender="777123",
                                              sender_name="Pedro", text="la impresora hace ruido"))

    found = await search(service, "licenca")
    assert [c["number"] for c in found] == [licence["number"]]
    assert found[0]["match"]["source"] == "message" and marked(found[0]["match"]) == ["licença"]
    # Case, accents and word prefixes, in es and pt, in titles, replies and notes.
    assert [c["number"] for c in await search(service, "RENOVACION")] == [other["number"]]
    hits = await search(service, "renovamos")
    assert [c["number"] for c in hits] == [other["number"]] and hits[0]["match"]["source"] == "note"
    assert marked(hits[0]["match"]) == ["RENOVAMOS"]
    assert [c["number"] for c in await search(service, "gonçalves")] == [licence["number"]]
    assert [c["number"] for c in await search(service, "goncalves joao")] == [licence["number"]]
    assert [c["number"] for c in await search(service, "cliente.com.br")] == [licence["number"]]
    assert [c["number"] for c in await search(service, "777123")] == [chat.case_number]
    assert [c["number"] for c in await search(service, "IMPRESORA")] == [chat.case_number]
    # Words match anywhere in the case, not only side by side.
    assert [c["number"] for c in await search(service, "ruido pedro")] == [chat.case_number]
    assert await search(service, "licenca ruido") == []
    # The case number, with or without "#", comes first.
    by_number = await search(service, f"#{other['number']}")
    assert by_number[0]["number"] == other["number"] and by_number[0]["match"]["source"] == "number"


async def test_title_outranks_a_passing_mention_and_filters_still_apply(desk):
    service, _ = desk
    mention = await service.create_case(NewCase(case_type="request", title="Consulta", description="Hola", contact_name="A"),
                                        actor="agent:ana")
    await service.add_note(mention["number"], "puede que sea la garantía, o no", agent="ana")
    titled = await service.create_case(NewCase(case_type="request", title="Garantía vencida", description="La garantía venció ayer",
                                               contact_name="B"), actor="agent:ana")
    found = await search(service, "garantia")
    assert [c["number"] for c in found] == [titled["number"], mention["number"]]
    await service.change_activity(titled["number"], "closed", agent="ana")
    assert [c["number"] for c in await search(service, "garantia", open_only=True)] == [mention["number"]]
    # Without q, no match field and the usual order.
    assert "match" not in (await service.list_cases(CaseFilter()))[0]


async def test_the_index_follows_edits_and_deletes(desk, db):
    service, inbox = desk
    first = await inbox.receive(InboundMessage(channel=ChannelName.WEBCHAT, external_id="w1", sender="s-1",
                                               text="el envío llegó roto"))
    assert [c["number"] for c in await search(service, "envio")] == [first.case_number]  # title and first message
    assert await inbox.record_edit(ChannelName.WEBCHAT, "w1", "el paquete llegó roto")
    # The case's title keeps the first text; the message now holds only the new one.
    assert [c["match"]["source"] for c in await search(service, "envio")] == ["case"]
    assert [c["match"]["source"] for c in await search(service, "paquete")] == ["message"]
    async with db.engine.connect() as conn:
        assert await conn.scalar(text("SELECT count(*) FROM messages WHERE text LIKE '%envío%'")) == 0
    async with db.transaction() as conn:
        await conn.execute(text("UPDATE cases SET title = 'Caja aplastada', description = 'x' WHERE id = :id"), {"id": first.case_number})
    assert [c["number"] for c in await search(service, "aplastada")] == [first.case_number]
    assert await search(service, "envio") == []  # the old title and description left the index
    async with db.transaction() as conn:
        await conn.execute(delete(cases).where(cases.c.id == first.case_number))
    assert await search(service, "paquete") == [] and await search(service, "aplastada") == []


async def test_queries_are_data_and_bounded(desk):
    service, _ = desk
    await service.create_case(NewCase(case_type="request", title='Error "42" * OR', description="x", contact_name="A"), actor="agent:a")
    for q in ['"', "*", "OR", "NEAR(a b)", "a:b", "^x", "title:x", "'", "-", "(", "a AND", ":*", "&|!"]:
        await search(service, q)  # never a syntax error from either engine
    assert [c["title"] for c in await search(service, '"42"*')] == ['Error "42" * OR']
    with pytest.raises(ValidationError) as long:
        await search(service, "x" * 201)
    assert long.value.field == "q"
    with pytest.raises(ValidationError):
        await search(service, "a\x00b")
    assert parse_query("¹²").words == ("12",) and parse_query("¹²").number is None  # no 500 on int("¹")
    assert parse_query("¿?!") is None and await search(service, "¿?!") == []
    assert parse_query("uno dos tres cuatro cinco seis siete ocho nueve diez").words[-1] == "ocho"


def test_term_statistics_choose_each_tables_plan():
    # 1,000,000 messages: "garantia" in half of them, "xyzzy" in none of the common ones.
    stats = TermStats(rows={"messages": 1e6, "contacts": 1e5}, common={"messages": {"garantia": 0.5, "impresora": 0.5},
                                                                       "contacts": {}},
                      floor={"messages": 0.001, "contacts": 0.005})
    # Dense: the newest 1,000 come after ~2,000 rows walked; the index would read 500,000.
    assert stats.plan("messages", ["garantia"]) == WALK
    assert stats.plan("messages", ["garant"]) == WALK  # a prefix of a common lexeme
    assert stats.plan("messages", ["garantía", "impresora"]) == WALK  # 25 %, accents folded
    # Rare, or in a table no common lexeme was found in: the GIN index reads few rows.
    assert stats.plan("messages", ["xyzzy"]) == INDEX
    assert stats.plan("messages", ["garantia", "xyzzy"]) == INDEX
    assert stats.plan("contacts", ["garantia"]) == INDEX
    # Never analyzed: the planner chooses, as before.
    assert stats.plan("cases", ["garantia"]) is None
    sql = str(hits(parse_query("garantia xyzzy"), "postgresql", stats).element)
    # "garantia": the newest 8,000 messages (4 x 1,000 / 50 %), else the index.
    assert sql.count("FROM (SELECT * FROM messages ORDER BY id DESC LIMIT 8000) m") == 1
    assert "ORDER BY m.id + 0 DESC" in sql  # the index for "xyzzy" (and for the walk's fallback)


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)  # the plans are PostgreSQL's
async def test_a_walk_that_finds_too_few_falls_back_to_the_index(desk, db, monkeypatch):
    """Statistics that call a word common, where the newest texts lack it (it was common
    once, or they are stale), cost the walk's window, never the old matches."""
    service, inbox = desk
    monkeypatch.setattr(search_module, "CANDIDATES", 3)
    monkeypatch.setattr(search_module, "WALK_MARGIN", 1)
    old = await inbox.receive(InboundMessage(channel=ChannelName.TELEGRAM, external_id="old", sender="1",
                                             sender_name="Cliente", text="la garantía vencida"))
    for i in range(6):  # newer texts without the word: the walk's window (3 x 1 / 100 %) holds none
        await inbox.receive(InboundMessage(channel=ChannelName.TELEGRAM, external_id=f"n{i}", sender=f"2{i}",
                                           sender_name="Cliente", text=f"otra consulta {i}", new_case=True))
    stats = TermStats(rows={t: 1e6 for t in ("messages", "cases", "contacts", "contact_identities")},
                      common={t: {"garantia": 1.0} for t in ("messages", "cases", "contacts", "contact_identities")},
                      floor={t: 0.005 for t in ("messages", "cases", "contacts", "contact_identities")})
    assert stats.plan("messages", ["garantia"]) == WALK
    service._term_stats = (time.monotonic(), stats)  # as if read from pg_stats a moment ago
    assert [c["number"] for c in await search(service, "garantia")] == [old.case_number]


async def test_results_do_not_depend_on_the_plan_the_statistics_choose(desk, db):
    service, inbox = desk
    for i in range(30):
        await inbox.receive(InboundMessage(channel=ChannelName.TELEGRAM, external_id=f"g{i}", sender=f"9{i}",
                                           sender_name="Cliente", text=f"la garantía de la impresora {i}",
                                           new_case=True))
    await inbox.receive(InboundMessage(channel=ChannelName.TELEGRAM, external_id="rare", sender="800",
                                       sender_name="Cliente", text="código xyzzy en la impresora"))
    before = {q: [c["number"] for c in await search(service, q)] for q in ("garantia", "xyzzy impresora", "impres")}
    if db.dialect != "sqlite":
        async with db.engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text("ANALYZE"))
        planned = CaseService(db=db, outgoing=Outgoing(email_domain="example.com", max_attempts=3), clock=FakeClock())
        async with db.engine.connect() as conn:
            assert (await read_term_stats(conn)).common.get("messages"), "ANALYZE gathered the lexemes"
        after = {q: [c["number"] for c in await search(planned, q)] for q in before}
        assert after == before
    assert len(before["garantia"]) == 30 and len(before["xyzzy impresora"]) == 1 and len(before["impres"]) == 31


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # FTS5's exact and prefix terms
async def test_a_word_with_enough_exact_matches_is_read_as_typed(desk, db, monkeypatch):
    """Where a word's exact term alone fills the candidates, FTS5 reads it lazily newest
    first instead of merging every term it begins; where it does not (a rare word, or part
    of one), the word is still a prefix. Highlights follow the same choice."""
    service, inbox = desk
    monkeypatch.setattr(search_module, "CANDIDATES", 3)
    singular = []
    for i in range(3):
        singular.append((await inbox.receive(InboundMessage(
            channel=ChannelName.TELEGRAM, external_id=f"s{i}", sender=f"6{i}", sender_name="Cliente",
            text=f"la garantía {i}", new_case=True))).case_number)
    plural = await inbox.receive(InboundMessage(channel=ChannelName.TELEGRAM, external_id="p", sender="50",
                                                sender_name="Cliente", text="dos garantías vencidas"))
    async with db.engine.connect() as conn:
        exact = await search_module.read_exact_terms(conn, parse_query("garantia vencid"))
    # Each new case's title is its first message.
    assert exact.pairs == {("messages_fts", "garantia"), ("cases_fts", "garantia")}
    assert exact.term("messages_fts", "garantia") == '"garantia"' and exact.term("contacts_fts", "garantia") == '"garantia"*'
    found = await search(service, "garantia")
    # The word as typed: its newest three; the newer plural is another word (as a prefix,
    # it would have taken one of the three places).
    assert sorted(c["number"] for c in found) == sorted(singular)
    assert {m for c in found for m in marked(c["match"])} == {"garantía"}
    # Fewer than the candidates as typed (here none: part of a word): the terms it begins,
    # from the table's vocabulary (folded as the tokenizer folds them).
    assert exact.covers[("messages_fts", "vencid")] == ("vencidas",)
    assert exact.term("messages_fts", "vencid") == '("vencidas")'
    part = await search(service, "vencid")
    assert [c["number"] for c in part] == [plural.case_number] and marked(part[0]["match"]) == ["vencidas"]
    async with db.engine.connect() as conn:
        accented = await search_module.read_exact_terms(conn, parse_query("garantías"))
    assert accented.covers[("messages_fts", "garantías")] == ("garantias",)
    # A prefix that begins more terms than MAX_PREFIX_TERMS stays a prefix term.
    await service.add_note(plural.case_number, "vencido y vencida", agent="ana")
    monkeypatch.setattr(search_module, "MAX_PREFIX_TERMS", 2)
    async with db.engine.connect() as conn:
        many = await search_module.read_exact_terms(conn, parse_query("venc"))
    assert many.term("messages_fts", "venc") == '"venc"*'
    part = await search(service, "venc")
    assert [c["number"] for c in part] == [plural.case_number] and marked(part[0]["match"])
    # Two words in one text, one read as a prefix.
    assert [c["number"] for c in await search(service, "garantias vencid")] == [plural.case_number]


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)  # the plans are PostgreSQL's
async def test_a_walk_stops_at_the_candidates(desk, db, monkeypatch):
    """The walk reads the newest texts only until it holds the candidates, not its whole
    window: at 1,000,000 messages a word in half of them is 2,000 rows read, not 8,000."""
    service, inbox = desk
    monkeypatch.setattr(search_module, "CANDIDATES", 3)
    for i in range(20):
        await inbox.receive(InboundMessage(channel=ChannelName.TELEGRAM, external_id=f"g{i}", sender=f"7{i}",
                                           sender_name="Cliente", text=f"la garantía {i}", new_case=True))
    tables = ("messages", "cases", "contacts", "contact_identities")
    stats = TermStats(rows={t: 1e6 for t in tables}, common={t: {"garantia": 1.0} for t in tables},
                      floor={t: 0.005 for t in tables})
    found = hits(parse_query("garantia"), "postgresql", stats)  # a window of 4 x 3 / 100 % = 12 rows
    async with db.engine.connect() as conn:
        sql = found.element.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True})
        plan = (await conn.exec_driver_sql(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}")).scalar_one()
    walked = []

    def visit(node):
        if node["Node Type"] == "Subquery Scan" and node.get("Alias") == "m":  # the window, as read
            walked.append(node["Actual Rows"])
        for child in node.get("Plans", ()):
            visit(child)
    visit(plan[0]["Plan"])
    assert walked == [3]
