"""Console users, their passwords, their sessions, and the brake on guessing passwords.

Users are core's accounts (``core.accounts``: the ``users`` table, which assignment reads
too), stored with an argon2id hash (argon2-cffi, RFC 9106 defaults) that this module makes
and checks. Sessions are the console's own (``console_sessions``, ``intake/console/tables.py``)
so that any ``posventa serve`` process can serve the next request; the browser holds a random
token and the database only its sha256. Whatever revokes an account's logins in core
(deactivation, a new password, a second factor removed) ends its sessions in the same
transaction (``end_sessions``). Hashing runs in a thread: argon2 is deliberately slow (tens
of milliseconds) and must not stall every other customer on the event loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import math
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pyotp
import segno
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from prometheus_client import CollectorRegistry, Counter
from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from posventa.core import Database
from posventa.core.accounts import Account, Accounts, LastAdmin, Role
from posventa.core.errors import NotFound, ValidationError
from posventa.core.ports import Clock
from posventa.intake.console.i18n import LANGUAGES as CONSOLE_LANGUAGES
from posventa.intake.console.i18n import _l
from posventa.intake.console.tables import console_sessions

log = logging.getLogger(__name__)

USERNAME_RE = re.compile(r"[a-z0-9][a-z0-9._@-]{1,79}")
MIN_PASSWORD = 10
#: argon2 cost grows with the input; a megabyte "password" is an attack, not a password.
MAX_PASSWORD = 1024


@dataclass(frozen=True, slots=True)
class User:
    id: int
    username: str
    display_name: str | None
    role: Role
    active: bool
    #: Enrolled in the TOTP second factor: logging in also takes a code.
    totp: bool = False
    #: The console's language and time zone the user chose on their profile; None: the
    #: browser's Accept-Language, and the service's time zone.
    language: str | None = None
    timezone: str | None = None

    @property
    def label(self) -> str:
        return self.display_name or self.username

    def can(self, role: Role | str) -> bool:
        """Roles nest: a manager can do what an agent can, an admin everything."""
        return self.active and self.role.rank >= Role(role).rank


@dataclass(frozen=True, slots=True)
class Session:
    id: int
    user: User
    csrf_token: str


def _user(account: Account) -> User:
    return User(id=account.id, username=account.username, display_name=account.display_name, role=account.role,
                active=account.active, totp=account.totp_secret is not None, language=account.language,
                timezone=account.timezone)


def check_username(username: Any) -> str:
    if not isinstance(username, str) or not USERNAME_RE.fullmatch(username.strip().lower()):
        raise ValidationError(_l("2-80 characters: lower-case letters, digits and . _ @ -"), field="username")
    return username.strip().lower()


def check_password(password: Any) -> str:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise ValidationError(_l("use at least %(min)d characters", min=MIN_PASSWORD), field="password")
    if len(password) > MAX_PASSWORD:
        raise ValidationError(_l("use at most %(max)d characters", max=MAX_PASSWORD), field="password")
    return password


def check_role(role: Any) -> Role:
    try:
        return Role(role)
    except ValueError:
        raise ValidationError(_l("must be agent, manager or admin"), field="role") from None


def default_hasher() -> PasswordHasher:
    """argon2id at OWASP's recommended floor (19 MiB, 2 passes, 1 lane).

    RFC 9106's 64 MiB x 4 lanes costs about half a second per login on a small 2-core
    server, and a login storm would then starve the event loop's thread pool; this is
    about a tenth of that and still far beyond GPU-friendly. Stored hashes carry their
    parameters, and ``check_needs_rehash`` upgrades them at the next login if this changes.
    """
    return PasswordHasher(time_cost=2, memory_cost=19_456, parallelism=1)


class Passwords:
    """argon2id hashing off the event loop."""

    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self._hasher = hasher or default_hasher()
        self._dummy: str | None = None

    def _dummy_hash(self) -> str:
        # Verifying against this when the user does not exist makes "no such user" take
        # as long as "wrong password", so timing does not reveal which usernames exist.
        if self._dummy is None:
            self._dummy = self._hasher.hash(secrets.token_urlsafe(16))
        return self._dummy

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, stored_hash: str | None, password: str) -> tuple[bool, bool]:
        """(matches, needs_rehash)."""
        def run() -> tuple[bool, bool]:
            try:
                self._hasher.verify(stored_hash or self._dummy_hash(), password)
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                return False, False
            return stored_hash is not None, stored_hash is not None and self._hasher.check_needs_rehash(stored_hash)

        return await asyncio.to_thread(run)


async def end_sessions(conn: AsyncConnection, user_id: int) -> None:
    """Every console session of ``user_id`` ends (core's ``EndLogins``, in its transaction)."""
    await conn.execute(delete(console_sessions).where(console_sessions.c.user_id == user_id))


def accounts_for(db: Database, clock: Clock) -> Accounts:
    """Core's accounts, wired to end the console's sessions when an account's logins are revoked."""
    return Accounts(db=db, clock=clock, end_logins=end_sessions)


class UserStore:
    def __init__(self, *, db: Database, clock: Clock, passwords: Passwords) -> None:
        self._accounts = accounts_for(db, clock)
        self._passwords = passwords

    async def create(self, username: str, password: str, *, role: Role | str,
                     display_name: str | None = None) -> User:
        name = check_username(username)
        check_password(password)
        user_role = check_role(role)
        display = (display_name or "").strip()[:200] or None
        hashed = await self._passwords.hash(password)
        account = await self._accounts.create(name, password_hash=hashed, role=user_role, display_name=display)
        if account is None:
            raise ValidationError(_l("user %(user)s already exists", user=repr(name)), field="username")
        return _user(account)

    async def authenticate(self, username: str, password: str) -> User | None:
        """The active user with this password, or None. Same cost either way."""
        if not isinstance(password, str) or len(password) > MAX_PASSWORD:
            return None
        name = (username or "").strip().lower()[:80]
        account = await self._accounts.by_username(name)
        ok, rehash = await self._passwords.verify(account.password_hash if account else None, password)
        if not ok or account is None or not account.active:
            return None
        if rehash:
            await self._accounts.set_password_hash(account.id, await self._passwords.hash(password), end_logins=False)
        return _user(account)

    async def get(self, user_id: int) -> User:
        account = await self._accounts.get(user_id)
        if account is None:
            raise NotFound(_l("user %(user)s not found", user=user_id))
        return _user(account)

    async def by_username(self, username: str) -> User:
        account = await self._accounts.by_username((username or "").lower())
        if account is None:
            raise NotFound(_l("user %(user)s not found", user=repr(username)))
        return _user(account)

    async def list(self) -> list[User]:
        return [_user(a) for a in await self._accounts.list()]

    async def update(self, user_id: int, *, role: Role | str | None = None, active: bool | None = None,
                     display_name: str | None = None) -> User:
        """Change a user; refuses to leave the service without an active admin."""
        changes: dict[str, Any] = {}
        if role is not None:
            changes["role"] = check_role(role)
        if active is not None:
            changes["active"] = bool(active)
        if display_name is not None:
            changes["display_name"] = display_name.strip()[:200] or None
        try:
            account = await self._accounts.update(user_id, **changes)
        except LastAdmin:
            raise ValidationError(_l("this is the last active admin; make another admin first"),
                                  field="role" if role is not None else "active") from None
        if account is None:
            raise NotFound(_l("user %(user)s not found", user=user_id))
        return _user(account)

    async def set_locale(self, user_id: int, *, language: str | None, timezone: str | None) -> None:
        """The console language and time zone on the user's profile (None: automatic)."""
        if language is not None and language not in CONSOLE_LANGUAGES:
            raise ValidationError(_l("language must be one of %(languages)s", languages=", ".join(CONSOLE_LANGUAGES)),
                                  field="language")
        if timezone is not None:
            try:
                ZoneInfo(timezone)
            except (KeyError, ValueError):
                raise ValidationError(_l("timezone must be an IANA time zone such as America/Sao_Paulo"),
                                      field="timezone") from None
        if not await self._accounts.set_locale(user_id, language=language, timezone=timezone):
            raise NotFound(_l("user %(user)s not found", user=user_id))

    async def set_password(self, user_id: int, password: str) -> None:
        """New password; every session of that user ends (a stolen cookie dies with it)."""
        check_password(password)
        hashed = await self._passwords.hash(password)
        if not await self._accounts.set_password_hash(user_id, hashed, end_logins=True):
            raise NotFound(_l("user %(user)s not found", user=user_id))

    async def remove_second_factor(self, user_id: int, *, end_sessions: bool) -> None:
        """Back to password only: the user removing it, or an operator for a lost phone
        (whose sessions then end, in case the phone went with an open one)."""
        if not await self._accounts.remove_second_factor(user_id, end_logins=end_sessions):
            raise NotFound(_l("user %(user)s not found", user=user_id))


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


class SessionStore:
    """Database sessions with an idle timeout and an absolute lifetime."""

    #: Writing last_seen on every request would make each page view a write; a minute's
    #: precision is plenty for an idle timeout measured in hours.
    TOUCH_EVERY = timedelta(minutes=1)

    def __init__(self, *, db: Database, clock: Clock, idle: timedelta = timedelta(hours=8),
                 absolute: timedelta = timedelta(days=7)) -> None:
        self._db = db
        self._clock = clock
        self._accounts = accounts_for(db, clock)
        self.idle = idle
        self.absolute = absolute

    async def create(self, user: User) -> tuple[str, Session]:
        token = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        now = self._clock.now()
        async with self._db.transaction() as conn:
            # Housekeeping on login rather than on a timer: logins are rare and every
            # process does them, so expired rows never pile up.
            await conn.execute(delete(console_sessions).where(console_sessions.c.expires_at < now))
            sid = (await conn.execute(insert(console_sessions).values(
                token_hash=token_hash(token), user_id=user.id, csrf_token=csrf, created_at=now, last_seen_at=now,
                expires_at=min(now + self.idle, now + self.absolute)).returning(console_sessions.c.id))).scalar_one()
        return token, Session(id=sid, user=user, csrf_token=csrf)

    async def resolve(self, token: str | None) -> Session | None:
        if not token or len(token) > 200:
            return None
        now = self._clock.now()
        async with self._db.reading() as conn:
            row = (await conn.execute(select(console_sessions).where(
                console_sessions.c.token_hash == token_hash(token)))).first()
        if row is None or row.expires_at <= now:
            return None
        account = await self._accounts.get(row.user_id)
        if account is None or not account.active:
            return None
        if now - row.last_seen_at >= self.TOUCH_EVERY:
            async with self._db.transaction() as conn:
                await conn.execute(update(console_sessions).where(console_sessions.c.id == row.id).values(
                    last_seen_at=now, expires_at=min(now + self.idle, row.created_at + self.absolute)))
        return Session(id=row.id, user=_user(account), csrf_token=row.csrf_token)

    async def delete(self, token: str | None) -> None:
        if not token:
            return
        async with self._db.transaction() as conn:
            await conn.execute(delete(console_sessions).where(console_sessions.c.token_hash == token_hash(token)))


def csrf_matches(expected: str, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(expected.encode(), (given or "").encode("utf-8", "replace"))


@dataclass(slots=True)
class _Failures:
    count: int
    last: float


class LoginThrottle:
    """Failed logins per (account, client address) and per client address, each with a
    delay that doubles with every failure past a free allowance.

    There is no brake on an account as a whole: that let one stranger lock a whole team
    out. A correct password from an address that has not been failing is always let in;
    a guesser spread over many addresses meets each address's own brake and
    ``MIN_PASSWORD`` characters. Failures are forgotten ``forget_after`` seconds after
    the last one, and a success from an address clears that address's brake on that
    account (not the address's own, or a guesser with one real account could reset it).

    In-process on purpose: a login storm needs a cheap answer before any database work.
    With N processes an attacker gets at most N times the budget. Memory is bounded: the
    least recently failing keys are forgotten first.
    """

    def __init__(self, *, free_per_account: int = 3, free_per_address: int = 10, first_delay: float = 1.0,
                 max_delay: float = 900.0, forget_after: float = 3600.0, max_keys: int = 10_000,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.free_per_account = free_per_account
        self.free_per_address = free_per_address
        self.first_delay = first_delay
        self.max_delay = max_delay
        self.forget_after = max(forget_after, max_delay)
        self._max_keys = max_keys
        self._now = monotonic
        self._failures: OrderedDict[tuple[str, ...], _Failures] = OrderedDict()

    def retry_after(self, address: str, username: str) -> float:
        """Seconds until a login attempt is allowed again (0: allowed now)."""
        now = self._now()
        return max(self._wait(self._pair(address, username), self.free_per_account, now),
                   self._wait(("a", address), self.free_per_address, now))

    def failed(self, address: str, username: str) -> float:
        """Count a failure; returns the wait it imposes (0 while within the allowance)."""
        now = self._now()
        for key in (self._pair(address, username), ("a", address)):
            entry = self._failures.pop(key, None)
            if entry is None or now - entry.last >= self.forget_after:
                entry = _Failures(0, now)
            entry.count += 1
            entry.last = now
            self._failures[key] = entry
        while len(self._failures) > self._max_keys:
            self._failures.popitem(last=False)
        return self.retry_after(address, username)

    def succeeded(self, address: str, username: str) -> None:
        self._failures.pop(self._pair(address, username), None)

    @staticmethod
    def _pair(address: str, username: str) -> tuple[str, ...]:
        return ("u", address, (username or "").strip().lower()[:80])

    def delay(self, failures: int, free: int) -> float:
        """The wait after ``failures`` failures: none within ``free``, then 1, 2, 4... seconds."""
        if failures < free:
            return 0.0
        return min(self.max_delay, self.first_delay * 2.0 ** min(failures - free, 64))

    def _wait(self, key: tuple[str, ...], free: int, now: float) -> float:
        entry = self._failures.get(key)
        if entry is None:
            return 0.0
        if now - entry.last >= self.forget_after:
            del self._failures[key]
            return 0.0
        return max(0.0, entry.last + self.delay(entry.count, free) - now)


class LoginAudit:
    """Each login outcome as one log line (account and client address) and a count in
    ``/metrics``, so an operator sees a guessing run and whom it aims at."""

    def __init__(self, *, registry: CollectorRegistry | None = None) -> None:
        # registry=None: counted but not exported (a console built without a service).
        self._logins = Counter("posventa_console_logins", "Console login attempts by outcome", ["outcome"],
                               registry=registry)
        self._lockouts = Counter("posventa_console_lockouts",
                                 "Failed console logins that put a delay on an address or an account from it",
                                 registry=registry)
        for outcome in ("success", "failure", "throttled"):
            self._logins.labels(outcome)

    def succeeded(self, username: str, address: str) -> None:
        self._logins.labels("success").inc()
        log.info("console login: account %r from %s", _account(username), address)

    def failed(self, username: str, address: str, *, wait: float) -> None:
        self._logins.labels("failure").inc()
        log.warning("console login failed: account %r from %s", _account(username), address)
        if wait > 0:
            self._lockouts.inc()
            log.warning("console login locked: account %r from %s for %d s", _account(username), address,
                        math.ceil(wait))

    def refused(self, username: str, address: str, *, wait: float) -> None:
        self._logins.labels("throttled").inc()
        log.info("console login refused while locked: account %r from %s, %d s left", _account(username), address,
                 math.ceil(wait))


def _account(username: str) -> str:
    return (username or "").strip().lower()[:80]


#: Codes one step (30 s) either side of now are accepted: phone clocks drift.
TOTP_VALID_WINDOW = 1
TOTP_CODE_RE = re.compile(r"[0-9]{6}")


class SecondFactor:
    """TOTP (RFC 6238, pyotp) as a second factor for console users.

    Each code is good once: the step of the last accepted code is stored, and a code is
    accepted only with an UPDATE that moves it forward, so two processes (or a replay of a
    code seen in a proxy log) cannot both use it. The QR code for enrolment is drawn on the
    server (segno) as inline SVG: no third party sees the secret, no script is needed.
    """

    def __init__(self, *, db: Database, clock: Clock, issuer: str) -> None:
        self._accounts = accounts_for(db, clock)
        self._clock = clock
        self._issuer = issuer

    @staticmethod
    def new_secret() -> str:
        return pyotp.random_base32()  # 32 base32 characters: 160 bits, RFC 4226's recommendation

    def enrolment_uri(self, secret: str, username: str) -> str:
        return pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name=self._issuer)

    @staticmethod
    def qr_svg(uri: str) -> str:
        """The otpauth URI as an inline <svg> (no XML declaration, sized by CSS)."""
        return segno.make(uri, error="m").svg_inline(scale=4, border=2, dark="#000", light="#fff", title=None)

    def _step(self, secret: str, code: str) -> int | None:
        """The time step ``code`` belongs to, within the window around now, or None."""
        if not isinstance(code, str) or not TOTP_CODE_RE.fullmatch(code.strip()):
            return None
        totp = pyotp.TOTP(secret)
        now = totp.timecode(self._clock.now())
        match = None
        for step in range(now - TOTP_VALID_WINDOW, now + TOTP_VALID_WINDOW + 1):
            # Every candidate is compared (no early exit): the time taken says nothing.
            if hmac.compare_digest(totp.generate_otp(step), code.strip()):
                match = step
        return match

    async def enrol(self, user_id: int, secret: str, code: str) -> bool:
        """Store ``secret`` for the user once they prove their app has it (a current code)."""
        if not isinstance(secret, str) or not re.fullmatch(r"[A-Z2-7]{32}", secret):
            raise ValidationError(_l("the enrolment expired; start again"), field="secret")
        step = self._step(secret, code)
        if step is None:
            return False
        if not await self._accounts.set_second_factor(user_id, secret, step):
            raise NotFound(_l("user %(user)s not found", user=user_id))
        return True

    async def verify(self, user_id: int, code: str) -> bool:
        """A current code of the user's, never used before."""
        account = await self._accounts.get(user_id)
        secret = account.totp_secret if account is not None else None
        step = self._step(secret, code) if secret else None
        if step is None:
            return False
        return await self._accounts.use_second_factor_step(user_id, secret, step)
