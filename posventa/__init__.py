"""posventa: a post-sale customer-support desk.

One import namespace for the whole service. The repository keeps its top-level folders and
``pip install`` maps them under this package (pyproject.toml's ``package-dir``):

=====================  ==========================================================
``posventa.core``      the domain: cases, contacts, SLAs, surveys, outbox, persistence
``posventa.intake``    the HTTP doors: email (SMTP), web chat, console, API
``posventa.bots``      the Telegram bot (customers and the agents' desk)
``posventa.kb``        the Discourse knowledge base: sync, index, suggestions
``posventa.migrations``  Alembic migrations for SQLite and PostgreSQL
``posventa.service``   the composition root: builds and wires every component
``posventa.cli``       the ``posventa`` command
=====================  ==========================================================
"""
