"""Organizations: the companies customers write for, with the email domains that say
a new contact belongs to one (``core.contacts.identities`` applies them)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from posventa.core.cases import CaseFilter, CaseService
from posventa.core.contacts.merge import merge_organizations
from posventa.core.contacts.normalize import organization_domain
from posventa.core.contacts.service import ContactService, clean_text
from posventa.core.domain import Activity
from posventa.core.errors import NotFound, ValidationError, explain
from posventa.core.persistence import Database
from posventa.core.persistence.schema import cases, organization_domains, organizations
from posventa.core.ports import Clock

MAX_DOMAINS = 50


def _domains(value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > MAX_DOMAINS:
        raise ValidationError(explain("domains_too_many", "domains must be a list of at most %(max)s domains",
                                      max=MAX_DOMAINS), field="domains")
    out: list[str] = []
    for item in value:
        domain = organization_domain(item)
        if domain not in out:
            out.append(domain)
    return out


class OrganizationService:
    def __init__(self, *, db: Database, clock: Clock, cases: CaseService, contacts: ContactService) -> None:
        self._db = db
        self._clock = clock
        self._cases = cases
        self._contacts = contacts

    async def search(self, query: str | None = None, *, limit: int = 50, offset: int = 0) -> list[dict[str, Any]]:
        stmt = select(organizations).where(organizations.c.merged_into_id.is_(None))
        if query:
            if "\x00" in query:
                raise ValidationError(explain("field_nul", "%(field)s contains a NUL character", field="q"), field="q")
            needle = query.strip()[:200].replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            stmt = stmt.where(organizations.c.name.ilike(f"%{needle}%", escape="\\"))
        stmt = stmt.order_by(organizations.c.name, organizations.c.id).limit(max(1, min(int(limit), 200))).offset(
            max(0, min(int(offset), 100_000)))
        async with self._db.engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
            domains = await self._domains_of(conn, [r.id for r in rows])
            open_counts = await self._open_counts(conn, [r.id for r in rows])
        return [self._summary(r, domains.get(r.id, []), open_counts.get(r.id, 0)) for r in rows]

    async def get(self, organization_id: int) -> dict[str, Any]:
        async with self._db.engine.connect() as conn:
            row = (await conn.execute(select(organizations).where(organizations.c.id == organization_id))).first()
            if row is None:
                raise NotFound(explain("organization_not_found", "organization %(id)s not found", id=organization_id))
            domains = await self._domains_of(conn, [row.id])
            open_counts = await self._open_counts(conn, [row.id])
        org = self._summary(row, domains.get(row.id, []), open_counts.get(row.id, 0))
        org["contacts"] = await self._contacts.search(organization_id=organization_id, limit=200)
        org["open_cases"] = await self._cases.list_cases(CaseFilter(organization_id=organization_id, open_only=True,
                                                                    limit=100))
        org["cases"] = await self._cases.list_cases(CaseFilter(organization_id=organization_id, limit=100))
        return org

    async def create(self, body: Mapping[str, Any], *, actor: str) -> dict[str, Any]:
        name = clean_text(body.get("name"), "name", max_len=200, required=True)
        tax_id = clean_text(body.get("tax_id"), "tax_id", max_len=50)
        notes = clean_text(body.get("notes"), "notes", max_len=20_000)
        domains = _domains(body.get("domains"))
        async with self._db.transaction() as conn:
            await self._refuse_taken_domains(conn, domains, None)
            org_id = (await conn.execute(insert(organizations).values(
                name=name, tax_id=tax_id, notes=notes, created_at=self._clock.now()).returning(organizations.c.id))
            ).scalar_one()
            if domains:
                await conn.execute(insert(organization_domains),
                                   [{"domain": d, "organization_id": org_id} for d in domains])
        return await self.get(org_id)

    async def update(self, organization_id: int, body: Mapping[str, Any], *, actor: str) -> dict[str, Any]:
        values: dict[str, Any] = {}
        if "name" in body:
            values["name"] = clean_text(body["name"], "name", max_len=200, required=True)
        if "tax_id" in body:
            values["tax_id"] = clean_text(body["tax_id"], "tax_id", max_len=50)
        if "notes" in body:
            values["notes"] = clean_text(body["notes"], "notes", max_len=20_000)
        domains = _domains(body["domains"]) if "domains" in body else None
        async with self._db.transaction() as conn:
            row = (await conn.execute(select(organizations).where(organizations.c.id == organization_id))).first()
            if row is None:
                raise NotFound(explain("organization_not_found", "organization %(id)s not found", id=organization_id))
            if row.merged_into_id is not None:
                raise ValidationError(explain("organization_merged", "organization %(id)s was merged into #%(into)s",
                                              id=organization_id, into=row.merged_into_id), field="organization_id")
            if values:
                await conn.execute(update(organizations).where(organizations.c.id == organization_id).values(**values))
            if domains is not None:
                await self._refuse_taken_domains(conn, domains, organization_id)
                await conn.execute(delete(organization_domains).where(
                    organization_domains.c.organization_id == organization_id))
                if domains:
                    await conn.execute(insert(organization_domains),
                                       [{"domain": d, "organization_id": organization_id} for d in domains])
        return await self.get(organization_id)

    async def merge(self, target_id: int, source_id: Any, *, actor: str, dry_run: bool = False) -> dict[str, Any]:
        """Absorb organization ``source_id`` into ``target_id``: contacts, cases, domains."""
        if isinstance(source_id, bool) or not isinstance(source_id, int) or not 0 < source_id < 2**63:
            raise ValidationError(explain("merge_organization_missing",
                                          "organization_id must be the id of the organization to absorb"),
                                  field="organization_id")
        async with self._db.transaction() as conn:
            moves = await merge_organizations(conn, target_id=target_id, source_id=source_id, actor=actor,
                                              now=self._clock.now(), dry_run=dry_run)
        return {"target_id": target_id, "source_id": source_id, "dry_run": dry_run, "moves": asdict(moves)}

    # --- helpers -----------------------------------------------------------------------

    @staticmethod
    def _summary(r: Any, domains: list[str], open_cases: int) -> dict[str, Any]:
        return {"id": r.id, "name": r.name, "tax_id": r.tax_id, "notes": r.notes, "domains": domains,
                "open_case_count": open_cases, "merged_into_id": r.merged_into_id,
                "created_at": r.created_at.isoformat()}

    async def _domains_of(self, conn: AsyncConnection, ids: list[int]) -> dict[int, list[str]]:
        out: dict[int, list[str]] = {}
        if ids:
            for r in await conn.execute(select(organization_domains).where(
                    organization_domains.c.organization_id.in_(ids)).order_by(organization_domains.c.domain)):
                out.setdefault(r.organization_id, []).append(r.domain)
        return out

    async def _open_counts(self, conn: AsyncConnection, ids: list[int]) -> dict[int, int]:
        if not ids:
            return {}
        rows = await conn.execute(select(cases.c.organization_id, func.count()).where(
            cases.c.organization_id.in_(ids), cases.c.activity != Activity.CLOSED.value)
            .group_by(cases.c.organization_id))
        return {r[0]: r[1] for r in rows}

    async def _refuse_taken_domains(self, conn: AsyncConnection, domains: list[str], org_id: int | None) -> None:
        if not domains:
            return
        for r in await conn.execute(select(organization_domains).where(organization_domains.c.domain.in_(domains))):
            if r.organization_id != org_id:
                raise ValidationError(explain("domain_taken", "domains: %(domain)s already belongs to organization "
                                              "#%(owner)s", domain=r.domain, owner=r.organization_id),
                                      field="domains")



