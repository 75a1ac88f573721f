"""activity_tally: cases per activity kept by triggers, for the inbox's counts

``CaseService.activity_counts`` (the console inbox's tabs, beside every ``GET
/api/v1/cases``) grouped the whole cases table by activity: at 1,000,000 cases that read
the million entries of ``ix_cases_activity`` on every page, 40 ms of CPU on SQLite and
~68 ms of the PostgreSQL server's. Closed cases are almost all of them and their count is
shown too, so no partial index helps; the counts are now kept as they change, in the
writing transaction, by triggers (every writer, the bulk ones included, is counted
without the code having to remember). A change adds rows of +n/-n to
``case_activity_tally`` and never updates a shared row, so concurrent writers never wait
on one another; the reader sums at most a few thousand rows and ``core.case_counts.fold``
sums them into one row per activity every minute.

SQLite: a row trigger per event. PostgreSQL: inserts and deletes counted per statement
from its transition table (one tally row per activity for a bulk insert), a change of
activity per row, only when it really changes (the trigger's WHEN: no function call for
the inbox's updates of other columns).

Revision ID: i20_activity_tally
Revises: i20_calendars
Create Date: 2026-12-07 08:00:00
"""

from alembic import op
import sqlalchemy as sa

revision = 'i20_activity_tally'
down_revision = 'i20_calendars'
branch_labels = None
depends_on = None

_SQLITE_TRIGGERS = {
    "cases_tally_insert": "AFTER INSERT ON cases BEGIN "
                          "INSERT INTO case_activity_tally (activity, n) VALUES (new.activity, 1); END",
    "cases_tally_delete": "AFTER DELETE ON cases BEGIN "
                          "INSERT INTO case_activity_tally (activity, n) VALUES (old.activity, -1); END",
    "cases_tally_update": "AFTER UPDATE OF activity ON cases WHEN old.activity IS NOT new.activity BEGIN "
                          "INSERT INTO case_activity_tally (activity, n) VALUES (old.activity, -1), (new.activity, 1); END",
}

_PG_FUNCTIONS = {
    "cases_tally_insert": "INSERT INTO case_activity_tally (activity, n) "
                          "SELECT activity, count(*) FROM new_cases GROUP BY activity",
    "cases_tally_delete": "INSERT INTO case_activity_tally (activity, n) "
                          "SELECT activity, -count(*) FROM old_cases GROUP BY activity",
    "cases_tally_update": "INSERT INTO case_activity_tally (activity, n) VALUES (OLD.activity, -1), (NEW.activity, 1)",
}

_PG_TRIGGERS = {
    "cases_tally_insert": "AFTER INSERT ON cases REFERENCING NEW TABLE AS new_cases FOR EACH STATEMENT",
    "cases_tally_delete": "AFTER DELETE ON cases REFERENCING OLD TABLE AS old_cases FOR EACH STATEMENT",
    "cases_tally_update": "AFTER UPDATE OF activity ON cases FOR EACH ROW "
                          "WHEN (OLD.activity IS DISTINCT FROM NEW.activity)",
}


def upgrade() -> None:
    op.create_table(
        "case_activity_tally",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("activity", sa.String(30), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
    )
    # The triggers first, then the count of what is there: on PostgreSQL CREATE TRIGGER
    # locks out writers to cases until this transaction commits, so no case is counted
    # twice or missed in between.
    if op.get_bind().dialect.name == "sqlite":
        for name, body in _SQLITE_TRIGGERS.items():
            op.execute(f"CREATE TRIGGER {name} {body}")
    else:
        for name, body in _PG_FUNCTIONS.items():
            op.execute(f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ "
                       f"BEGIN {body}; RETURN NULL; END $$")
            op.execute(f"CREATE TRIGGER {name} {_PG_TRIGGERS[name]} EXECUTE FUNCTION {name}()")
    op.execute("INSERT INTO case_activity_tally (activity, n) SELECT activity, count(*) FROM cases GROUP BY activity")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in _SQLITE_TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    else:
        for name in _PG_TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {name} ON cases")
            op.execute(f"DROP FUNCTION IF EXISTS {name}()")
    op.drop_table("case_activity_tally")
