"""Who wrote: finding a contact by a channel identity, and creating contacts.

The one place contacts come into being, whichever door the customer used: the inbox
(email, Telegram, web chat messages), the web chat's new sessions (``core.chat_sessions``,
the web chat's port), manual cases, the contacts API and sales imports all go through
``identify`` / ``create_contact``. So
the rules live here once:

- an identity (channel + address) belongs to one contact (a unique key);
- an identity proved by its channel (mail came from it, a Telegram user wrote) is
  ``verified`` and only a merge ever moves it;
- an address nobody proved (typed into the web chat form) is never made an identity:
  it stays on the contact as ``email`` and shows up as a duplicate suggestion;
- a new contact with an email address from a domain an organization lists joins it;
- every contact's search terms are written with it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, bindparam, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from posventa.core.contacts.normalize import email_domain, terms_for
from posventa.core.persistence.bulk import insert_ids
from posventa.core.persistence.lookup import Match, by_unique_key
from posventa.core.persistence.schema import contact_identities, contact_terms, contacts, organization_domains

EMAIL = "email"
PHONE = "phone"
TELEGRAM = "telegram"
WEBCHAT = "webchat"
#: The identity kinds a contact can have (``contact_identities.channel``).
IDENTITY_KINDS = (EMAIL, PHONE, TELEGRAM, WEBCHAT)

IdentityKey = tuple[str, str]


@dataclass(frozen=True, slots=True)
class KnownIdentity:
    id: int
    contact_id: int
    #: The contact's language and organization, read with the identity.
    language: str | None
    organization_id: int | None


@dataclass(frozen=True, slots=True)
class Newcomer:
    """What a first message says about a sender we do not know yet."""

    name: str | None = None
    language: str | None = None


async def identify(conn: AsyncConnection, wanted: Mapping[IdentityKey, Newcomer], *, now: datetime,
                   verified: bool = True) -> dict[IdentityKey, KnownIdentity]:
    """The contact behind each identity, creating a contact (and the identity) for each
    one nobody has yet. Bulk: a handful of statements whatever the number of keys."""
    found: dict[IdentityKey, KnownIdentity] = {}
    by_channel: dict[str, list[str]] = {}
    for channel, address in wanted:
        by_channel.setdefault(channel, []).append(address)
    proved: list[int] = []
    for channel, addresses in by_channel.items():
        for identity_id, contact_id, address, language, organization_id, was_verified in await by_unique_key(
                conn, addresses, _identities_query, channel=channel):
            found[(channel, address)] = KnownIdentity(identity_id, contact_id, language, organization_id)
            if verified and not was_verified:
                proved.append(identity_id)
    if proved:
        # An address an agent typed, now proved by a message from it.
        await conn.execute(update(contact_identities).where(contact_identities.c.id.in_(proved)).values(verified=True))
    missing = [k for k in wanted if k not in found]
    if not missing:
        return found
    org_of_domain = await organizations_for_domains(
        conn, {email_domain(address) for channel, address in missing if channel == EMAIL and "@" in address})
    contact_rows = []
    for channel, address in missing:
        newcomer = wanted[(channel, address)]
        is_email = channel == EMAIL
        contact_rows.append({
            "name": (newcomer.name or "")[:200] or None,
            "email": address if is_email else None,
            "phone": address if channel == PHONE else None,
            "language": newcomer.language,
            "organization_id": org_of_domain.get(email_domain(address)) if is_email else None,
            "created_at": now,
        })
    contact_ids = await insert_ids(conn, contacts, contact_rows)
    identity_ids = await insert_ids(
        conn, contact_identities,
        [{"contact_id": cid, "channel": ch, "address": addr, "unreachable": False, "created_at": now,
          "verified": verified} for cid, (ch, addr) in zip(contact_ids, missing, strict=True)])
    await _insert_terms(conn, [(cid, row["name"], [key]) for cid, row, key in
                               zip(contact_ids, contact_rows, missing, strict=True)])
    for iid, cid, key, row in zip(identity_ids, contact_ids, missing, contact_rows, strict=True):
        found[key] = KnownIdentity(iid, cid, row["language"], row["organization_id"])
    return found


async def create_contact(conn: AsyncConnection, *, now: datetime, name: str | None = None,
                         language: str | None = None, typed_email: str | None = None, phone: str | None = None,
                         organization_id: int | None = None, notes: str | None = None,
                         attributes: Mapping[str, str] | None = None,
                         identities: Sequence[tuple[IdentityKey, bool]] = ()) -> int:
    """One new contact with ``identities`` ((kind, address), verified); the caller has
    checked that nobody holds them. ``typed_email`` is an address nobody proved: kept
    on the contact, never made an identity. Without an organization, an email identity
    from a listed domain decides it."""
    if organization_id is None:
        domains = {email_domain(address) for (kind, address), _ in identities if kind == EMAIL}
        if domains:
            orgs = await organizations_for_domains(conn, domains)
            organization_id = next((orgs[d] for d in sorted(domains) if d in orgs), None)
    email = next((address for (kind, address), _ in identities if kind == EMAIL), typed_email)
    contact_id = (await conn.execute(insert(contacts).values(
        name=name, email=email, phone=phone, language=language, organization_id=organization_id, notes=notes,
        attributes=dict(attributes) if attributes else None, created_at=now,
    ).returning(contacts.c.id))).scalar_one()
    if identities:
        await conn.execute(insert(contact_identities), [
            {"contact_id": contact_id, "channel": kind, "address": address, "unreachable": False,
             "verified": verified, "created_at": now} for (kind, address), verified in identities])
    await _insert_terms(conn, [(contact_id, name, [key for key, _ in identities])])
    return contact_id


async def identity_owners(conn: AsyncConnection, keys: Iterable[IdentityKey]) -> dict[IdentityKey, int]:
    """The contact holding each identity that someone holds."""
    by_channel: dict[str, set[str]] = {}
    for channel, address in keys:
        by_channel.setdefault(channel, set()).add(address)
    found: dict[IdentityKey, int] = {}
    for channel, addresses in by_channel.items():
        for _, contact_id, address, _, _, _ in await by_unique_key(conn, addresses, _identities_query,
                                                                 channel=channel):
            found[(channel, address)] = contact_id
    return found


async def organizations_for_domains(conn: AsyncConnection, domains: Collection[str]) -> dict[str, int]:
    if not domains:
        return {}
    rows = await conn.execute(select(organization_domains.c.domain, organization_domains.c.organization_id)
                              .where(organization_domains.c.domain.in_(sorted(domains))))
    return {r.domain: r.organization_id for r in rows}


async def reindex(conn: AsyncConnection, contact_ids: Collection[int]) -> None:
    """Rewrite the search terms of ``contact_ids`` from what is stored now (after an
    edit, a merge, an erasure). A contact merged away or erased has none."""
    ids = sorted(set(contact_ids))
    if not ids:
        return
    await conn.execute(delete(contact_terms).where(contact_terms.c.contact_id.in_(ids)))
    rows = (await conn.execute(select(contacts.c.id, contacts.c.name).where(
        contacts.c.id.in_(ids), contacts.c.merged_into_id.is_(None), contacts.c.erased_at.is_(None)))).all()
    identities: dict[int, list[IdentityKey]] = {}
    for r in await conn.execute(select(contact_identities.c.contact_id, contact_identities.c.channel,
                                       contact_identities.c.address)
                                .where(contact_identities.c.contact_id.in_(ids))):
        identities.setdefault(r.contact_id, []).append((r.channel, r.address))
    await _insert_terms(conn, [(r.id, r.name, identities.get(r.id, [])) for r in rows])


async def _insert_terms(conn: AsyncConnection, items: Iterable[tuple[int, str | None, Iterable[IdentityKey]]]) -> None:
    rows = [{"term": term, "contact_id": cid} for cid, name, keys in items for term in sorted(terms_for(name, keys))]
    if rows:
        await conn.execute(insert(contact_terms), rows)


def _identities_query(match: Match) -> Select[Any]:
    """Built once per database (see ``lookup.by_unique_key``)."""
    return (select(contact_identities.c.id, contact_identities.c.contact_id, contact_identities.c.address,
                   contacts.c.language, contacts.c.organization_id, contact_identities.c.verified)
            .join(contacts, contacts.c.id == contact_identities.c.contact_id)
            .where(contact_identities.c.channel == bindparam("channel"), match(contact_identities.c.address)))
