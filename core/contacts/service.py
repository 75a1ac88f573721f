"""Contacts as records: search, read, create, edit, identities, duplicates.

One door for the API, the console and the CLI; every write is one transaction and
goes through ``core.contacts.identities`` for what makes a contact (identities, the
organization by email domain, search terms).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, delete, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from posventa.core.attachments import AttachmentStore
from posventa.core.cases import CaseFilter, CaseService, _text
from posventa.core.contacts import history
from posventa.core.contacts.identities import (
    EMAIL,
    IDENTITY_KINDS,
    PHONE,
    TELEGRAM,
    WEBCHAT,
    create_contact,
    identity_owners,
    reindex,
)
from posventa.core.contacts.merge import merge_contacts
from posventa.core.contacts.privacy import delete_files, erase_contact, export_contact
from posventa.core.contacts.normalize import MAX_TERM, email_address, national_form, phone_number, search_words
from posventa.core.domain import LANGUAGES
from posventa.core.errors import NotFound, ValidationError, explain
from posventa.core.persistence import Database
from posventa.core.persistence.schema import (
    contact_events,
    contact_identities,
    contact_terms,
    contacts,
    organizations,
)
from posventa.core.ports import Clock

MAX_NOTES = 20_000
MAX_ATTRIBUTES = 50
MAX_ATTRIBUTE_KEY = 80
MAX_ATTRIBUTE_VALUE = 1000
MAX_IDENTITIES_ON_CREATE = 20
_PHONE_LIKE = re.compile(r"^\+?[\d\s().\-]{6,}$")
_TELEGRAM_ID = re.compile(r"^-?\d{1,20}$")
#: Shorter search words match whole terms only (a one- or two-letter prefix is a scan).
MIN_PREFIX = 3
#: The end of a prefix range: every term starting with the prefix sorts below it.
_PREFIX_END = "\U0010ffff"
#: A search of several words counts each word's matches up to this many to find the rarest.
PROBE_CAP = 2000
#: A search reads this many times a page's rows (a contact may hold a word more than once).
OVERFETCH = 4
#: An organization's contacts with a name's last word, read to compare whole names.
SAME_NAME_CANDIDATES = 200
#: A common word's page is first looked for among this many newest contacts (by id).
NEWEST_WALK = 5000


def _holds(word: str, contact_id: Any) -> Any:
    """The condition that the contact ``contact_id`` has a term matching ``word``, read on
    that contact's own few terms (the (contact_id, term) index). A scalar subquery, not
    EXISTS: PostgreSQL would turn EXISTS into a semi-join and might read the word's every
    match after all; this runs per candidate."""
    own = contact_terms.alias("own")
    return (select(own.c.contact_id).where(own.c.contact_id == contact_id, _starting_with(word, own)).limit(1)
            .scalar_subquery().is_not(None))


def _probe(word: str) -> Any:
    """How many terms match ``word``, counted up to ``PROBE_CAP`` (a scalar subquery)."""
    return select(func.count()).select_from(
        select(contact_terms.c.contact_id).where(_starting_with(word)).limit(PROBE_CAP).subquery()).scalar_subquery()


def _walked_prefix(word: str) -> Any:
    """``_starting_with`` in a form no index on ``term`` can serve, so that a walk of the
    newest contacts' own terms reads the (contact_id, term) index whatever the plan. As a
    range, PostgreSQL's generic plan (and a custom one that underestimates the prefix,
    "beatriz." at 1 row for 22,000) read the prefix's whole range on the primary key
    instead, and sorted it: the cost the walk is there to avoid."""
    if len(word) < MIN_PREFIX:
        return contact_terms.c.term == word
    return func.substr(contact_terms.c.term, 1, len(word)) == word


def _starting_with(word: str, terms: Any = contact_terms) -> Any:
    """The condition on ``terms`` (contact_terms or an alias) for a term matching ``word``."""
    if len(word) < MIN_PREFIX:
        # "a" or "de" as a prefix is most of the table: such a word must be whole.
        return terms.c.term == word
    return and_(terms.c.term >= word, terms.c.term < word + _PREFIX_END)


def identity_address(kind: Any, address: Any, *, field: str = "address", phone_region: str = "AR") -> tuple[str, str]:
    """An identity as stored, or a 422 naming the field."""
    if kind not in IDENTITY_KINDS:
        raise ValidationError(explain("identity_kind", "kind must be one of: %(kinds)s",
                                      kinds=", ".join(IDENTITY_KINDS)), field="kind")
    if kind == EMAIL:
        return kind, email_address(address, field)
    if kind == PHONE:
        return kind, phone_number(address, field, region=phone_region)
    if isinstance(address, int) and not isinstance(address, bool):
        address = str(address)
    if not isinstance(address, str) or not address.strip():
        raise ValidationError(explain("field_required", "%(field)s is required", field=field), field=field)
    address = address.strip()
    if kind == TELEGRAM and not _TELEGRAM_ID.match(address):
        raise ValidationError(explain("telegram_id_invalid", "%(field)s must be a Telegram user id (digits)",
                                      field=field), field=field)
    if kind == WEBCHAT:
        raise ValidationError(explain("webchat_identity", "web chat visitors are identities of their own chat; "
                                      "link one to this contact by merging its contact"), field="kind")
    return kind, address


def clean_text(value: Any, field: str, *, max_len: int, required: bool = False) -> str | None:
    """The cases' text rule (required, a string, bounded, no NUL), trimmed for a record field."""
    text = _text(value, field, required=required, max_len=max_len)
    return None if text is None else text.strip()


def _language(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if value not in LANGUAGES:
        raise ValidationError(explain("language_choice", "language must be one of: %(languages)s",
                                      languages=", ".join(LANGUAGES)), field="language")
    return value


def _attributes(value: Any) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ValidationError(explain("attributes_not_object", "attributes must be an object of text values"),
                              field="attributes")
    if len(value) > MAX_ATTRIBUTES:
        raise ValidationError(explain("attributes_too_many", "attributes holds at most %(max)s keys",
                                      max=MAX_ATTRIBUTES), field="attributes")
    out: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not key.strip() or len(key) > MAX_ATTRIBUTE_KEY or "\x00" in key:
            raise ValidationError(explain("attribute_name", "attribute names are 1-%(max)s characters",
                                          max=MAX_ATTRIBUTE_KEY), field="attributes")
        text = clean_text(item if not isinstance(item, int | float) or isinstance(item, bool) else str(item),
                     f"attributes.{key}", max_len=MAX_ATTRIBUTE_VALUE)
        if text is not None:
            out[key.strip()] = text
    return out or None


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def contact_summary(r: Any) -> dict[str, Any]:
    return {"id": r.id, "name": r.name, "email": r.email, "phone": r.phone, "language": r.language,
            "organization": {"id": r.organization_id, "name": r.organization_name} if r.organization_id else None,
            "created_at": _iso(r.created_at)}


_SUMMARY_COLS = (contacts.c.id, contacts.c.name, contacts.c.email, contacts.c.phone, contacts.c.language,
                 contacts.c.organization_id, contacts.c.created_at, organizations.c.name.label("organization_name"))
_SUMMARY_FROM = contacts.outerjoin(organizations, organizations.c.id == contacts.c.organization_id)


class ContactService:
    def __init__(self, *, db: Database, clock: Clock, cases: CaseService, phone_region: str = "AR",
                 files: AttachmentStore | None = None) -> None:
        #: Where attachments and raw mails live (an erasure deletes them).
        self._files = files
        self._db = db
        self._clock = clock
        self._cases = cases
        self._phone_region = phone_region

    # --- reading -----------------------------------------------------------------------

    async def search(self, query: str | None = None, *, organization_id: int | None = None, limit: int = 50,
                     offset: int = 0) -> list[dict[str, Any]]:
        """Contacts whose name words, addresses or phone start with every word of
        ``query``; newest first. Merged-away and erased contacts are never listed."""
        if query is not None and "\x00" in query:
            raise ValidationError(explain("field_nul", "%(field)s contains a NUL character", field="q"), field="q")
        limit = max(1, min(int(limit), 200))
        offset = max(0, min(int(offset), 100_000))
        alive = and_(contacts.c.merged_into_id.is_(None), contacts.c.erased_at.is_(None))
        words = self._query_words(query or "")
        async with self._db.engine.connect() as conn:
            if words:
                ids = await self._page_ids(conn, words, organization_id=organization_id, limit=limit, offset=offset)
                if not ids:
                    return []
                stmt = (select(*_SUMMARY_COLS).select_from(_SUMMARY_FROM).where(contacts.c.id.in_(ids), alive)
                        .order_by(contacts.c.id.desc()))
            else:
                stmt = select(*_SUMMARY_COLS).select_from(_SUMMARY_FROM).where(alive)
                if organization_id is not None:
                    stmt = stmt.where(contacts.c.organization_id == organization_id)
                stmt = stmt.order_by(contacts.c.id.desc()).limit(limit).offset(offset)
            return [contact_summary(r) for r in await conn.execute(stmt)]

    async def _page_ids(self, conn: AsyncConnection, words: list[str], *, organization_id: int | None, limit: int,
                        offset: int) -> list[int]:
        """The ids of a page of the contacts whose terms start with every word, newest first.

        The search reads the matches of one word, the rarest: with several words, each
        one's matches are first counted up to ``PROBE_CAP``, and the rarest word's matches
        are each checked for the other words on that contact's own few terms (the
        (contact_id, term) index). Intersecting every word's matches instead read all ~55,000
        "ana…" terms to keep the ~40 that also start "garomi…" (86 ms of PostgreSQL CPU
        at 1,000,000 contacts); only when every word is that common are they intersected.

        The matches are then ordered newest first and cut to the page without a DISTINCT
        over all of them (a temporary B-tree of ~35,000 ids on SQLite, 20 ms): a contact
        holds a word at most a few times (a name "Ana" and an address "ana.…@"), so the
        first ``OVERFETCH`` times the page's rows hold it, and only when they do not is
        the DISTINCT run. On PostgreSQL the matches are computed first (MATERIALIZED): a
        prepared statement's generic plan, which cannot see the prefixes, would otherwise
        walk every contact backwards looking for them. A single common word walks back
        only the newest ``NEWEST_WALK`` contacts, before reading its matches that way."""
        driver, others = words[0], words[1:]
        all_common = False
        wanted = offset + limit
        if others or organization_id is not None:
            # Each word's matches counted up to PROBE_CAP and, with an organization, its
            # contacts too: the search starts from the smallest of them.
            probes = [_probe(w) for w in words]
            if organization_id is not None:
                probes.append(select(func.count()).select_from(
                    select(contacts.c.id).where(contacts.c.organization_id == organization_id).limit(PROBE_CAP)
                    .subquery()).scalar_subquery())
            counts = (await conn.execute(select(*probes))).one()
            ranked = sorted(range(len(words)), key=lambda i: (counts[i], -len(words[i])))
            driver, others = words[ranked[0]], [words[i] for i in ranked[1:]]
            all_common = counts[ranked[0]] >= PROBE_CAP
            if organization_id is not None and counts[-1] < counts[ranked[0]]:
                # An organization smaller than the rarest word's matches (111 contacts
                # against the ~30,000 terms a common 4-letter prefix starts): its contacts,
                # newest first, each checked for every word on its own terms. Joining the
                # prefix's matches to the organization hashed all of them (20-26 ms wall
                # at 1,000,000 contacts on PostgreSQL).
                page = (select(contacts.c.id).where(contacts.c.organization_id == organization_id,
                                                    *[_holds(word, contacts.c.id) for word in words])
                        .order_by(contacts.c.id.desc()).limit(wanted))
                return [r[0] for r in await conn.execute(page)][offset:wanted]
        else:
            # One word, common (as many matches as PROBE_CAP): its newest holders are most
            # likely among the newest contacts, whose own terms are read backwards and
            # stop at the page. Reading all of a first name's ~55,000 terms ("valentin":
            # the name and the addresses starting with it) to sort 50 of them out was
            # the slowest search (p95 18-21 ms on PostgreSQL at 1,000,000 contacts).
            # The walk is bounded to NEWEST_WALK contacts: a prefix only old contacts
            # hold (an imported range of phone numbers) would otherwise walk the whole
            # table (200 ms, when PostgreSQL's planner chose that walk by itself).
            count, newest = (await conn.execute(select(
                _probe(driver), select(func.max(contact_terms.c.contact_id)).scalar_subquery()))).one()
            if count >= PROBE_CAP and newest is not None:
                walk = (select(contact_terms.c.contact_id)
                        .where(contact_terms.c.contact_id > newest - NEWEST_WALK, _walked_prefix(driver))
                        .order_by(contact_terms.c.contact_id.desc()).limit(OVERFETCH * wanted))
                ids = list(dict.fromkeys(r[0] for r in await conn.execute(walk)))
                if len(ids) >= wanted:
                    return ids[offset:wanted]
        if all_common:
            hits: Any = select(contact_terms.c.contact_id).where(_starting_with(driver))
            for word in others:
                hits = hits.intersect(select(contact_terms.c.contact_id).where(_starting_with(word)))
        else:
            hits = select(contact_terms.c.contact_id).where(_starting_with(driver))
            for word in others:
                hits = hits.where(_holds(word, contact_terms.c.contact_id))
        matched = hits.cte("matched").prefix_with("MATERIALIZED", dialect="postgresql")
        page = select(matched.c.contact_id)
        if organization_id is not None:
            page = page.join(contacts, contacts.c.id == matched.c.contact_id).where(
                contacts.c.organization_id == organization_id)
        page = page.order_by(matched.c.contact_id.desc())
        rows = [r[0] for r in await conn.execute(page.limit(OVERFETCH * wanted))]
        ids = list(dict.fromkeys(rows))
        if len(ids) < wanted and len(rows) == OVERFETCH * wanted:
            ids = [r[0] for r in await conn.execute(page.distinct().limit(wanted))]
        return ids[offset:wanted]

    def _query_words(self, query: str) -> list[str]:
        query = query.strip()[:200]
        if _PHONE_LIKE.match(query) and sum(c.isdigit() for c in query) >= 6:
            # "+54 9 11 5555-1234" or "11 5555 1234": one number, not five words.
            digits = "".join(c for c in query if c.isdigit())
            if query.startswith("+"):
                return ["+" + digits]
            # A number as dialled at home ("011 4567-8901", the trunk 0 first) is stored
            # under its national digits (1145678901): the region's rules drop the prefix.
            return [national_form(query, self._phone_region) or digits]
        return [w[:MAX_TERM] for w in search_words(query)][:5]

    async def get(self, contact_id: int) -> dict[str, Any]:
        async with self._db.engine.connect() as conn:
            row = (await conn.execute(select(*_SUMMARY_COLS, contacts.c.notes, contacts.c.attributes,
                                             contacts.c.merged_into_id, contacts.c.erased_at)
                                      .select_from(_SUMMARY_FROM).where(contacts.c.id == contact_id))).first()
            if row is None:
                raise NotFound(explain("contact_not_found", "contact %(id)s not found", id=contact_id))
            contact = contact_summary(row)
            contact.update({
                "notes": row.notes, "attributes": row.attributes or {},
                "merged_into_id": row.merged_into_id, "erased_at": _iso(row.erased_at),
                "identities": await self._identities(conn, contact_id),
                "history": [history.read(e) for e in await conn.execute(select(contact_events).where(
                    contact_events.c.contact_id == contact_id).order_by(contact_events.c.id))],
            })
        return contact

    async def _identities(self, conn: AsyncConnection, contact_id: int) -> list[dict[str, Any]]:
        rows = await conn.execute(select(contact_identities).where(contact_identities.c.contact_id == contact_id)
                                  .order_by(contact_identities.c.id))
        return [{"id": r.id, "kind": r.channel, "address": r.address, "verified": bool(r.verified),
                 "unreachable": bool(r.unreachable), "created_at": _iso(r.created_at)} for r in rows]

    async def cases(self, contact_id: int, *, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
        """The contact's cases on every channel, newest activity first."""
        await self._exists(contact_id)
        return await self._cases.list_cases(CaseFilter(contact_id=contact_id, limit=limit, offset=offset))

    async def duplicates(self, contact_id: int, *, limit: int = 10) -> list[dict[str, Any]]:
        """Other contacts that may be the same person: a shared email address (an
        identity or the address typed in a web chat), a shared phone, or the same
        name in the same organization."""
        async with self._db.engine.connect() as conn:
            me = (await conn.execute(select(contacts).where(contacts.c.id == contact_id))).first()
            if me is None:
                raise NotFound(explain("contact_not_found", "contact %(id)s not found", id=contact_id))
            if me.merged_into_id is not None or me.erased_at is not None:
                return []
            mine = (await conn.execute(select(contact_identities.c.channel, contact_identities.c.address)
                                       .where(contact_identities.c.contact_id == contact_id))).all()
            emails = {a for ch, a in mine if ch == EMAIL} | ({me.email.lower()} if me.email else set())
            phones = {a for ch, a in mine if ch == PHONE} | ({me.phone} if me.phone else set())
            reasons: dict[int, str] = {}
            alive = and_(contacts.c.id != contact_id, contacts.c.merged_into_id.is_(None),
                         contacts.c.erased_at.is_(None))
            for kind, values in ((EMAIL, emails), (PHONE, phones)):
                if not values:
                    continue
                column = contacts.c.email if kind == EMAIL else contacts.c.phone
                ids = select(contact_identities.c.contact_id).where(
                    contact_identities.c.channel == kind, contact_identities.c.address.in_(sorted(values)))
                for r in await conn.execute(select(contacts.c.id).where(
                        alive, or_(column.in_(sorted(values)), contacts.c.id.in_(ids))).limit(limit)):
                    reasons.setdefault(r.id, kind)
            name_words = search_words(me.name or "")
            if name_words and me.organization_id is not None:
                # The same name as a search folds it ("Pedro Gómez" is "pedro gomez"): the
                # organization's contacts holding the name's last word as a term, compared
                # whole in Python (a name's terms are its folded words).
                holders = select(contact_terms.c.contact_id).where(contact_terms.c.term == name_words[-1])
                for r in await conn.execute(select(contacts.c.id, contacts.c.name).where(
                        alive, contacts.c.organization_id == me.organization_id, contacts.c.id.in_(holders))
                        .order_by(contacts.c.id).limit(SAME_NAME_CANDIDATES)):
                    if search_words(r.name or "") == name_words:
                        reasons.setdefault(r.id, "name_and_organization")
            if not reasons:
                return []
            rows = {r.id: r for r in await conn.execute(select(*_SUMMARY_COLS).select_from(_SUMMARY_FROM)
                                                        .where(contacts.c.id.in_(sorted(reasons))))}
        return [{"contact": contact_summary(rows[cid]), "reason": reason}
                for cid, reason in sorted(reasons.items())[:limit] if cid in rows]

    # --- writing -----------------------------------------------------------------------

    async def create(self, body: Mapping[str, Any], *, actor: str) -> dict[str, Any]:
        name = clean_text(body.get("name"), "name", max_len=200)
        language = _language(body.get("language"))
        notes = clean_text(body.get("notes"), "notes", max_len=MAX_NOTES)
        attributes = _attributes(body.get("attributes"))
        organization_id = body.get("organization_id")
        raw = body.get("identities") or []
        if not isinstance(raw, list) or len(raw) > MAX_IDENTITIES_ON_CREATE:
            raise ValidationError(explain("identities_too_many", "identities must be a list of at most %(max)s",
                                          max=MAX_IDENTITIES_ON_CREATE), field="identities")
        keys: list[tuple[str, str]] = []
        for i, item in enumerate(raw):
            if not isinstance(item, Mapping):
                raise ValidationError(explain("identity_shape", "each identity is an object with kind and address"),
                                      field=f"identities[{i}]")
            key = identity_address(item.get("kind"), item.get("address"), field=f"identities[{i}].address",
                                   phone_region=self._phone_region)
            if key not in keys:
                keys.append(key)
        if not (name or keys):
            raise ValidationError(explain("contact_empty", "a contact needs a name or an identity"), field="name")
        now = self._clock.now()
        async with self._db.transaction() as conn:
            if organization_id is not None:
                await self._organization_exists(conn, organization_id)
            await self._refuse_taken(conn, keys, None)
            phone = next((a for k, a in keys if k == PHONE), None)
            contact_id = await create_contact(conn, now=now, name=name, language=language, phone=phone,
                                              organization_id=organization_id, notes=notes, attributes=attributes,
                                              identities=[(k, False) for k in keys])
            await self._event(conn, contact_id, actor, now, history.entry("created"))
        return await self.get(contact_id)

    async def update(self, contact_id: int, body: Mapping[str, Any], *, actor: str) -> dict[str, Any]:
        values: dict[str, Any] = {}
        if "name" in body:
            values["name"] = clean_text(body["name"], "name", max_len=200)
        if "language" in body:
            values["language"] = _language(body["language"])
        if "notes" in body:
            values["notes"] = clean_text(body["notes"], "notes", max_len=MAX_NOTES)
        if "attributes" in body:
            values["attributes"] = _attributes(body["attributes"])
        async with self._db.transaction() as conn:
            await self._live(conn, contact_id)
            if "organization_id" in body:
                if body["organization_id"] is not None:
                    await self._organization_exists(conn, body["organization_id"])
                values["organization_id"] = body["organization_id"]
            if values:
                await conn.execute(update(contacts).where(contacts.c.id == contact_id).values(**values))
                await self._event(conn, contact_id, actor, self._clock.now(),
                                  history.entry("updated", fields=sorted(values)))
                if "name" in values:
                    await reindex(conn, [contact_id])
        return await self.get(contact_id)

    async def add_identity(self, contact_id: int, kind: Any, address: Any, *, actor: str) -> dict[str, Any]:
        """An identity an agent knows about (an address the customer gave by phone). It
        is not verified until its channel proves it; one another contact holds is refused
        (merge the two contacts instead)."""
        key = identity_address(kind, address, phone_region=self._phone_region)
        now = self._clock.now()
        async with self._db.transaction() as conn:
            await self._live(conn, contact_id)
            owner = (await identity_owners(conn, [key])).get(key)
            if owner == contact_id:
                return await self._identity_row(conn, contact_id, key)
            await self._refuse_taken(conn, [key], contact_id)
            await conn.execute(insert(contact_identities).values(
                contact_id=contact_id, channel=key[0], address=key[1], unreachable=False, verified=False,
                created_at=now))
            # The contact's display address and phone: the first one known.
            column = {EMAIL: "email", PHONE: "phone"}.get(key[0])
            if column:
                await conn.execute(update(contacts).where(contacts.c.id == contact_id,
                                                          getattr(contacts.c, column).is_(None))
                                   .values({column: key[1]}))
            await self._event(conn, contact_id, actor, now,
                              history.entry("identity_added", channel=key[0], address=key[1]))
            await reindex(conn, [contact_id])
            return await self._identity_row(conn, contact_id, key)

    async def remove_identity(self, contact_id: int, identity_id: int, *, actor: str) -> None:
        now = self._clock.now()
        async with self._db.transaction() as conn:
            await self._live(conn, contact_id)
            row = (await conn.execute(select(contact_identities).where(
                contact_identities.c.id == identity_id, contact_identities.c.contact_id == contact_id))).first()
            if row is None:
                raise NotFound(explain("identity_not_found", "contact %(id)s has no identity %(identity)s", id=contact_id,
                                       identity=identity_id))
            await conn.execute(delete(contact_identities).where(contact_identities.c.id == identity_id))
            await self._event(conn, contact_id, actor, now,
                              history.entry("identity_removed", channel=row.channel, address=row.address))
            await reindex(conn, [contact_id])

    async def merge(self, target_id: int, source_id: Any, *, actor: str, dry_run: bool = False) -> dict[str, Any]:
        """Absorb contact ``source_id`` into ``target_id`` (core.contacts.merge); with
        ``dry_run``, only say what would move."""
        if isinstance(source_id, bool) or not isinstance(source_id, int) or not 0 < source_id < 2**63:
            raise ValidationError(explain("merge_source_missing", "contact_id must be the id of the contact to absorb"),
                                  field="contact_id")
        async with self._db.transaction() as conn:
            moves = await merge_contacts(conn, target_id=target_id, source_id=source_id, actor=actor,
                                         now=self._clock.now(), dry_run=dry_run)
        return {"target_id": target_id, "source_id": source_id, "dry_run": dry_run, "moves": asdict(moves)}

    # --- privacy requests ----------------------------------------------------------------

    async def export(self, contact_id: int) -> dict[str, Any]:
        """Everything held about the contact, as one JSON-ready document."""
        async with self._db.engine.connect() as conn:
            return await export_contact(conn, contact_id)

    async def erase(self, contact_id: int, *, actor: str) -> dict[str, Any]:
        """Erase the contact (core.contacts.privacy); files go once the erasure committed."""
        async with self._db.transaction() as conn:
            hashes, raw_refs = await erase_contact(conn, contact_id, actor=actor, now=self._clock.now())
        removed = delete_files(self._files, hashes, raw_refs) if self._files is not None else 0
        return {"id": contact_id, "erased": True, "files_deleted": removed}

    # --- helpers -----------------------------------------------------------------------

    async def _identity_row(self, conn: AsyncConnection, contact_id: int, key: tuple[str, str]) -> dict[str, Any]:
        return next(i for i in await self._identities(conn, contact_id) if (i["kind"], i["address"]) == key)

    async def _refuse_taken(self, conn: AsyncConnection, keys: list[tuple[str, str]], contact_id: int | None) -> None:
        owners = await identity_owners(conn, keys)
        for i, key in enumerate(keys):
            owner = owners.get(key)
            if owner is not None and owner != contact_id:
                field = "address" if contact_id is not None else f"identities[{i}].address"
                raise ValidationError(explain("identity_taken", "%(kind)s %(address)s already belongs to contact "
                                              "#%(owner)s; merge the two contacts instead", kind=key[0],
                                              address=key[1], owner=owner), field=field)

    async def _exists(self, contact_id: int) -> None:
        async with self._db.engine.connect() as conn:
            if (await conn.execute(select(contacts.c.id).where(contacts.c.id == contact_id))).first() is None:
                raise NotFound(explain("contact_not_found", "contact %(id)s not found", id=contact_id))

    async def _live(self, conn: AsyncConnection, contact_id: int) -> Any:
        """The contact, which must exist, not be merged away and not be erased."""
        row = (await conn.execute(select(contacts).where(contacts.c.id == contact_id))).first()
        if row is None:
            raise NotFound(explain("contact_not_found", "contact %(id)s not found", id=contact_id))
        if row.merged_into_id is not None:
            raise ValidationError(explain("contact_merged", "contact %(id)s was merged into contact #%(into)s",
                                          id=contact_id, into=row.merged_into_id), field="contact_id")
        if row.erased_at is not None:
            raise ValidationError(explain("contact_erased", "contact %(id)s was erased", id=contact_id),
                                  field="contact_id")
        return row

    async def _organization_exists(self, conn: AsyncConnection, organization_id: Any) -> None:
        if isinstance(organization_id, bool) or not isinstance(organization_id, int) or not (
                0 < organization_id < 2**63):
            raise ValidationError(explain("organization_id_invalid", "organization_id must be an organization's id"),
                                  field="organization_id")
        row = (await conn.execute(select(organizations.c.merged_into_id).where(
            organizations.c.id == organization_id))).first()
        if row is None:
            raise ValidationError(explain("organization_missing", "organization %(id)s does not exist",
                                          id=organization_id), field="organization_id")
        if row.merged_into_id is not None:
            raise ValidationError(explain("organization_merged", "organization %(id)s was merged into #%(into)s",
                                          id=organization_id, into=row.merged_into_id), field="organization_id")

    async def _event(self, conn: AsyncConnection, contact_id: int, actor: str, now: datetime,
                     entry: Mapping[str, Any]) -> None:
        """A history entry (``history.entry``)."""
        await conn.execute(insert(contact_events).values(contact_id=contact_id, at=now, actor=actor[:160], **entry))
