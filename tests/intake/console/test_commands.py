"""``posventa users ...`` through the real CLI entry point, on a SQLite file."""

from __future__ import annotations

import io
import sys

import pytest

from posventa import cli

PASSWORD = "a long enough secret"


@pytest.fixture
def config_file(tmp_path, monkeypatch):
    path = tmp_path / "posventa.toml"
    path.write_text(f'[database]\nurl = "sqlite+aiosqlite:///{tmp_path / "p.db"}"\n'
                    f'[service]\ndata_dir = "{tmp_path / "data"}"\n', encoding="utf-8")
    monkeypatch.delenv("POSVENTA_DATABASE_URL", raising=False)
    assert cli.main(["db", "upgrade", "--config", str(path)]) == 0
    return str(path)


def _run(monkeypatch, args: list[str], stdin: str = "") -> int:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    return cli.main(args)


def test_users_add_creates_the_first_admin(config_file, monkeypatch, capsys):
    assert _run(monkeypatch, ["users", "add", "boss", "--role", "admin", "--display-name", "La Jefa",
                              "--password-stdin", "--config", config_file], PASSWORD + "\n") == 0
    out = capsys.readouterr()
    assert "created admin 'boss'" in out.out and PASSWORD not in out.out + out.err
    assert _run(monkeypatch, ["users", "list", "--config", config_file]) == 0
    lines = capsys.readouterr().out.splitlines()
    # A table with a header, like the other commands' output.
    [header] = [line for line in lines if "username" in line]
    assert [w for w in header.replace("┃", " ").split()] == ["username", "role", "active", "totp", "display", "name"]
    [row] = [line for line in lines if "boss" in line]
    assert row.replace("│", " ").split() == ["boss", "admin", "yes", "no", "La", "Jefa"]

    # The stored hash verifies (the console's own login path).
    import asyncio

    from posventa.core.config import load_config
    from posventa.core.persistence import Database
    from posventa.core.ports import SystemClock
    from posventa.intake.console.auth import Passwords, UserStore

    async def check() -> bool:
        db = Database(load_config(config_file).database.url)
        try:
            store = UserStore(db=db, clock=SystemClock(), passwords=Passwords())
            return (await store.authenticate("boss", PASSWORD)) is not None
        finally:
            await db.dispose()

    assert asyncio.run(check())


def test_users_add_refuses_bad_input_with_one_line(config_file, monkeypatch, capsys):
    assert _run(monkeypatch, ["users", "add", "boss", "--password-stdin", "--config", config_file], "short\n") == 1
    assert "at least 10 characters" in capsys.readouterr().err
    assert _run(monkeypatch, ["users", "add", "Not Valid!", "--password-stdin", "--config", config_file],
                PASSWORD + "\n") == 1
    assert "username" in capsys.readouterr().err
    assert _run(monkeypatch, ["users", "add", "boss", "--password-stdin", "--config", config_file], PASSWORD) == 0
    assert _run(monkeypatch, ["users", "add", "boss", "--password-stdin", "--config", config_file], PASSWORD) == 1
    assert "already exists" in capsys.readouterr().err
    # No terminal and no --password-stdin: a clear error rather than a hang.
    assert _run(monkeypatch, ["users", "add", "otro", "--config", config_file]) == 1
    assert "--password-stdin" in capsys.readouterr().err


def test_users_passwd_resets_a_password(config_file, monkeypatch, capsys):
    assert _run(monkeypatch, ["users", "add", "ana", "--password-stdin", "--config", config_file], PASSWORD) == 0
    assert _run(monkeypatch, ["users", "passwd", "ana", "--password-stdin", "--config", config_file],
                "another long secret\n") == 0
    assert "password changed for 'ana'" in capsys.readouterr().out
    assert _run(monkeypatch, ["users", "passwd", "nobody", "--password-stdin", "--config", config_file],
                "another long secret\n") == 1


def test_users_totp_off_removes_a_lost_second_factor(config_file, monkeypatch, capsys):
    """An agent lost their phone: the operator takes the second factor off, their sessions
    end, and they log in with the password and enrol again."""
    import asyncio

    from sqlalchemy import func, insert, select, update

    from posventa.core.config import load_config
    from posventa.core.persistence import Database
    from posventa.core.persistence.schema import users
    from posventa.intake.console.tables import console_sessions

    assert _run(monkeypatch, ["users", "add", "ana", "--password-stdin", "--config", config_file], PASSWORD) == 0

    async def db_do(work):
        db = Database(load_config(config_file).database.url)
        try:
            async with db.transaction() as conn:
                return await work(conn)
        finally:
            await db.dispose()

    async def enrolled_with_a_session(conn):
        uid = (await conn.execute(select(users.c.id).where(users.c.username == "ana"))).scalar_one()
        await conn.execute(update(users).where(users.c.id == uid).values(totp_secret="A" * 32, totp_last_step=7))
        now = (await conn.execute(select(users.c.created_at).where(users.c.id == uid))).scalar_one()
        await conn.execute(insert(console_sessions).values(token_hash="h" * 64, user_id=uid, csrf_token="c",
                                                           created_at=now, last_seen_at=now, expires_at=now))

    async def state(conn):
        row = (await conn.execute(select(users.c.totp_secret, users.c.totp_last_step))).one()
        sessions = (await conn.execute(select(func.count()).select_from(console_sessions))).scalar_one()
        return tuple(row), sessions

    asyncio.run(db_do(enrolled_with_a_session))
    assert _run(monkeypatch, ["users", "totp-off", "ana", "--config", config_file]) == 0
    assert "second factor removed for 'ana'" in capsys.readouterr().out
    assert asyncio.run(db_do(state)) == ((None, None), 0)
