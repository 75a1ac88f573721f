"""case history as message codes and values

``case_events`` gains ``code`` and ``params``: what an entry says beyond its kind and
values is a code and the values that fill its sentence (core.case_history), so that the
console shows it in the reader's language; the English sentence in ``detail`` is then
left empty. The sentences stored before are read back into codes where they have the
shape this version wrote; one that does not (and a KB action's URL, which is data) keeps
its text in ``detail``, shown as it is.

The codes and the old shapes are written out here, not imported: a migration must keep
doing what it did when core changes.

Revision ID: i19_case_history_codes
Revises: i19_contact_history_codes
Create Date: 2026-12-07 11:30:00
"""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "i19_case_history_codes"
down_revision = "i19_contact_history_codes"
branch_labels = None
depends_on = None

_events = sa.table("case_events", sa.column("id", sa.BigInteger), sa.column("kind", sa.String),
                   sa.column("code", sa.String), sa.column("params", sa.JSON), sa.column("detail", sa.Text))
_ACTIVITIES = frozenset({"preliminary_analysis", "derived", "answer_sent", "closed"})

#: (kind, the shape of its old sentence, code, the names of the shape's groups), in the
#: order they are tried; a group named ``*_int`` is a number, ``*_list`` a ", " list.
_SHAPES: tuple[tuple[str, re.Pattern[str], str, tuple[str, ...]], ...] = tuple(
    (kind, re.compile(pattern, re.DOTALL), code, names) for kind, pattern, code, names in (
        ("reopened", r"reopened by the customer", "case_history_reopened", ()),
        ("activity", r"the customer wrote", "case_history_customer_wrote", ()),
        ("activity", r"self-served", "case_history_self_served", ()),
        ("activity", r"sector: (.+)", "case_history_sector", ("sector",)),
        ("opened", r"dated (\d{4}-\d\d-\d\dT\S+)", "case_history_dated", ("at",)),
        ("opened", r"detractor answer in survey (\d+) \(sale (.+)\)", "case_history_detractor_opened",
         ("survey_int", "sale")),
        ("budget", r"the process's mode", "case_history_process_budget_mode", ()),
        ("assign", r"automatic \((\w+)\)", "case_history_assigned", ("strategy",)),
        ("assign", r"reassigned: (.+) away", "case_history_reassigned", ("previous",)),
        ("assign", r"among the rule's operators \((.+)\)", "case_history_detractor_assigned", ("operators_list",)),
        ("erased", r"contact erased", "case_history_contact_erased", ()),
        ("contact_merged", r"contact #(\d+) merged into contact #(\d+)", "case_history_contact_merged",
         ("source_int", "target_int")),
        ("organization_merged", r"organization #(\d+) merged into #(\d+)", "case_history_organization_merged",
         ("source_int", "target_int")),
        ("detractor_answer", r"(.+) → (\S+) \(weight (-?\d+)\)", "case_history_detractor_answer",
         ("question", "score", "weight_int")),
        ("delivery_failed", r"Delivery by (\w+) to (.+?) failed: (.*)", "case_history_delivery_failed",
         ("channel", "recipient", "error")),
    ))


def _coded(kind: str, detail: str) -> tuple[str, dict[str, Any]] | None:
    """The code and values of a sentence the previous version stored, if it has its shape."""
    if kind == "customer_told" and detail in _ACTIVITIES:
        return "case_history_customer_told", {"activity": detail}
    for shape_kind, shape, code, names in _SHAPES:
        if shape_kind != kind or not (m := shape.fullmatch(detail)):
            continue
        values: dict[str, Any] = {}
        for name, value in zip(names, m.groups(), strict=True):
            if name.endswith("_int"):
                values[name.removesuffix("_int")] = int(value)
            elif name.endswith("_list"):
                values[name.removesuffix("_list")] = value.split(", ")
            else:
                values[name] = value
        return code, values
    return None


def upgrade() -> None:
    op.add_column("case_events", sa.Column("code", sa.String(length=60), nullable=True))
    op.add_column("case_events", sa.Column("params", sa.JSON(), nullable=True))
    conn = op.get_bind()
    rows = conn.execute(sa.select(_events.c.id, _events.c.kind, _events.c.detail)
                        .where(_events.c.detail.is_not(None))).all()
    for row in rows:
        coded = _coded(row.kind, row.detail)
        if coded is not None:
            conn.execute(sa.update(_events).where(_events.c.id == row.id)
                         .values(code=coded[0], params=coded[1] or None, detail=None))


#: The English sentences, as the previous version wrote them (the downgrade).
_TEMPLATES = {
    "case_history_reopened": "reopened by the customer",
    "case_history_follow_up": None,  # the previous version wrote nothing
    "case_history_customer_wrote": "the customer wrote",
    "case_history_self_served": "self-served",
    "case_history_dated": "dated %(at)s",
    "case_history_sector": "sector: %(sector)s",
    "case_history_customer_told": "%(activity)s",
    "case_history_process_budget_mode": "the process's mode",
    "case_history_assigned": "automatic (%(strategy)s)",
    "case_history_reassigned": "reassigned: %(previous)s away",
    "case_history_contact_erased": "contact erased",
    "case_history_contact_merged": "contact #%(source)s merged into contact #%(target)s",
    "case_history_organization_merged": "organization #%(source)s merged into #%(target)s",
    "case_history_detractor_answer": "%(question)s → %(score)s (weight %(weight)s)",
    "case_history_detractor_opened": "detractor answer in survey %(survey)s (sale %(sale)s)",
    "case_history_detractor_assigned": "among the rule's operators (%(operators)s)",
    "case_history_delivery_failed": "Delivery by %(channel)s to %(recipient)s failed: %(error)s",
}


def downgrade() -> None:
    conn = op.get_bind()
    for row in conn.execute(sa.select(_events.c.id, _events.c.code, _events.c.params)
                            .where(_events.c.code.is_not(None))).all():
        template = _TEMPLATES.get(row.code)
        values = {k: ", ".join(map(str, v)) if isinstance(v, list) else v for k, v in (row.params or {}).items()}
        conn.execute(sa.update(_events).where(_events.c.id == row.id)
                     .values(detail=template % values if template else None))
    with op.batch_alter_table("case_events") as batch:
        batch.drop_column("params")
        batch.drop_column("code")
