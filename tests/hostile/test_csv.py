"""The sales CSV import (``posventa import sales`` → ``Sales.import_csv``) against hostile
files: random rows mixing good sales with bad ones (unknown products, bad dates, missing
fields, too many columns, formula injection, huge fields, NULs, other encodings).

Whatever the file: good rows are imported, bad rows are reported with their line
numbers, nothing is half-written (a stored sale has every survey window of its product),
and a file refused whole says which line and what to do. Formula-like values are kept
as data and neutralised when the panel exports them as CSV.
"""

from __future__ import annotations

import csv
import io
import itertools
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select

from posventa.core.errors import ValidationError
from posventa.core.persistence.schema import rule_instances, sales
from posventa.core.surveys.panel import PanelFilter
from tests.core.surveys.conftest import CATALOG
from tests.hostile.conftest import fuzz
from tests.support import FakeClock

HEADER = "external_id,closed_at,product,seller,customer_name,email"
_files = itertools.count(1)
FORMULAS = ["=cmd|' /C calc'!A0", "+1+1", "-2+3", "@SUM(A1:A9)", "=HYPERLINK(\"http://evil.example\")", "\t=1"]


@pytest.fixture
async def surveys(db):
    from posventa.core.config import SurveysConfig
    from posventa.core.outgoing import Outgoing
    from posventa.core.surveys import Surveys

    s = Surveys.build(db=db, outgoing=Outgoing(email_domain="example.com", max_attempts=5),
                      clock=FakeClock(), config=SurveysConfig(timezone="UTC"))
    await s.catalog.import_toml(CATALOG)
    return s


def cell(value: str) -> str:
    return '"' + value.replace('"', '""') + '"' if any(c in value for c in ',"\r\n') else value


# (kind, fields or raw line): "good" rows must be stored, "bad" ones reported, "fatal"
# ones make the whole file an error from that line on.
row_kinds = st.one_of(
    st.just(("good", None)),
    st.sampled_from(FORMULAS).map(lambda f: ("good", {"seller": f, "customer_name": f})),
    st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=30)
    .map(lambda t: ("good", {"customer_name": t})),
    st.sampled_from([("bad", {"product": "NOPE"}), ("bad", {"closed_at": "2026-13-45"}),
                     ("bad", {"closed_at": "ayer"}), ("bad", {"closed_at": "3026-01-01"}), ("bad", {"seller": ""}),
                     ("bad", {"email": "not-an-email"}), ("bad", {"email": ""}), ("bad", {"external_id": "x" * 500}),
                     ("bad", {"seller": "a\x01b"}), ("bad", {"extra_columns": 3}), ("bad", {"missing_columns": 2}),
                     ("bad", {"nul": True}), ("fatal", {"huge": 200_000})]),
)


def build(kinds: list[tuple[str, dict | None]], prefix: str) -> tuple[bytes, dict[int, tuple[str, str]]]:
    """The file, and line number → (kind, external id) for every data row."""
    lines = [HEADER]
    expected: dict[int, tuple[str, str]] = {}
    for i, (kind, spec) in enumerate(kinds):
        spec = dict(spec or {})
        ext = spec.pop("external_id", f"{prefix}-{i}")
        fields = {"external_id": ext, "closed_at": "2026-02-01", "product": "PRN", "seller": "marta",
                  "customer_name": "Ana", "email": f"c{i}@{prefix.lower()}.example"}
        extra = spec.pop("extra_columns", 0)
        missing = spec.pop("missing_columns", 0)
        if huge := spec.pop("huge", 0):
            fields["customer_name"] = "h" * huge
        if spec.pop("nul", False):
            fields["customer_name"] = "a\x00b"
        fields.update(spec)
        values = [cell(v) for v in fields.values()] + ["x"] * extra
        lines.append(",".join(values[:len(values) - missing]))
        expected[len(lines)] = (kind, ext)
    return ("\n".join(lines) + "\n").encode("utf-8"), expected


async def stored(db, prefix: str) -> dict[str, int]:
    """External id → number of survey windows, for this file's sales."""
    async with db.engine.connect() as conn:
        rows = await conn.execute(
            select(sales.c.external_id, func.count(rule_instances.c.id))
            .select_from(sales.outerjoin(rule_instances, rule_instances.c.sale_id == sales.c.id))
            .where(sales.c.external_id.like(f"{prefix}-%")).group_by(sales.c.external_id))
        return {r[0]: r[1] for r in rows}


@fuzz(30, deadline_seconds=30)
@given(kinds=st.lists(row_kinds, min_size=1, max_size=12), chunk=st.sampled_from([1, 3, 2000]))
async def test_fuzzed_sales_files(surveys, db, tmp_path_factory, tally, kinds, chunk):
    tally.add("csv.files")
    tally.add("csv.rows", len(kinds))
    prefix = f"F{next(_files)}"
    raw, expected = build(kinds, prefix)
    path = tmp_path_factory.mktemp("csv") / "sales.csv"
    path.write_bytes(raw)
    fatal = [line for line, (kind, _) in expected.items() if kind == "fatal"]
    try:
        report = await surveys.sales.import_csv(path, chunk_size=chunk)
    except ValidationError as exc:
        assert fatal, str(exc)
        line = int(re.search(r"line (\d+)", str(exc)).group(1))
        assert line == fatal[0], (str(exc), fatal)
        have = await stored(db, prefix)
        # "Lines before it were imported": every good row before the bad line is there...
        before = {ext for ln, (kind, ext) in expected.items() if kind == "good" and ln < line}
        assert before <= set(have), (str(exc), before - set(have))
        # ...and nothing from it on.
        assert not {ext for ln, (_, ext) in expected.items() if ln >= line} & set(have)
    else:
        assert not fatal
        have = await stored(db, prefix)
        good = {ext for kind, ext in expected.values() if kind == "good"}
        assert good <= set(have), good - set(have)
        bad_lines = {ln for ln, (kind, _) in expected.items() if kind == "bad"}
        assert {e.where for e in report.errors} == bad_lines, (report.errors, bad_lines)
        assert not {ext for kind, ext in expected.values() if kind == "bad"} & set(have)
        assert report.created == len(good) and report.error_count == len(bad_lines)
    assert all(n == 2 for n in (await stored(db, prefix)).values())  # whole sales only: both windows


@pytest.mark.parametrize("name,raw,words", [
    ("latin1", (HEADER + "\nL-1,2026-02-01,PRN,Muñoz,Ana,a@b.example\n").encode("latin-1"), "line 2: the file is not UTF-8"),
    ("utf16", (HEADER + "\nL-1,2026-02-01,PRN,m,Ana,a@b.example\n").encode("utf-16"), "line 1"),
    ("binary", bytes(range(256)) * 20, "line 2: the file is not UTF-8"),  # 0x0a comes before 0x80
    ("cut_utf8", (HEADER + "\nL-1,2026-02-01,PRN,m,Ana,a@b.example\nL-2,2026-02-01,PRN,m,Jos").encode() + b"\xc3",
     "ends in the middle of a character"),
    ("header_only_garbage", b"\x00\x00\x00\n", "line 1"),
    ("many_columns", (",".join(f"c{i}" for i in range(5000)) + "\n").encode(), "line 1: unknown column"),
    ("empty", b"", "the file is empty"),
    ("bom_only", b"\xef\xbb\xbf", "the file is empty"),
])
async def test_files_refused_whole_change_nothing(surveys, db, tmp_path, tally, name, raw, words):
    tally.add("csv.files")
    path = tmp_path / f"{name}.csv"
    path.write_bytes(raw)
    with pytest.raises(ValidationError) as info:
        await surveys.sales.import_csv(path)
    assert words in str(info.value) and path.name in str(info.value)
    async with db.engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(sales))).scalar_one() == 0


async def test_formula_injection_is_data_and_neutralised_on_export(surveys, tmp_path, tally):
    rows = [f"X-{i},2026-02-01,PRN,{cell(f)},{cell(f)},x{i}@example.com" for i, f in enumerate(FORMULAS)]
    path = tmp_path / "formulas.csv"
    path.write_text(HEADER + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
    tally.add("csv.rows", len(rows))
    report = await surveys.sales.import_csv(path)
    assert (report.created, report.error_count) == (len(FORMULAS), 0), report.errors
    exported = "".join([chunk async for chunk in surveys.panel.export_csv(PanelFilter())])
    for record in list(csv.reader(io.StringIO(exported)))[1:]:
        for value in record:
            assert value[:1] not in ("=", "+", "-", "@", "\t", "\r") or value.lstrip("-").replace(".", "").isdigit(), \
                record
    scores = surveys.panel.seller_scores_csv([{"seller": f, "surveys": 1, "sum": 0, "average": 0,
                                                "normalized_average": 0, "detractors": 0, "detractors_closed": 0}
                                               for f in FORMULAS])
    for record in list(csv.reader(io.StringIO(scores)))[1:]:
        assert record[0].startswith("'"), record
