"""core.accounts, the port the console signs in with, on both databases: what revokes an
account's logins tells the adapter inside the same transaction, and the last active admin
stays."""

from __future__ import annotations

import pytest

from posventa.core.accounts import Accounts, LastAdmin, Role
from tests.support import FakeClock


class LoginsEnded(Exception):
    pass


async def test_revoking_logins_runs_in_the_change_s_transaction(db):
    ended: list[int] = []

    async def record(conn, account_id):
        ended.append(account_id)

    accounts = Accounts(db=db, clock=FakeClock(), end_logins=record)
    await accounts.create("boss", password_hash="h0", role=Role.ADMIN, display_name=None)
    ana = await accounts.create("ana", password_hash="h1", role=Role.AGENT, display_name=None)
    assert ana is not None and ana.active and ana.totp_secret is None
    assert await accounts.create("ana", password_hash="h2", role=Role.ADMIN, display_name=None) is None

    assert await accounts.set_password_hash(ana.id, "h2", end_logins=False)  # a rehash at login
    assert ended == []
    assert await accounts.set_password_hash(ana.id, "h3", end_logins=True)
    assert await accounts.remove_second_factor(ana.id, end_logins=True)
    await accounts.update(ana.id, display_name="Ana")
    assert ended == [ana.id, ana.id]
    await accounts.update(ana.id, active=False)
    assert ended == [ana.id, ana.id, ana.id]
    assert await accounts.set_password_hash(ana.id + 1000, "h", end_logins=True) is False

    async def fail(conn, account_id):
        raise LoginsEnded

    failing = Accounts(db=db, clock=FakeClock(), end_logins=fail)
    with pytest.raises(LoginsEnded):
        await failing.set_password_hash(ana.id, "h4", end_logins=True)
    # The logins could not be ended, so the new password never happened either.
    assert (await accounts.get(ana.id)).password_hash == "h3"


async def test_the_last_active_admin_cannot_go(db):
    accounts = Accounts(db=db, clock=FakeClock())
    boss = await accounts.create("boss", password_hash="h", role=Role.ADMIN, display_name="Boss")
    with pytest.raises(LastAdmin):
        await accounts.update(boss.id, role=Role.AGENT, display_name=None)
    with pytest.raises(LastAdmin):
        await accounts.update(boss.id, active=False)
    unchanged = await accounts.get(boss.id)
    assert (unchanged.role, unchanged.active, unchanged.display_name) == (Role.ADMIN, True, "Boss")
    assert await accounts.update(boss.id + 1000, active=False) is None


async def test_a_second_factor_code_is_spent_once(db):
    accounts = Accounts(db=db, clock=FakeClock())
    ana = await accounts.create("ana", password_hash="h", role=Role.AGENT, display_name=None)
    secret = "A" * 32
    assert await accounts.set_second_factor(ana.id, secret, 100)
    assert not await accounts.use_second_factor_step(ana.id, secret, 100)
    assert await accounts.use_second_factor_step(ana.id, secret, 101)
    assert not await accounts.use_second_factor_step(ana.id, secret, 101)
    assert not await accounts.use_second_factor_step(ana.id, "B" * 32, 102)
    assert [a.username for a in await accounts.list()] == ["ana"]
    assert (await accounts.by_username("nobody"), await accounts.get(ana.id + 1000)) == (None, None)
    assert (await accounts.by_username("ana")).totp_secret == secret
    assert "A" * 32 not in repr(await accounts.get(ana.id))
