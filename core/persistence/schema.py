"""The relational schema, as SQLAlchemy Core tables on one MetaData.

Core tables are defined here; an adapter that alone uses a table defines it beside itself
on the same ``metadata`` (``kb/tables.py``, ``bots/telegram/tables.py``,
``intake/console/tables.py``) so that one Alembic history covers everything. Timestamps are timezone-aware UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy import true as sa_true
from sqlalchemy.types import TypeDecorator

# Named constraints so Alembic can alter them on SQLite (batch mode) and PostgreSQL alike.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# BigInteger primary keys become INTEGER on SQLite so they stay rowid aliases there.
Id = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC in and out, on both databases.

    SQLite has no time zone type and hands back naive values; comparing those with the
    aware ``clock.now()`` would raise, so every value is normalised to aware UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use aware UTC values")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _ts(name: str, **kw) -> Column:
    return Column(name, UTCDateTime(), **kw)


organizations = Table(
    "organizations",
    metadata,
    Column("id", Id, primary_key=True),
    Column("name", String(200), nullable=False),
    #: Superseded by ``organization_domains`` (an organization may list several); the
    #: i19 migration copied its values there. Nothing reads or writes it any more.
    Column("domain", String(253), unique=True),
    _ts("created_at", nullable=False),
    Column("tax_id", String(50)),
    Column("notes", Text),
    #: Set when this organization was merged into another: it is then only a pointer.
    #: A plain id, no foreign key: SQLite can add a column with one only by copying the
    #: table, which its other tables' references forbid (and organizations are never deleted).
    Column("merged_into_id", Id),
    Index("ix_organizations_name", "name"),
)

#: Email domains (lower-case) whose new contacts join the organization.
organization_domains = Table(
    "organization_domains",
    metadata,
    Column("domain", String(253), primary_key=True),
    Column("organization_id", ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False, index=True),
)

contacts = Table(
    "contacts",
    metadata,
    Column("id", Id, primary_key=True),
    Column("name", String(200)),
    Column("email", String(320)),
    Column("phone", String(50)),
    Column("language", String(5)),
    Column("organization_id", ForeignKey("organizations.id", ondelete="SET NULL")),
    _ts("created_at", nullable=False),
    Column("notes", Text),
    #: Custom key/value attributes ({"customer_number": "A-17"}), strings only.
    Column("attributes", JSON),
    #: Set when this contact was merged into another: it is then only a pointer. A plain
    #: id, as ``organizations.merged_into_id`` (a merged contact is never deleted).
    Column("merged_into_id", Id),
    #: Set when a privacy request erased the contact (the row stays, anonymised).
    _ts("erased_at"),
    # Duplicate suggestions: the same typed address or phone, the same name in an organization.
    Index("ix_contacts_email", "email"),
    Index("ix_contacts_phone", "phone"),
    Index("ix_contacts_organization_id_name", "organization_id", "name"),
)

#: Contact search: one row per searchable word of a contact (name words, identity
#: addresses, phones), normalised (lower-case, no accents). A prefix search is then a
#: range scan of the primary key on both databases, whatever the number of contacts.
contact_terms = Table(
    "contact_terms",
    metadata,
    # Byte order ("C") on PostgreSQL: a prefix is then exactly the range [prefix,
    # prefix + U+10FFFF), whatever the database's locale, and comparisons are memcmp.
    Column("term", String(200).with_variant(String(200, collation="C"), "postgresql"), primary_key=True),
    Column("contact_id", ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True),
    # A contact's own terms, without reading the table: a search checks the rarest word's
    # contacts for the other words here.
    Index("ix_contact_terms_contact_id_term", "contact_id", "term"),
)

#: What happened to a contact as a record: merged, erased, identity added or removed.
contact_events = Table(
    "contact_events",
    metadata,
    Column("id", Id, primary_key=True),
    Column("contact_id", ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False, index=True),
    _ts("at", nullable=False),
    #: "agent:<name>", "api", "cli:<user>", "system"
    Column("actor", String(160), nullable=False),
    Column("kind", String(30), nullable=False),
    #: What the entry says, as a message code and the values that fill it
    #: (core.contacts.history): each reader gets it in their own language.
    Column("code", String(60)),
    Column("params", JSON),
    #: Only an entry without a code: a sentence stored before codes, shown as it is.
    Column("detail", Text),
)

contact_identities = Table(
    "contact_identities",
    metadata,
    Column("id", Id, primary_key=True),
    Column("contact_id", ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("channel", String(20), nullable=False),
    #: The address on that channel: email address, Telegram user id, web chat session id.
    Column("address", String(320), nullable=False),
    #: Set when the channel told us this address can never be reached (bot blocked, 5xx).
    Column("unreachable", Boolean, nullable=False, default=False),
    _ts("created_at", nullable=False),
    #: True once the channel itself proved the address (mail came from it, a Telegram
    #: user wrote): such an identity is never moved to another contact but by a merge.
    Column("verified", Boolean, nullable=False, default=True, server_default=sa_true()),
    UniqueConstraint("channel", "address"),
)

categories = Table(
    "categories",
    metadata,
    Column("id", Id, primary_key=True),
    Column("parent_id", ForeignKey("categories.id", ondelete="CASCADE")),
    Column("name", String(120), nullable=False),
    Column("active", Boolean, nullable=False, default=True),
    UniqueConstraint("parent_id", "name"),
)

cases = Table(
    "cases",
    metadata,
    #: The id is the human-friendly case number: unique across processes, never reused.
    Column("id", Id, primary_key=True),
    #: Indexed for the SLA report, which reads the cases opened in a period.
    _ts("created_at", nullable=False, index=True),
    _ts("updated_at", nullable=False),
    Column("organization_id", ForeignKey("organizations.id", ondelete="SET NULL")),
    Column("contact_id", ForeignKey("contacts.id", ondelete="RESTRICT"), nullable=False, index=True),
    Column("category_id", ForeignKey("categories.id", ondelete="SET NULL")),
    Column("subcategory_id", ForeignKey("categories.id", ondelete="SET NULL")),
    Column("case_type", String(20), nullable=False),
    Column("title", String(300), nullable=False),
    Column("description", Text, nullable=False),
    Column("channel", String(20), nullable=False),
    Column("language", String(5), nullable=False),
    Column("sector", String(120)),
    Column("assigned_agent", String(120)),
    Column("activity", String(30), nullable=False, index=True),
    #: This case's own budget mode, set explicitly by an agent, or "process": it follows the
    #: process's ([cases] budget_mode, core/budget.py).
    Column("budget_mode", String(30), nullable=False),
    Column("kb_problem", Text),
    Column("kb_answer", Text),
    Column("kb_hotfix", Text),
    Column("kb_application", Text),
    Column("kb_action", String(10)),
    Column("kb_url", String(1000)),
    #: Unguessable capability in reply addresses (support+<token>@domain).
    Column("reply_token", String(64), nullable=False, unique=True),
    Column("self_served", Boolean, nullable=False, default=False),
    _ts("closed_at"),
    #: Who opened it when nobody wrote in: "survey" for a detractor survey's case; NULL
    #: for a customer's message or an agent's hand-opened case (``channel`` says which).
    Column("origin", String(20)),
    #: The detractor survey this case follows up (issue 22). Unique: one case per survey
    #: instance, whichever process or retry tries to open a second one.
    Column("survey_instance_id", ForeignKey("rule_instances.id", ondelete="SET NULL")),
    Index("uq_cases_survey_instance", "survey_instance_id", unique=True),
    # The SLA clock (core/sla.py owns the rules). ``due_at`` is the nearest target still
    # running, NULL when closed, paused or without targets: the overdue list and the
    # due-sorted inbox read one index.
    Column("sla_policy", String(80)),
    _ts("first_response_due_at"),
    _ts("first_response_at"),
    _ts("next_response_due_at"),
    _ts("resolution_due_at"),
    _ts("sla_paused_at"),
    #: Business minutes spent waiting for the customer: every target moves by as much.
    Column("sla_paused_minutes", Float, nullable=False, default=0.0),
    #: The first target missed, and when it was due.
    Column("sla_breached_target", String(20)),
    _ts("sla_breached_at"),
    _ts("due_at", index=True),
    Column("due_target", String(20)),
    #: The due time the assigned agent was last warned about (the sweep warns once per due time).
    _ts("sla_warned_at"),
    #: Every target missed: ``[{"target": "next_response", "at": "<due time, ISO>"}, …]`` in
    #: order (at most ``core.sla.MAX_BREACHES``); the first is also in the two columns above.
    Column("sla_breaches", JSON),
    #: The due time the sweep last recorded as breached (it records each due time once).
    _ts("sla_breach_seen_at"),
    # How each target ended, for the SLA report (core/sla_report.py): business minutes of
    # the policy's calendar from the opening, less the time waiting for the customer, and
    # whether it was done by its due time (NULL: not done yet, or no such target).
    Column("first_response_minutes", Float),
    Column("first_response_met", Boolean),
    Column("resolution_minutes", Float),
    Column("resolution_met", Boolean),
    # Open cases per agent (automatic assignment's capacity check).
    Index("ix_cases_assigned_agent_activity", "assigned_agent", "activity"),
    #: The closed case this one follows up ("follow-up of #n"): the customer wrote again
    #: after the reopen window (``[cases] reopen_days``).
    #: A plain id, as ``organizations.merged_into_id`` (cases are never deleted).
    Column("follow_up_of", Id, index=True),
)

#: Cases per activity, kept exact by triggers on ``cases`` in the writing transaction itself
#: (migration i20_activity_tally; their names are ``ACTIVITY_TALLY_TRIGGERS``): each insert,
#: delete and change of activity adds rows of +n/-n, never updates one, so writers in
#: several processes never wait on each other. The count of an activity is the sum of its
#: rows; ``core.case_counts`` reads them and folds them into one row each every so often.
case_activity_tally = Table(
    "case_activity_tally",
    metadata,
    Column("id", Id, primary_key=True),
    Column("activity", String(30), nullable=False),
    Column("n", Integer, nullable=False),
)

#: The triggers migration i20_activity_tally puts on ``cases`` (SQLite: one per event, row
#: by row; PostgreSQL: a statement's inserted or deleted rows at once, a row's change of
#: activity). A later SQLite batch migration that rebuilds ``cases`` would drop them
#: silently: tests/core/test_migrations.py checks they are there at the head.
ACTIVITY_TALLY_TRIGGERS = ("cases_tally_insert", "cases_tally_delete", "cases_tally_update")

case_events = Table(
    "case_events",
    metadata,
    Column("id", Id, primary_key=True),
    Column("case_id", ForeignKey("cases.id", ondelete="CASCADE"), nullable=False, index=True),
    _ts("at", nullable=False),
    #: Who did it: "customer", "bot", "system", or "agent:<name>".
    Column("actor", String(160), nullable=False),
    #: opened, activity, type, category, sector, assign, kb_action, reopened, delivery_failed...
    Column("kind", String(30), nullable=False),
    Column("from_value", String(300)),
    Column("to_value", String(300)),
    #: What the entry says beyond its kind and values, as a message code and the values
    #: that fill it (core.case_history): each reader gets it in their own language.
    Column("code", String(60)),
    Column("params", JSON),
    #: Only an entry without a code: a sentence stored before codes, or data (a KB URL).
    Column("detail", Text),
)

budget_lines = Table(
    "budget_lines",
    metadata,
    Column("id", Id, primary_key=True),
    Column("case_id", ForeignKey("cases.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("position", Integer, nullable=False),
    Column("product", String(200), nullable=False),
    Column("quantity", Numeric(14, 3)),
    Column("unit_amount", Numeric(14, 2)),
)

messages = Table(
    "messages",
    metadata,
    Column("id", Id, primary_key=True),
    Column("case_id", ForeignKey("cases.id", ondelete="CASCADE"), index=True),
    Column("contact_id", ForeignKey("contacts.id", ondelete="SET NULL"), index=True),
    #: For inbound: the sender's identity; for outbound: the recipient's.
    Column("identity_id", ForeignKey("contact_identities.id", ondelete="SET NULL"), index=True),
    Column("channel", String(20), nullable=False),
    Column("direction", String(3), nullable=False),
    Column("author", String(10), nullable=False),
    Column("author_name", String(200)),
    #: The transport's id: email Message-ID (ours for outbound), Telegram chat:message, web chat client UUID.
    Column("external_id", String(500)),
    Column("text", Text, nullable=False),
    #: Structured extras shown with the text: suggestions, choices, the survey question id.
    Column("extra", JSON),
    Column("raw_path", String(500)),
    _ts("created_at", nullable=False),
    _ts("edited_at"),
    UniqueConstraint("channel", "direction", "external_id"),
)

message_edits = Table(
    "message_edits",
    metadata,
    Column("id", Id, primary_key=True),
    Column("message_id", ForeignKey("messages.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("previous_text", Text, nullable=False),
    _ts("at", nullable=False),
)

attachments = Table(
    "attachments",
    metadata,
    Column("id", Id, primary_key=True),
    Column("message_id", ForeignKey("messages.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("filename", String(300), nullable=False),
    Column("content_type", String(200), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("inline", Boolean, nullable=False, default=False),
)

# Images an agent put into a case's KB Problem/Answer (the Markdown editor): the file is
# in the attachment store like any attachment; discourse_url is where publishing put it.
kb_images = Table(
    "kb_images",
    metadata,
    Column("id", Id, primary_key=True),
    Column("case_id", ForeignKey("cases.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("filename", String(300), nullable=False),
    Column("content_type", String(200), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("created_by", String(120), nullable=False),
    _ts("created_at", nullable=False),
    Column("discourse_url", String(1000)),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", Id, primary_key=True),
    Column("channel", String(20), nullable=False),
    Column("recipient", String(320), nullable=False),
    #: ack, reply, bot, suggestions, survey, desk, kb_publish...
    Column("kind", String(20), nullable=False),
    Column("status", String(20), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("max_attempts", Integer, nullable=False),
    _ts("next_attempt_at", nullable=False),
    _ts("lease_until"),
    Column("last_error", Text),
    Column("case_id", ForeignKey("cases.id", ondelete="SET NULL"), index=True),
    Column("message_id", ForeignKey("messages.id", ondelete="SET NULL")),
    #: The ClaimedDelivery fields, as JSON (text, choices, threading headers...).
    Column("payload", JSON, nullable=False),
    Column("external_id", String(300)),
    _ts("created_at", nullable=False),
    _ts("sent_at"),
    Index("ix_outbox_claim", "channel", "status", "next_attempt_at"),
)

# case_links (the Telegram forum topic and header card of a case) is the Telegram
# adapter's own table: bots/telegram/tables.py.

#: At-least-once transports' dedupe: an event id stored before it is acknowledged upstream.
processed_events = Table(
    "processed_events",
    metadata,
    Column("source", String(40), primary_key=True),
    Column("event_id", String(200), primary_key=True),
    _ts("at", nullable=False),
)

case_suggestions = Table(
    "case_suggestions",
    metadata,
    Column("id", Id, primary_key=True),
    Column("case_id", ForeignKey("cases.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("article_id", String(100), nullable=False),
    Column("title", String(300), nullable=False),
    Column("url", String(1000), nullable=False),
    Column("score", Float, nullable=False),
    Column("rank", Integer, nullable=False),
    #: None until the customer answers "did this solve it?": "yes" / "no".
    Column("feedback", String(5)),
    _ts("created_at", nullable=False),
)

webchat_sessions = Table(
    "webchat_sessions",
    metadata,
    Column("id", Id, primary_key=True),
    #: Public id: the identity address for the web chat channel.
    Column("public_id", String(40), nullable=False, unique=True),
    #: sha256 of the bearer token the browser keeps; the token itself is never stored.
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("contact_id", ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False),
    Column("language", String(5)),
    Column("name", String(200)),
    Column("email", String(320)),
    _ts("created_at", nullable=False),
    _ts("last_seen_at", nullable=False),
)

users = Table(
    "users",
    metadata,
    Column("id", Id, primary_key=True),
    Column("username", String(80), nullable=False, unique=True),
    Column("display_name", String(200)),
    Column("password_hash", String(300), nullable=False),
    #: agent, manager, admin
    Column("role", String(10), nullable=False),
    Column("active", Boolean, nullable=False, default=True),
    _ts("created_at", nullable=False),
    #: TOTP second factor (RFC 6238, base32); NULL until the user enrols one.
    Column("totp_secret", String(64)),
    #: The time step of the last code accepted: each code works once.
    Column("totp_last_step", BigInteger),
    #: The console's language (es, pt, en) and IANA time zone the user chose; NULL: the
    #: browser's Accept-Language and the service's time zone.
    Column("language", String(5)),
    Column("timezone", String(64)),
)

#: Automatic assignment (core/assignment.py): each agent's capacity, sectors and
#: availability. A row is created the first time an agent is seen or edited.
#: Business-hours calendars an admin edited in the console: each replaces config's calendar
#: of that name, or adds one (core/calendars.py). ``definition`` holds the config's fields.
calendar_overrides = Table(
    "calendar_overrides",
    metadata,
    Column("name", String(80), primary_key=True),
    Column("definition", JSON, nullable=False),
    _ts("updated_at", nullable=False),
    Column("updated_by", String(120)),
)

agent_states = Table(
    "agent_states",
    metadata,
    Column("username", String(80), ForeignKey("users.username", ondelete="CASCADE"), primary_key=True),
    #: Open cases at most; NULL = ``[assignment] default_capacity``.
    Column("capacity", Integer),
    #: Comma-separated sector names the agent takes derived cases of.
    Column("sectors", String(2000), nullable=False, default=""),
    #: Said /available on the Telegram desk (until /away).
    Column("available", Boolean, nullable=False, default=False),
    #: Last presence report of an open console page.
    _ts("console_seen_at"),
    _ts("away_since"),
    _ts("last_assigned_at"),
    Column("telegram_user_id", BigInteger, unique=True),
    #: Where the agent's email notifications go.
    Column("email", String(320)),
    #: Notification preferences per event and channel (core/notifications.py); NULL = defaults.
    Column("notify", JSON),
)

# console_sessions (who is signed in to the console) is the console's own table:
# intake/console/tables.py. The accounts it points at, ``users``, are core's (core/accounts.py).

# --- post-sale surveys -------------------------------------------------------------------

survey_questions = Table(
    "survey_questions",
    metadata,
    Column("id", Id, primary_key=True),
    Column("code", String(80), nullable=False, unique=True),
    Column("text_es", Text, nullable=False),
    Column("text_pt", Text, nullable=False),
    Column("text_en", Text, nullable=False),
    #: "1-5", "0-10", "yes/no"...
    Column("scale", String(20), nullable=False),
    #: {"<score>": weight in -100..100} for every possible score.
    Column("weights", JSON, nullable=False),
    #: An answer weighing this or less is a detractor answer; NULL: [surveys] detractor_weight.
    Column("detractor_threshold", Integer),
    #: True: this question never makes a detractor (whatever the threshold).
    Column("detractor_off", Boolean, nullable=False, server_default=false()),
)

survey_rules = Table(
    "survey_rules",
    metadata,
    Column("id", Id, primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("start_after_days", Integer, nullable=False),
    Column("expires_after_days", Integer, nullable=False),
    Column("note", Text),
    #: When a detractor case of this rule closes, ask "was your problem solved?".
    Column("resurvey_after_close", Boolean, nullable=False, server_default=false()),
)

survey_rule_questions = Table(
    "survey_rule_questions",
    metadata,
    Column("rule_id", ForeignKey("survey_rules.id", ondelete="CASCADE"), primary_key=True),
    Column("question_id", ForeignKey("survey_questions.id", ondelete="CASCADE"), primary_key=True),
    Column("position", Integer, nullable=False),
)

survey_rule_operators = Table(
    "survey_rule_operators",
    metadata,
    Column("rule_id", ForeignKey("survey_rules.id", ondelete="CASCADE"), primary_key=True),
    Column("operator", String(120), primary_key=True),
    Index("ix_survey_rule_operators_operator", "operator"),
)

survey_profiles = Table(
    "survey_profiles",
    metadata,
    Column("id", Id, primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("notes", Text),
)

survey_profile_rules = Table(
    "survey_profile_rules",
    metadata,
    Column("profile_id", ForeignKey("survey_profiles.id", ondelete="CASCADE"), primary_key=True),
    Column("rule_id", ForeignKey("survey_rules.id", ondelete="CASCADE"), primary_key=True),
)

products = Table(
    "products",
    metadata,
    Column("id", Id, primary_key=True),
    Column("code", String(80), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
    Column("profile_id", ForeignKey("survey_profiles.id", ondelete="SET NULL")),
)

sales = Table(
    "sales",
    metadata,
    Column("id", Id, primary_key=True),
    Column("external_id", String(120), nullable=False, unique=True),
    Column("contact_id", ForeignKey("contacts.id", ondelete="RESTRICT"), nullable=False, index=True),
    Column("product_id", ForeignKey("products.id", ondelete="RESTRICT"), nullable=False),
    Column("seller", String(120), nullable=False, index=True),
    _ts("closed_at", nullable=False, index=True),
    _ts("created_at", nullable=False),
    Index("ix_sales_product_id", "product_id"),
)

rule_instances = Table(
    "rule_instances",
    metadata,
    Column("id", Id, primary_key=True),
    Column("sale_id", ForeignKey("sales.id", ondelete="CASCADE"), nullable=False),
    Column("rule_id", ForeignKey("survey_rules.id", ondelete="CASCADE"), nullable=False),
    Column("contact_id", ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False),
    _ts("window_start", nullable=False),
    _ts("window_end", nullable=False),
    #: pending (window not open), open (asked), executed, expired, paused
    Column("status", String(12), nullable=False),
    Column("channel", String(20)),
    Column("current_position", Integer, nullable=False, default=0),
    Column("invalid_answers", Integer, nullable=False, default=0),
    _ts("opened_at"),
    _ts("last_asked_at"),
    _ts("reminded_at"),
    _ts("executed_at"),
    Column("executed_by", String(120)),
    #: Sum of the answers' weights.
    Column("total_score", Float),
    #: total_score / number of answers: always within -100..100, comparable across rules.
    Column("normalized_score", Float),
    #: The language the survey is asked in (es/pt/en), fixed when it opens.
    Column("language", String(5)),
    #: The follow-up after a detractor case closed (resurvey_after_close): asked, answered.
    #: Its weight is kept apart: total_score (commission) is never rewritten.
    Column("followup_status", String(12)),
    Column("followup_score", String(20)),
    Column("followup_weight", Integer),
    _ts("followup_asked_at"),
    _ts("followup_answered_at"),
    UniqueConstraint("sale_id", "rule_id"),
    # The scheduler: due pending windows, and windows to expire.
    Index("ix_rule_instances_status_window", "status", "window_start"),
    Index("ix_rule_instances_status_window_end", "status", "window_end"),
    Index("ix_rule_instances_contact_status", "contact_id", "status"),
    # The manager panel: an operator's rules, by status, by window.
    Index("ix_rule_instances_rule_status_window", "rule_id", "status", "window_end", "window_start"),
)

survey_answers = Table(
    "survey_answers",
    metadata,
    Column("id", Id, primary_key=True),
    Column("instance_id", ForeignKey("rule_instances.id", ondelete="CASCADE"), nullable=False),
    Column("question_id", ForeignKey("survey_questions.id", ondelete="RESTRICT"), nullable=False),
    Column("score", String(20), nullable=False),
    Column("weight", Integer, nullable=False),
    _ts("answered_at", nullable=False),
    #: "customer" for chat answers, "operator:<name>" for answers an operator recorded.
    Column("answered_by", String(120), nullable=False),
    UniqueConstraint("instance_id", "question_id"),
)

#: Canned responses (core/macros.py).
macros = Table(
    "macros",
    metadata,
    Column("id", Id, primary_key=True),
    Column("name", String(120), nullable=False),
    #: "" for a macro shared with the team, else the username of the agent it belongs to
    #: (not NULL: a unique key with NULL in it would not stop two shared macros of one name).
    Column("owner", String(80), nullable=False),
    Column("body_es", Text),
    Column("body_pt", Text),
    Column("body_en", Text),
    #: {"type", "category_id", "subcategory_id", "activity", "sector", "note"}, each optional.
    Column("actions", JSON, nullable=False),
    Column("usage_count", Integer, nullable=False, default=0),
    _ts("created_at", nullable=False),
    _ts("updated_at", nullable=False),
    UniqueConstraint("owner", "name"),
)

# --- full-text search ----------------------------------------------------------------------

#: What migration i21_fulltext makes and SQLAlchemy cannot declare: the FTS5 tables (with
#: their shadow tables, ``<name>_data``...) on SQLite, and on PostgreSQL the ``search_vector``
#: column with its GIN index on each searched table. core/search.py queries them.
FULLTEXT_TABLES = ("cases_fts", "messages_fts", "contacts_fts", "identities_fts")
FULLTEXT_COLUMN = "search_vector"


def is_fulltext_object(name: str | None, type_: str) -> bool:
    """Whether a reflected object belongs to full-text search (for Alembic's comparison)."""
    if name is None:
        return False
    if type_ == "table":
        return any(name == t or name.startswith(t + "_") for t in FULLTEXT_TABLES)
    return name == FULLTEXT_COLUMN or name.endswith("_" + FULLTEXT_COLUMN)
