"""surveys close the loop: detractor thresholds, the detractor case and the follow-up

- survey_questions: ``detractor_threshold`` (NULL: the config default) and ``detractor_off``;
- survey_rules: ``resurvey_after_close``;
- cases: ``origin`` and ``survey_instance_id``, unique, so one survey instance never has
  two cases whatever retries or processes race;
- rule_instances: the follow-up question's answer, apart from the commission score.

Revision ID: i22_detractors
Revises: 0004
Create Date: 2026-12-07 02:10:00
"""

import sqlalchemy as sa
from alembic import op

revision = "i22_detractors"
down_revision = "0004"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("survey_questions") as batch:
        batch.add_column(sa.Column("detractor_threshold", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("detractor_off", sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table("survey_rules") as batch:
        batch.add_column(sa.Column("resurvey_after_close", sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table("rule_instances") as batch:
        batch.add_column(sa.Column("followup_status", sa.String(12), nullable=True))
        batch.add_column(sa.Column("followup_score", sa.String(20), nullable=True))
        batch.add_column(sa.Column("followup_weight", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("followup_asked_at", _TS, nullable=True))
        batch.add_column(sa.Column("followup_answered_at", _TS, nullable=True))
    with op.batch_alter_table("cases") as batch:
        batch.add_column(sa.Column("origin", sa.String(20), nullable=True))
        batch.add_column(sa.Column("survey_instance_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                                   nullable=True))
        batch.create_foreign_key("fk_cases_survey_instance_id_rule_instances", "rule_instances",
                                 ["survey_instance_id"], ["id"], ondelete="SET NULL")
        batch.create_index("uq_cases_survey_instance", ["survey_instance_id"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.drop_index("uq_cases_survey_instance")
        batch.drop_constraint("fk_cases_survey_instance_id_rule_instances", type_="foreignkey")
        batch.drop_column("survey_instance_id")
        batch.drop_column("origin")
    with op.batch_alter_table("rule_instances") as batch:
        for name in ("followup_answered_at", "followup_asked_at", "followup_weight", "followup_score",
                     "followup_status"):
            batch.drop_column(name)
    with op.batch_alter_table("survey_rules") as batch:
        batch.drop_column("resurvey_after_close")
    with op.batch_alter_table("survey_questions") as batch:
        batch.drop_column("detractor_off")
        batch.drop_column("detractor_threshold")
