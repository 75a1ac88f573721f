"""The agents' console and the managers' panel, served at ``/console/``.

Server-rendered pages (aiohttp-jinja2, autoescaped) with light progressive JavaScript,
database sessions, CSRF tokens on every form, and roles: agent < manager < admin.
"""

from posventa.intake.console.app import PREFIX, Console
from posventa.intake.console.auth import LoginThrottle, Passwords, Role, SessionStore, User, UserStore
from posventa.intake.console.live import LiveUpdates

__all__ = ["PREFIX", "Console", "LiveUpdates", "LoginThrottle", "Passwords", "Role", "SessionStore", "User",
           "UserStore"]
