"""Sales: idempotent by external id, customers found or created by their channels,
one window per rule of the product's profile, and a CSV import that stores the good
rows, reports the bad ones by line, and never writes half a sale."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from posventa.core.errors import ValidationError
from posventa.core.persistence.schema import contact_identities, contacts, rule_instances, sales
from tests.core.surveys.conftest import sale


async def _count(db, table) -> int:
    async with db.engine.connect() as conn:
        return (await conn.execute(select(func.count()).select_from(table))).scalar_one()


async def test_sales_are_idempotent_and_make_one_window_per_rule(surveys, db):
    results, errors = await surveys.sales.record_many([
        sale("A-1", telegram_id="1001", name="Ana", language="pt"),
        sale("A-2", product="LIC", closed_at="2026-03-02T23:30", email="Ana@Example.com", telegram_id="1001"),
        sale("A-3", product="BARE", email="bob@example.com"),
        sale("A-1", telegram_id="1001"),  # the same sale twice in one request
    ])
    assert errors == []
    assert [(r.external_id, r.duplicate, r.instances) for r in results] == [
        ("A-1", False, 2), ("A-2", False, 1), ("A-3", False, 0), ("A-1", True, 0)]
    assert results[0].contact_id == results[1].contact_id != results[2].contact_id
    again, _ = await surveys.sales.record_many([sale("A-1", telegram_id="1001"), sale("A-2", email="x@y.zz")])
    assert all(r.duplicate for r in again) and again[0].sale_id == results[0].sale_id
    assert await _count(db, sales) == 3 and await _count(db, rule_instances) == 3

    async with db.engine.connect() as conn:
        idents = {(r.channel, r.address): r.contact_id for r in await conn.execute(select(contact_identities))}
        windows = {(r.sale_id, r.rule_id): r for r in await conn.execute(select(rule_instances))}
        ana = (await conn.execute(select(contacts).where(contacts.c.id == results[0].contact_id))).one()
    assert idents == {("telegram", "1001"): ana.id, ("email", "ana@example.com"): ana.id,
                      ("email", "bob@example.com"): results[2].contact_id}
    assert ana.name == "Ana" and ana.language == "pt"
    # PRN: "week" (7 days, 3 long) and "month" (30, 7); closed on 2 March in Buenos Aires.
    starts = sorted((w.window_start, w.window_end, w.status) for w in windows.values()
                    if w.sale_id == results[0].sale_id)
    assert starts == [(datetime(2026, 3, 9, 3, tzinfo=UTC), datetime(2026, 3, 12, 3, tzinfo=UTC), "pending"),
                      (datetime(2026, 4, 1, 3, tzinfo=UTC), datetime(2026, 4, 8, 3, tzinfo=UTC), "pending")]


async def test_validation_errors_name_the_field(surveys):
    _, errors = await surveys.sales.record_many([
        sale("", telegram_id="1"), sale("B-2", product="NOPE", telegram_id="1"),
        sale("B-3", closed_at="03/02/2026", telegram_id="1"), sale("B-4", closed_at="2030-01-01", telegram_id="1"),
        {"external_id": "B-5", "product": "PRN", "seller": "m", "closed_at": "2026-03-01", "customer": {}},
        sale("B-6", email="not-an-email"), sale("B-7", telegram_id="@ana"),
        sale("B-8", webchat_session="wc-unknown"), "junk",
    ])
    reasons = {e.where: (e.field, e.reason) for e in errors}
    assert reasons[0][0] == "external_id"
    assert reasons[1] == ("product", "product 'NOPE' does not exist")
    assert reasons[2][0] == "closed_at" and "not a date" in reasons[2][1]
    assert "in the future" in reasons[3][1]
    assert reasons[4][0] == "customer" and "a way to reach them" in reasons[4][1]
    assert reasons[5][0] == "customer.email" and reasons[6][0] == "customer.telegram_id"
    assert reasons[7] == ("customer.webchat_session", "web chat session 'wc-unknown' is unknown")
    assert reasons[8][0] == "sale"
    with pytest.raises(ValidationError, match="at most"):
        await surveys.sales.record_many([{}] * 10_001)


async def test_old_sales_arrive_already_expired(surveys, db):
    [r], _ = await surveys.sales.record_many([sale("OLD", closed_at="2025-01-01")])
    async with db.engine.connect() as conn:
        statuses = [s for (s,) in await conn.execute(select(rule_instances.c.status)
                                                     .where(rule_instances.c.sale_id == r.sale_id))]
    assert statuses == ["expired", "expired"]


CSV = """external_id,closed_at,product,seller,customer_name,email,telegram_id
C-1,2026-03-01,PRN,marta,Ana,ana@example.com,
C-2,2026-03-01,NOPE,marta,Bob,bob@example.com,
C-3,yesterday,PRN,marta,Cid,cid@example.com,
C-4,2026-03-01,PRN,pedro,"Díaz, Carlos",carlos@example.com,2002

C-5,2026-03-01,PRN,pedro,Too,many,fields,here
C-6,2026-03-01,LIC,,Eve,eve@example.com,
C-7,2026-03-01,LIC,pedro,"Multi
line",multi@example.com,
C-8,2026-03-01,LIC,pedro,Ok,ok@example.com,
C-1,2026-03-01,PRN,marta,Ana,ana@example.com,
"""


async def test_csv_imports_good_rows_and_reports_bad_ones_by_line(surveys, db, tmp_path):
    path = tmp_path / "sales.csv"
    path.write_text(CSV, encoding="utf-8")
    seen = []
    report = await surveys.sales.import_csv(path, chunk_size=2, on_progress=lambda done, total: seen.append(done))
    assert (report.rows, report.created, report.duplicates, report.error_count) == (9, 4, 1, 4)
    assert [(e.where, e.external_id) for e in report.errors] == [(3, "C-2"), (4, "C-3"), (7, None), (8, "C-6")]
    assert "product 'NOPE' does not exist" in report.errors[0].reason
    assert "expected 7 fields, found 8" in report.errors[2].reason
    assert "seller is required" in report.errors[3].reason
    assert report.instances == 2 + 2 + 1 + 1
    assert seen[-1] == path.stat().st_size
    # Nothing of a rejected row exists: no sale, no contact, no identity.
    async with db.engine.connect() as conn:
        stored = {r[0] for r in await conn.execute(select(sales.c.external_id))}
        emails = {r[0] for r in await conn.execute(select(contact_identities.c.address))}
    assert stored == {"C-1", "C-4", "C-7", "C-8"}
    assert "bob@example.com" not in emails and "cid@example.com" not in emails and "eve@example.com" not in emails
    # The same file again: all duplicates, nothing new.
    again = await surveys.sales.import_csv(path)
    assert (again.created, again.duplicates) == (0, 5)


async def test_csv_whole_file_errors_change_nothing(surveys, db, tmp_path):
    cases = {
        "header.csv": ("id,closed_at,product,seller,email\n1,2026-03-01,PRN,m,a@b.cc\n", "unknown column 'id'"),
        "missing.csv": ("external_id,product,seller,email\n1,PRN,m,a@b.cc\n", "lacks the column 'closed_at'"),
        "empty.csv": ("", "the file is empty"),
        "nocontact.csv": ("external_id,closed_at,product,seller\n1,2026-03-01,PRN,m\n", "at least one contact"),
    }
    for name, (body, message) in cases.items():
        (tmp_path / name).write_text(body, encoding="utf-8")
        with pytest.raises(ValidationError, match=message):
            await surveys.sales.import_csv(tmp_path / name)
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes("external_id,closed_at,product,seller,email\n1,2026-03-01,PRN,Muñoz,a@b.cc\n"
                       .encode("latin-1"))
    with pytest.raises(ValidationError, match="line 2: the file is not UTF-8"):
        await surveys.sales.import_csv(latin1)
    assert await _count(db, sales) == 0

    # Spreadsheets write semicolons and a byte-order mark.
    path = tmp_path / "excel.csv"
    path.write_bytes("\ufeffExternal_ID;Closed_At;Product;Seller;Email\nX-1;2026-03-01;PRN;Muñoz;m@x.com\n"
                     .encode("utf-8"))
    report = await surveys.sales.import_csv(path)
    assert (report.created, report.error_count) == (1, 0)
    # And the example file imports cleanly.
    from tests.support import REPO

    await surveys.catalog.import_toml((REPO / "examples" / "catalog.toml").read_bytes())
    report = await surveys.sales.import_csv(REPO / "examples" / "sales.csv")
    assert (report.created, report.error_count) == (4, 0), report.errors
