"""Sales from the ERP: one by one (API), in bulk (API) or from a CSV file.

A sale is idempotent by its external id: sending it again changes nothing and answers
"duplicate". Its customer is found by any contact channel it gives (Telegram id, web
chat session, email) or created with those identities, and every rule of the product's
profile gets a survey window (a rule instance).

Each sale is written whole or not at all: a bad row is reported with its reason (and
its CSV line) and the good ones are stored. A CSV is committed in chunks; a crash in
the middle leaves whole sales only, and running the same file again completes it.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import io
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from posventa.core.contacts.identities import (
    EMAIL,
    PHONE,
    TELEGRAM,
    WEBCHAT,
    identity_owners,
    organizations_for_domains,
    reindex,
)
from posventa.core.contacts.normalize import email_domain, phone_number
from posventa.core.domain import LANGUAGES, ChannelName
from posventa.core.errors import ValidationError
from posventa.core.persistence import Database
from posventa.core.persistence.schema import (
    contact_identities,
    contacts,
    products,
    rule_instances,
    sales,
    survey_profile_rules,
    survey_rules,
)
from posventa.core.ports import Clock
from posventa.core.surveys.windows import Window, local_date, parse_instant, window_for

MAX_EXTERNAL_ID = 120
MAX_SELLER = 120
MAX_BULK = 10_000
#: Errors kept in a report; the rest are only counted (a 1M-row file of garbage must
#: not build a 1M-entry report).
MAX_REPORTED_ERRORS = 1000
_EMAIL = re.compile(r"^[^@\s<>\"',;]+@[^@\s<>\"',;]+\.[^@\s<>\"',;]+$")
_SESSION = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
#: A deal closed "tomorrow" is an ERP clock or time-zone mistake, not a sale.
FUTURE_TOLERANCE = timedelta(days=1)

CSV_COLUMNS = ("external_id", "closed_at", "product", "seller", "customer_name", "email", "telegram_id",
               "webchat_session", "phone", "language")
CSV_REQUIRED = ("external_id", "closed_at", "product", "seller")


@dataclass(frozen=True, slots=True)
class Customer:
    name: str | None = None
    email: str | None = None
    telegram_id: str | None = None
    webchat_session: str | None = None
    phone: str | None = None
    language: str | None = None
    #: The phone in E.164 when it is a valid number: only then does it find a contact.
    phone_e164: str | None = None

    def keys(self) -> list[tuple[str, str]]:
        """Identity keys in the order a sale finds its customer (the first one somebody
        holds decides the contact): email, phone, Telegram id, then a web chat session."""
        out = []
        if self.email:
            out.append((EMAIL, self.email))
        if self.phone_e164:
            out.append((PHONE, self.phone_e164))
        if self.telegram_id:
            out.append((TELEGRAM, self.telegram_id))
        if self.webchat_session:
            out.append((WEBCHAT, self.webchat_session))
        return out


@dataclass(frozen=True, slots=True)
class SaleInput:
    external_id: str
    product: str
    seller: str
    closed_at: datetime
    customer: Customer


@dataclass(frozen=True, slots=True)
class SaleResult:
    external_id: str
    sale_id: int
    contact_id: int
    duplicate: bool
    instances: int = 0


@dataclass(frozen=True, slots=True)
class SaleError:
    """A sale that was not stored. ``where`` is a CSV line number or a list index."""

    where: int
    reason: str
    external_id: str | None = None
    field: str | None = None


@dataclass(slots=True)
class ImportReport:
    rows: int = 0
    created: int = 0
    duplicates: int = 0
    instances: int = 0
    errors: list[SaleError] = field(default_factory=list)
    error_count: int = 0

    def add_error(self, error: SaleError) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append(error)


def _clean(value: Any, name: str, *, max_len: int, required: bool = False, collapse: bool = False) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise ValidationError(f"{name} is required", field=name)
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValidationError(f"{name} must be text", field=name)
    # A name typed in a spreadsheet cell may carry a line break; an id never should.
    text = " ".join(str(value).split()) if collapse else str(value).strip()
    if len(text) > max_len:
        raise ValidationError(f"{name} is longer than {max_len} characters", field=name)
    if any(ord(c) < 32 for c in text):
        raise ValidationError(f"{name} contains control characters", field=name)
    return text


def validate_customer(data: Any, *, phone_region: str = "AR") -> Customer:
    if not isinstance(data, Mapping):
        raise ValidationError("customer must be an object", field="customer")
    unknown = sorted(set(data) - {"name", "email", "telegram_id", "webchat_session", "phone", "language"})
    if unknown:
        raise ValidationError(f"unknown customer field {unknown[0]!r}", field=f"customer.{unknown[0]}")
    email = _clean(data.get("email"), "customer.email", max_len=320)
    if email is not None:
        email = email.lower()
        if not _EMAIL.match(email):
            raise ValidationError(f"customer.email {email!r} is not an email address", field="customer.email")
    telegram = _clean(data.get("telegram_id"), "customer.telegram_id", max_len=20)
    if telegram is not None and not telegram.isdigit():
        raise ValidationError("customer.telegram_id must be the numeric Telegram user id",
                              field="customer.telegram_id")
    session = _clean(data.get("webchat_session"), "customer.webchat_session", max_len=40)
    if session is not None and not _SESSION.match(session):
        raise ValidationError("customer.webchat_session is not a web chat session id",
                              field="customer.webchat_session")
    language = _clean(data.get("language"), "customer.language", max_len=5)
    if language is not None:
        language = language.lower()[:2]
        if language not in LANGUAGES:
            raise ValidationError(f"customer.language must be one of {', '.join(LANGUAGES)}",
                                  field="customer.language")
    phone = _clean(data.get("phone"), "customer.phone", max_len=50)
    e164 = None
    if phone:
        # An ERP's phone column holds whatever someone typed: a number that is not valid
        # is kept on the contact as typed (an operator may still call it), never matched.
        with contextlib.suppress(ValidationError):
            e164 = phone_number(phone, "customer.phone", region=phone_region)
    customer = Customer(name=_clean(data.get("name"), "customer.name", max_len=200, collapse=True), email=email,
                        telegram_id=telegram, webchat_session=session, phone=e164 or phone, language=language,
                        phone_e164=e164)
    if not customer.keys() and not customer.phone:
        raise ValidationError("the customer needs a way to reach them: telegram_id, webchat_session, email or phone",
                              field="customer")
    return customer


def validate_sale(data: Any, *, tz: ZoneInfo, now: datetime, phone_region: str = "AR") -> SaleInput:
    """A sale from JSON (or a CSV row mapped to the same shape), or ValidationError."""
    if not isinstance(data, Mapping):
        raise ValidationError("a sale must be an object", field="sale")
    unknown = sorted(set(data) - {"external_id", "product", "seller", "closed_at", "customer"})
    if unknown:
        raise ValidationError(f"unknown field {unknown[0]!r}", field=unknown[0])
    external_id = _clean(data.get("external_id"), "external_id", max_len=MAX_EXTERNAL_ID, required=True)
    product = _clean(data.get("product"), "product", max_len=80, required=True)
    seller = _clean(data.get("seller"), "seller", max_len=MAX_SELLER, required=True, collapse=True)
    raw_closed = data.get("closed_at")
    if not isinstance(raw_closed, str):
        raise ValidationError("closed_at is required (YYYY-MM-DD or an ISO 8601 date-time)", field="closed_at")
    try:
        closed_at = parse_instant(raw_closed, tz)
    except ValueError as exc:
        raise ValidationError(f"closed_at {exc}", field="closed_at") from None
    if closed_at > now + FUTURE_TOLERANCE:
        raise ValidationError(f"closed_at {raw_closed!r} is in the future", field="closed_at")
    return SaleInput(external_id, product, seller, closed_at, validate_customer(data.get("customer") or {}, phone_region=phone_region))  # type: ignore[arg-type]


@dataclass(slots=True)
class _RuleDays:
    id: int
    start_after_days: int
    expires_after_days: int


class Sales:
    """Records sales and their survey windows."""

    def __init__(self, *, db: Database, clock: Clock, tz: ZoneInfo, default_language: str = "es",
                 phone_region: str = "AR") -> None:
        self._phone_region = phone_region
        self._db = db
        self._clock = clock
        self._tz = tz
        self._default_language = default_language

    @property
    def tz(self) -> ZoneInfo:
        return self._tz

    def validate(self, data: Any) -> SaleInput:
        return validate_sale(data, tz=self._tz, now=self._clock.now(), phone_region=self._phone_region)

    async def record(self, items: Sequence[SaleInput]) -> list[SaleResult | SaleError]:
        """Store ``items`` in one transaction; one result per item, in order. A sale
        whose product is unknown (or whose web chat session is) is an error entry and
        writes nothing; the others are stored."""
        if not items:
            return []
        try:
            async with self._db.transaction() as conn:
                return await self._record(conn, items)
        except IntegrityError:
            # Another process stored the same sale or identity a moment ago: a second
            # pass sees its rows and answers "duplicate" / reuses the contact.
            async with self._db.transaction() as conn:
                return await self._record(conn, items)

    async def record_many(self, raw: Sequence[Any]) -> tuple[list[SaleResult], list[SaleError]]:
        """API bulk: validate each, store the valid ones. Errors carry the list index."""
        if len(raw) > MAX_BULK:
            raise ValidationError(f"send at most {MAX_BULK} sales per request", field="sales")
        valid: list[tuple[int, SaleInput]] = []
        errors: list[SaleError] = []
        for i, item in enumerate(raw):
            try:
                valid.append((i, self.validate(item)))
            except ValidationError as exc:
                ext = item.get("external_id") if isinstance(item, Mapping) else None
                errors.append(SaleError(i, str(exc), ext if isinstance(ext, str) else None, exc.field))
        results: list[SaleResult] = []
        for (i, _), outcome in zip(valid, await self.record([s for _, s in valid]), strict=True):
            if isinstance(outcome, SaleError):
                errors.append(SaleError(i, outcome.reason, outcome.external_id, outcome.field))
            else:
                results.append(outcome)
        errors.sort(key=lambda e: e.where)
        return results, errors

    async def import_csv(self, path: str | Path, *, chunk_size: int = 2000,
                         on_progress: Callable[[int, int], None] | None = None) -> ImportReport:
        """Import a CSV file (UTF-8, comma or semicolon separated, header first).

        The header and the encoding are checked before anything is written: a file
        whose columns are wrong is refused whole. Row errors carry the line number.
        ``on_progress(bytes_read, total_bytes)`` is called after every chunk."""
        path = Path(path)
        total = path.stat().st_size
        _check_utf8(path)
        report = ImportReport()
        with path.open("rb") as raw:
            counter = _CountingReader(raw)
            text = io.TextIOWrapper(io.BufferedReader(counter), encoding="utf-8-sig", newline="")
            header_line = text.readline()
            if not header_line.strip():
                raise ValidationError(f"{path.name}: the file is empty; the first line must be the header "
                                      f"({','.join(CSV_COLUMNS)})")
            delimiter = ";" if header_line.count(";") > header_line.count(",") else ","
            header = [h.strip().lower().replace(" ", "_") for h in next(csv.reader([header_line],
                                                                                    delimiter=delimiter))]
            _check_header(header, path.name)
            reader = csv.reader(text, delimiter=delimiter)
            pending: list[tuple[int, SaleInput]] = []
            line = 1
            while True:
                start = line + 1
                try:
                    row = next(reader)
                except StopIteration:
                    break
                except csv.Error as exc:
                    # The message promises the lines before it are in: up to a chunk of
                    # them were still pending (a field over the csv size limit used to
                    # drop them silently).
                    if pending:
                        await self._flush(pending, report)
                    raise ValidationError(f"{path.name}: line {start}: {exc}; fix the file and import it again "
                                          f"(lines before it were imported)") from None
                line = reader.line_num + 1
                if not row or all(not c.strip() for c in row):
                    continue
                report.rows += 1
                if len(row) != len(header):
                    report.add_error(SaleError(start, f"expected {len(header)} fields, found {len(row)}"))
                    continue
                values = dict(zip(header, row, strict=True))
                try:
                    pending.append((start, self.validate(_nest(values))))
                except ValidationError as exc:
                    report.add_error(SaleError(start, str(exc), values.get("external_id") or None, exc.field))
                if len(pending) >= chunk_size:
                    await self._flush(pending, report)
                    pending = []
                    if on_progress:
                        on_progress(counter.count, total)
            if pending:
                await self._flush(pending, report)
            if on_progress:
                on_progress(total, total)
        return report

    async def _flush(self, pending: list[tuple[int, SaleInput]], report: ImportReport) -> None:
        for (line, _), outcome in zip(pending, await self.record([s for _, s in pending]), strict=True):
            if isinstance(outcome, SaleError):
                report.add_error(SaleError(line, outcome.reason, outcome.external_id, outcome.field))
            elif outcome.duplicate:
                report.duplicates += 1
            else:
                report.created += 1
                report.instances += outcome.instances

    # --- one transaction -----------------------------------------------------------------

    async def _record(self, conn: AsyncConnection, items: Sequence[SaleInput]) -> list[SaleResult | SaleError]:
        now = self._clock.now()
        out: list[SaleResult | SaleError | None] = [None] * len(items)

        existing = await _existing_sales(conn, {s.external_id for s in items})
        first_index: dict[str, int] = {}
        fresh: list[int] = []
        for i, s in enumerate(items):
            if s.external_id in existing:
                sid, cid = existing[s.external_id]
                out[i] = SaleResult(s.external_id, sid, cid, duplicate=True)
            elif s.external_id in first_index:
                continue  # resolved after the first copy is stored
            else:
                first_index[s.external_id] = i
                fresh.append(i)

        product_rows = await _products(conn, {items[i].product for i in fresh})
        rules_by_profile = await _profile_rules(conn, {p[1] for p in product_rows.values() if p[1] is not None})
        identity_owner = await identity_owners(conn, [k for i in fresh for k in items[i].customer.keys()])
        org_of_domain = await organizations_for_domains(
            conn, {email_domain(items[i].customer.email) for i in fresh if items[i].customer.email})

        contact_of: dict[int, int | None] = {}  # item index → contact id (None: new, below)
        new_contacts: list[dict[str, Any]] = []
        new_contact_slot: dict[int, int] = {}  # item index → index in new_contacts
        key_slot: dict[tuple[str, str], int] = {}  # identity key → new contact slot, within this batch
        writable: list[int] = []
        for i in fresh:
            s = items[i]
            if s.product not in product_rows:
                out[i] = SaleError(i, f"product {s.product!r} does not exist", s.external_id, "product")
                continue
            if s.customer.webchat_session and (ChannelName.WEBCHAT.value, s.customer.webchat_session) not in identity_owner:
                out[i] = SaleError(i, f"web chat session {s.customer.webchat_session!r} is unknown", s.external_id,
                                   "customer.webchat_session")
                continue
            writable.append(i)
            keys = s.customer.keys()
            known = next((identity_owner[k] for k in keys if k in identity_owner), None)
            if known is not None:
                contact_of[i] = known
                continue
            slot = next((key_slot[k] for k in keys if k in key_slot), None)
            if slot is None:
                slot = len(new_contacts)
                new_contacts.append({"name": s.customer.name, "email": s.customer.email, "phone": s.customer.phone,
                                     "language": s.customer.language, "created_at": now,
                                     "organization_id": org_of_domain.get(email_domain(s.customer.email))
                                     if s.customer.email else None})
            for k in keys:
                key_slot.setdefault(k, slot)
            new_contact_slot[i] = slot
            contact_of[i] = None

        new_ids: list[int] = []
        if new_contacts:
            result = await conn.execute(insert(contacts).returning(contacts.c.id, sort_by_parameter_order=True),
                                        new_contacts)
            new_ids = [r[0] for r in result.all()]
        for i, slot in new_contact_slot.items():
            contact_of[i] = new_ids[slot]

        # What the ERP knows about a known customer fills gaps; it never overwrites.
        fills: dict[int, dict[str, Any]] = {}
        for i in writable:
            c = items[i].customer
            if i not in new_contact_slot and (c.name or c.language):
                fill = fills.setdefault(contact_of[i], {"b_id": contact_of[i], "b_name": None, "b_language": None})  # type: ignore[arg-type]
                fill["b_name"] = fill["b_name"] or c.name
                fill["b_language"] = fill["b_language"] or c.language
        if fills:
            await conn.execute(
                update(contacts).where(contacts.c.id == bindparam("b_id")).values(
                    name=func.coalesce(contacts.c.name, bindparam("b_name")),
                    language=func.coalesce(contacts.c.language, bindparam("b_language")))
                .execution_options(synchronize_session=False), list(fills.values()))

        # Identities the batch mentions that nobody owns yet go to that sale's contact.
        identity_rows: dict[tuple[str, str], dict[str, Any]] = {}
        for i in writable:
            for k in items[i].customer.keys():
                if k not in identity_owner and k not in identity_rows:
                    # What the ERP says is not proved by the channel: verified once the customer writes.
                    identity_rows[k] = {"contact_id": contact_of[i], "channel": k[0], "address": k[1],
                                        "unreachable": False, "created_at": now, "verified": False}
        if identity_rows:
            await conn.execute(insert(contact_identities), list(identity_rows.values()))
        # New contacts, and known ones that gained an identity, become findable by it.
        await reindex(conn, {row["contact_id"] for row in identity_rows.values()} | set(new_ids))

        sale_rows = [{"external_id": items[i].external_id, "contact_id": contact_of[i],
                      "product_id": product_rows[items[i].product][0], "seller": items[i].seller,
                      "closed_at": items[i].closed_at, "created_at": now} for i in writable]
        sale_ids: list[int] = []
        if sale_rows:
            # A plain executemany, then the ids by the unique external id: ordered
            # RETURNING degrades to one statement per row on SQLite (5000x slower here).
            await conn.execute(insert(sales), sale_rows)
            by_external = await _existing_sales(conn, {r["external_id"] for r in sale_rows})
            sale_ids = [by_external[r["external_id"]][0] for r in sale_rows]

        instance_rows: list[dict[str, Any]] = []
        windows: dict[tuple[date, int, int], Window] = {}  # many sales share a closing day
        for i, sid in zip(writable, sale_ids, strict=True):
            s = items[i]
            rules = rules_by_profile.get(product_rows[s.product][1], [])  # type: ignore[arg-type]
            day = local_date(s.closed_at, self._tz) if rules else None
            for rule in rules:
                key = (day, rule.start_after_days, rule.expires_after_days)
                w = windows.get(key)  # type: ignore[arg-type]
                if w is None:
                    w = windows[key] = window_for(  # type: ignore[index]
                        s.closed_at, start_after_days=rule.start_after_days,
                        expires_after_days=rule.expires_after_days, tz=self._tz)
                instance_rows.append({
                    "sale_id": sid, "rule_id": rule.id, "contact_id": contact_of[i], "window_start": w.start,
                    "window_end": w.end,
                    # An old sale imported late: its window has already passed.
                    "status": "expired" if w.is_expired(now) else "pending",
                    "current_position": 0, "invalid_answers": 0,
                })
            out[i] = SaleResult(s.external_id, sid, contact_of[i], duplicate=False, instances=len(rules))  # type: ignore[arg-type]
        for start in range(0, len(instance_rows), 5000):
            await conn.execute(insert(rule_instances), instance_rows[start:start + 5000])

        for i, s in enumerate(items):
            if out[i] is None:
                first = out[first_index[s.external_id]]
                if isinstance(first, SaleResult):
                    out[i] = SaleResult(s.external_id, first.sale_id, first.contact_id, duplicate=True)
                else:
                    out[i] = first
        return out  # type: ignore[return-value]


async def _existing_sales(conn: AsyncConnection, ids: set[str]) -> dict[str, tuple[int, int]]:
    found: dict[str, tuple[int, int]] = {}
    ordered = sorted(ids)
    for start in range(0, len(ordered), 5000):
        rows = await conn.execute(select(sales.c.external_id, sales.c.id, sales.c.contact_id)
                                  .where(sales.c.external_id.in_(ordered[start:start + 5000])))
        found.update({r.external_id: (r.id, r.contact_id) for r in rows})
    return found


async def _products(conn: AsyncConnection, codes: set[str]) -> dict[str, tuple[int, int | None]]:
    if not codes:
        return {}
    rows = await conn.execute(select(products.c.code, products.c.id, products.c.profile_id)
                              .where(products.c.code.in_(sorted(codes))))
    return {r.code: (r.id, r.profile_id) for r in rows}


async def _profile_rules(conn: AsyncConnection, profile_ids: set[int]) -> dict[int, list[_RuleDays]]:
    out: dict[int, list[_RuleDays]] = {p: [] for p in profile_ids}
    if not profile_ids:
        return out
    rows = await conn.execute(
        select(survey_profile_rules.c.profile_id, survey_rules.c.id, survey_rules.c.start_after_days,
               survey_rules.c.expires_after_days)
        .join(survey_rules, survey_rules.c.id == survey_profile_rules.c.rule_id)
        .where(survey_profile_rules.c.profile_id.in_(sorted(profile_ids)))
        .order_by(survey_rules.c.id))
    for r in rows:
        out[r.profile_id].append(_RuleDays(r.id, r.start_after_days, r.expires_after_days))
    return out


def _nest(values: Mapping[str, str]) -> dict[str, Any]:
    """A CSV row in the JSON shape ``validate_sale`` reads."""
    customer = {"name": values.get("customer_name"), "email": values.get("email"),
                "telegram_id": values.get("telegram_id"), "webchat_session": values.get("webchat_session"),
                "phone": values.get("phone"), "language": values.get("language")}
    return {"external_id": values.get("external_id"), "product": values.get("product"),
            "seller": values.get("seller"), "closed_at": values.get("closed_at") or None,
            "customer": {k: v for k, v in customer.items() if v}}


def _check_header(header: list[str], name: str) -> None:
    unknown = [h for h in header if h not in CSV_COLUMNS]
    if unknown:
        raise ValidationError(f"{name}: line 1: unknown column {unknown[0]!r}; the columns are "
                              f"{', '.join(CSV_COLUMNS)}")
    missing = [c for c in CSV_REQUIRED if c not in header]
    if missing:
        raise ValidationError(f"{name}: line 1: the header lacks the column {missing[0]!r} "
                              f"(required: {', '.join(CSV_REQUIRED)})")
    if len(set(header)) != len(header):
        raise ValidationError(f"{name}: line 1: a column is named twice")
    if not {"email", "telegram_id", "webchat_session", "phone"} & set(header):
        raise ValidationError(f"{name}: line 1: add at least one contact column: email, telegram_id, "
                              "webchat_session or phone")


def _check_utf8(path: Path) -> None:
    """Refuse a file that is not UTF-8 before writing anything, naming the line."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    line = 1
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                line += chunk[:exc.start].count(b"\n")
                raise ValidationError(f"{path.name}: line {line}: the file is not UTF-8 (save it as UTF-8 CSV)") from None
            line += chunk.count(b"\n")
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise ValidationError(f"{path.name}: line {line}: the file ends in the middle of a character") from None


class _CountingReader(io.RawIOBase):
    """Counts bytes read, for a progress bar over a text stream."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._raw.read(len(buffer))
        buffer[: len(data)] = data
        self.count += len(data)
        return len(data)
