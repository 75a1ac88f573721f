"""``posventa users ...``: create the first admin (and rescue a forgotten password)
from the shell, where no console login exists yet."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys

from posventa.commands import open_parts
from posventa.core.config import Config
from posventa.core.errors import ValidationError
from posventa.intake.console.auth import MAX_PASSWORD, Passwords, Role, UserStore


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        # One line; the trailing newline is not part of the password.
        line = sys.stdin.readline(MAX_PASSWORD + 2)
        return line.rstrip("\r\n")
    if not sys.stdin.isatty():
        raise ValidationError("no terminal to prompt on: use --password-stdin", field="password")
    first = getpass.getpass("Password: ")
    if first != getpass.getpass("Repeat password: "):
        raise ValidationError("the passwords do not match", field="password")
    return first


def _store_and_run(config: Config, action) -> int:
    async def run() -> None:
        async with open_parts(config) as parts:
            await action(UserStore(db=parts.db, clock=parts.clock, passwords=Passwords()))

    try:
        asyncio.run(run())
    except ValidationError as exc:
        print(f"posventa: {exc.field + ': ' if exc.field else ''}{exc}", file=sys.stderr)
        return 1
    # Other errors (a database that is down, say) are the CLI's to report, in one line.
    return 0


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("username", help="login name (lower-case letters, digits, . _ @ -)")
    parser.add_argument("--role", choices=[r.value for r in Role], default=Role.AGENT.value,
                        help="agent (default), manager or admin")
    parser.add_argument("--display-name", default=None, help="the name shown in the console")
    parser.add_argument("--password-stdin", action="store_true",
                        help="read the password from the first line of stdin instead of prompting")


def _add(args: argparse.Namespace, config: Config) -> int:
    password = None

    async def action(store: UserStore) -> None:
        user = await store.create(args.username, password or "", role=args.role, display_name=args.display_name)
        print(f"created {user.role.value} {user.username!r}")

    try:
        password = _read_password(args)
    except ValidationError as exc:
        print(f"posventa: {exc}", file=sys.stderr)
        return 1
    return _store_and_run(config, action)


def _passwd_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("username")
    parser.add_argument("--password-stdin", action="store_true",
                        help="read the password from the first line of stdin instead of prompting")


def _passwd(args: argparse.Namespace, config: Config) -> int:
    try:
        password = _read_password(args)
    except ValidationError as exc:
        print(f"posventa: {exc}", file=sys.stderr)
        return 1

    async def action(store: UserStore) -> None:
        user = await store.by_username(args.username)
        await store.set_password(user.id, password)
        print(f"password changed for {user.username!r}; their sessions ended")

    return _store_and_run(config, action)


def _list(args: argparse.Namespace, config: Config) -> int:
    from rich.console import Console
    from rich.table import Table

    async def action(store: UserStore) -> None:
        found = await store.list()
        table = Table(title=f"{len(found)} console user{'' if len(found) == 1 else 's'}")
        for column in ("username", "role", "active", "totp", "display name"):
            table.add_column(column)
        for user in found:
            table.add_row(user.username, user.role.value, "yes" if user.active else "no",
                          "yes" if user.totp else "no", user.display_name or "")
        Console(highlight=False).print(table)

    return _store_and_run(config, action)


def _totp_off(args: argparse.Namespace, config: Config) -> int:
    async def action(store: UserStore) -> None:
        user = await store.by_username(args.username)
        await store.remove_second_factor(user.id, end_sessions=True)
        print(f"second factor removed for {user.username!r}; their sessions ended")

    return _store_and_run(config, action)


COMMANDS = {
    ("users", "add"): ("create a console user (the first admin, say)", _add_arguments, _add),
    ("users", "passwd"): ("set a console user's password", _passwd_arguments, _passwd),
    ("users", "list"): ("list console users and their roles", lambda _p: None, _list),
    ("users", "totp-off"): ("remove a console user's second factor (a lost phone); they enrol again from their "
                            "profile", lambda p: p.add_argument("username"), _totp_off),
}
