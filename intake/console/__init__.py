"""The agents' console and the managers' panel, served at ``/console/``.

Server-rendered pages (aiohttp-jinja2, autoescaped) with light progressive JavaScript,
database sessions, CSRF tokens on every form, and roles: agent < manager < admin.

It reaches core through ports only: the agents' accounts (``core.accounts``), the
services, ``core.read_models`` for what its charts and pages show as it is; its own table,
``console_sessions``, is in ``intake/console/tables.py``.
"""

from posventa.intake.console.app import PREFIX, Console
from posventa.intake.console.auth import LoginThrottle, Passwords, Role, SessionStore, User, UserStore
from posventa.intake.console.live import LiveUpdates

__all__ = ["PREFIX", "Console", "LiveUpdates", "LoginThrottle", "Passwords", "Role", "SessionStore", "User",
           "UserStore"]
