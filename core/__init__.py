"""posventa's core: the domain and its application services. Imports no transport.

Adapters (``bots/``, ``intake/``, ``kb/``) reach core through the names below and the
protocols of ``core.ports``, never through ``core.persistence`` (its schema, engine and
lookup helpers): tests/core/test_architecture_ports.py enforces it. The composition
root (``posventa/service.py``, ``posventa/cli.py``) is the one place outside core that wires persistence.

- ``Database``: the connection an adapter uses for the tables it owns (``kb/tables.py``,
  ``bots/telegram/tables.py``, ``intake/console/tables.py``), and hands to core ports;
- ``metadata``, ``Id``, ``UTCDateTime``: so an adapter's own tables join the one schema
  that Alembic migrates;
- ports: ``EventLedger`` (what an at-least-once transport already handled),
  ``CaseLookup`` (a customer's identity and cases, read-only), ``Accounts`` (the agents'
  accounts the console signs in with), ``ReadModels`` (what pages and charts show as
  it is), ``ChatSessions`` and ``ChatHistory`` (the web chat's visitors and their
  conversation), and the protocols of ``core.ports`` (``Notifier`` among them).
"""

from posventa.core.accounts import Account, Accounts
from posventa.core.case_lookup import CaseLine, CaseLookup
from posventa.core.chat_history import ChatHistory
from posventa.core.chat_sessions import ChatSessions
from posventa.core.event_ledger import EventLedger
from posventa.core.persistence.database import Database
from posventa.core.persistence.schema import Id, UTCDateTime, metadata
from posventa.core.read_models import ReadModels

__all__ = ["Account", "Accounts", "CaseLine", "CaseLookup", "ChatHistory", "ChatSessions", "Database", "EventLedger",
           "Id", "ReadModels", "UTCDateTime", "metadata"]
