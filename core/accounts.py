"""The agents' accounts (the ``users`` table): who may sign in, with which role.

Core owns them because core reads them: automatic assignment picks among the active
accounts and keeps each agent's state (``agent_states``) against their username. The
console signs people in with them; it reaches them only through ``Accounts``, a core port,
and keeps its own logins (``console_sessions``) beside itself. Hashing a password and
checking a second-factor code are the console's business: this stores what it decided.

Whatever ends an account's right to its open logins (deactivating it, a new password,
its second factor removed by an operator) tells ``end_logins`` inside the same
transaction, so the adapter holding the logins ends them atomically with the change.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from posventa.core.errors import DomainError
from posventa.core.persistence import Database
from posventa.core.persistence.schema import users
from posventa.core.ports import Clock


class Role(enum.StrEnum):
    AGENT = "agent"
    MANAGER = "manager"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Role.AGENT: 1, Role.MANAGER: 2, Role.ADMIN: 3}


class LastAdmin(DomainError):
    """The change would leave the service without an active admin (nothing was changed)."""


@dataclass(frozen=True, slots=True)
class Account:
    id: int
    username: str
    display_name: str | None
    role: Role
    active: bool
    language: str | None
    timezone: str | None
    #: The argon2 hash and the TOTP secret (None: not enrolled); kept out of repr and logs.
    password_hash: str = field(repr=False)
    totp_secret: str | None = field(repr=False)


def _account(row: Any) -> Account:
    return Account(id=row.id, username=row.username, display_name=row.display_name, role=Role(row.role),
                   active=bool(row.active), language=row.language, timezone=row.timezone,
                   password_hash=row.password_hash, totp_secret=row.totp_secret)


class Unchanged(enum.Enum):
    """A field ``Accounts.update`` leaves as it is (None there means "clear it")."""
    UNCHANGED = "unchanged"


UNCHANGED = Unchanged.UNCHANGED

#: Ends every open login of an account, inside the transaction that revokes them.
EndLogins = Callable[[AsyncConnection, int], Awaitable[None]]


async def _no_logins(_conn: AsyncConnection, _account_id: int) -> None:
    return None


class Accounts:
    def __init__(self, *, db: Database, clock: Clock, end_logins: EndLogins = _no_logins) -> None:
        self._db = db
        self._clock = clock
        self._end_logins = end_logins

    async def create(self, username: str, *, password_hash: str, role: Role,
                     display_name: str | None) -> Account | None:
        """A new active account; None when the username is taken."""
        try:
            async with self._db.transaction() as conn:
                row = (await conn.execute(insert(users).values(
                    username=username, display_name=display_name, password_hash=password_hash, role=role.value,
                    active=True, created_at=self._clock.now()).returning(*users.c))).first()
        except IntegrityError:
            return None
        return _account(row)

    async def get(self, account_id: int) -> Account | None:
        async with self._db.reading() as conn:
            row = (await conn.execute(select(users).where(users.c.id == account_id))).first()
        return None if row is None else _account(row)

    async def by_username(self, username: str) -> Account | None:
        async with self._db.reading() as conn:
            row = (await conn.execute(select(users).where(users.c.username == username))).first()
        return None if row is None else _account(row)

    async def list(self) -> list[Account]:
        async with self._db.reading() as conn:
            return [_account(r) for r in await conn.execute(select(users).order_by(users.c.username))]

    async def update(self, account_id: int, *, role: Role | None = None, active: bool | None = None,
                     display_name: str | None | Unchanged = UNCHANGED) -> Account | None:
        """Change an account (None: no such account). Raises ``LastAdmin``, changing
        nothing, when no active admin would be left."""
        values: dict[str, Any] = {}
        if role is not None:
            values["role"] = role.value
        if active is not None:
            values["active"] = active
        if not isinstance(display_name, Unchanged):
            values["display_name"] = display_name
        async with self._db.transaction() as conn:
            if (await conn.execute(select(users.c.id).where(users.c.id == account_id))).first() is None:
                return None
            await conn.execute(update(users).where(users.c.id == account_id).values(**values))
            admins = (await conn.execute(select(func.count()).select_from(users).where(
                users.c.role == Role.ADMIN.value, users.c.active.is_(True)))).scalar_one()
            if admins == 0:
                # Raising rolls the transaction back: the change never happened.
                raise LastAdmin("this is the last active admin")
            if active is False:
                await self._end_logins(conn, account_id)
            row = (await conn.execute(select(users).where(users.c.id == account_id))).first()
        return _account(row)

    async def set_locale(self, account_id: int, *, language: str | None, timezone: str | None) -> bool:
        return await self._set(account_id, {"language": language, "timezone": timezone}, end_logins=False)

    async def set_password_hash(self, account_id: int, password_hash: str, *, end_logins: bool) -> bool:
        """A new hash: a new password (``end_logins``), or the same one rehashed at login."""
        return await self._set(account_id, {"password_hash": password_hash}, end_logins=end_logins)

    async def set_second_factor(self, account_id: int, secret: str, step: int) -> bool:
        """Enrol ``secret``, its code of time step ``step`` used."""
        return await self._set(account_id, {"totp_secret": secret, "totp_last_step": step}, end_logins=False)

    async def remove_second_factor(self, account_id: int, *, end_logins: bool) -> bool:
        return await self._set(account_id, {"totp_secret": None, "totp_last_step": None}, end_logins=end_logins)

    async def use_second_factor_step(self, account_id: int, secret: str, step: int) -> bool:
        """Spend the code of time step ``step``: True only if no code of that step or a
        later one was accepted before (an UPDATE that moves it forward, so two processes,
        or a replayed code, cannot both use it) and ``secret`` is still the account's."""
        async with self._db.transaction() as conn:
            result = await conn.execute(update(users).where(
                users.c.id == account_id, users.c.totp_secret == secret,
                or_(users.c.totp_last_step.is_(None), users.c.totp_last_step < step)).values(totp_last_step=step))
        return result.rowcount == 1

    async def _set(self, account_id: int, values: dict[str, Any], *, end_logins: bool) -> bool:
        """False: no such account."""
        async with self._db.transaction() as conn:
            result = await conn.execute(update(users).where(users.c.id == account_id).values(**values))
            if result.rowcount == 0:
                return False
            if end_logins:
                await self._end_logins(conn, account_id)
        return True

