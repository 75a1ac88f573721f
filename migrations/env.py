"""Alembic environment. Migrations run on a connection handed in by posventa
(``config.attributes["connection"]``), so they share the service's engine and driver."""

from alembic import context

from posventa.core.persistence.schema import UTCDateTime, is_fulltext_object, metadata
import posventa.bots.telegram.tables  # noqa: F401  (the Telegram adapter's case_links, on the same MetaData)
import posventa.kb.tables  # noqa: F401  (registers kb's cache tables on the same MetaData)
import posventa.intake.console.tables  # noqa: F401  (the console's console_sessions, on the same MetaData)

config = context.config


def _render_item(type_, obj, autogen_context):
    # Our UTCDateTime is a TypeDecorator over DateTime(timezone=True); the migration only
    # needs the column type.
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def _run(connection) -> None:
    context.configure(
        connection=connection,
        render_item=_render_item,
        target_metadata=metadata,
        render_as_batch=True,  # SQLite can only ALTER through table copies
        compare_type=True,
        # The engines' full-text objects are made by hand in i21_fulltext, not declared.
        include_name=lambda name, type_, _parents: not is_fulltext_object(name, type_),
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `posventa db upgrade`, which provides the connection")
_run(connection)
