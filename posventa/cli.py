"""The ``posventa`` command line. Every command loads the config the same way, and a
config error is one line on stderr and exit status 2, never a traceback."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from posventa.core.config import SECRET_KEYS, Config, load_config
from posventa.core.errors import ConfigError, PosventaError, StorageUnavailable
from posventa.core.logs import EscapeControls, JsonLines, TextLines

#: aiosmtpd logs under this name (aiosmtpd/smtp.py: ``logging.getLogger("mail.log")``).
SMTP_LIBRARY_LOGGER = "mail.log"

DEFAULT_CONFIG_ENV = "POSVENTA_CONFIG"


class RedactSecrets(logging.Filter):
    """Replace every configured secret in log records: libraries log URLs that carry
    the Telegram token (``/bot<token>/getUpdates``), and we never let that out."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self._secrets = sorted({s for s in secrets if s and len(s) >= 6}, key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        message = record.getMessage()
        redacted = message
        for secret in self._secrets:
            redacted = redacted.replace(secret, "***")
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def secrets_of(config: Config) -> list[str]:
    values: list[str] = []
    for key in SECRET_KEYS:
        obj: Any = config
        for part in key.split("."):
            obj = getattr(obj, part)
        values.extend(obj if isinstance(obj, tuple) else [obj])
    if "@" in config.database.url and ":" in config.database.url.split("://", 1)[-1].split("@")[0]:
        values.append(config.database.url.split("://", 1)[-1].split("@")[0].split(":", 1)[1])
    return [v for v in values if v]


class _CurrentStderr(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (tests and embedders swap it)."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def setup_logging(config: Config, *, verbose: bool = False, service: bool = False) -> None:
    """``serve`` logs at ``[service] log_level``; a one-shot command prints its result and
    logs only warnings and errors, unless ``--verbose``. Alembic's per-migration INFO
    lines (and the ONNX quantizer's) are noise to both unless ``--verbose``."""
    handler = _CurrentStderr()
    handler.setFormatter(JsonLines() if config.service.log_format == "json" else TextLines())
    handler.addFilter(RedactSecrets(secrets_of(config)))
    # After redaction, on the handler: every logger's lines, libraries' too, are escaped.
    handler.addFilter(EscapeControls())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    configured = config.service.log_level.upper()
    if configured not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        configured = "INFO"
    if verbose:
        root.setLevel("DEBUG" if configured == "DEBUG" else "INFO")
    else:
        root.setLevel(configured if service else "WARNING")
    logging.getLogger("alembic").setLevel(logging.NOTSET if verbose else logging.WARNING)
    # httpx logs every request URL at INFO, and Telegram URLs contain the token.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # aiosmtpd's logger: several INFO lines per mail (43 k of 45 k lines for 6 k mails).
    logging.getLogger(SMTP_LIBRARY_LOGGER).setLevel(config.email.smtp_log_level.upper())


def _config(args: argparse.Namespace) -> Config:
    path = args.config or os.environ.get(DEFAULT_CONFIG_ENV)
    return load_config(path)


def cmd_serve(args: argparse.Namespace) -> int:
    from posventa.service import Service, run_until_signalled

    config = _config(args)
    setup_logging(config, verbose=args.verbose, service=True)
    asyncio.run(run_until_signalled(Service(config)))
    return 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from posventa.core.persistence.migrate import current_revision
    from posventa.service import command_parts

    config = _config(args)
    setup_logging(config, verbose=args.verbose)

    async def run() -> str | None:
        async with command_parts(config, upgrade_schema=True) as parts:
            return await current_revision(parts.db)

    print(f"database is at revision {asyncio.run(run())}")
    return 0


#: Subcommands the ``commands`` package contributes: (group, name) → (help, add_arguments, run).
#: ``run(args, config)`` gets the loaded config, with logging already set up; it builds what
#: it needs with ``service.command_parts`` (which checks the schema first, as serve does).
Command = tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace, Config], int]]


def _with_config(run: Callable[[argparse.Namespace, Config], int]) -> Callable[[argparse.Namespace], int]:
    def wrapped(args: argparse.Namespace) -> int:
        config = _config(args)
        setup_logging(config, verbose=args.verbose)
        return run(args, config)

    return wrapped


def extra_commands() -> dict[tuple[str, str], Command]:
    """The commands of the ``commands`` package (kb, imports, surveys, users, contacts)."""
    import importlib

    from posventa import commands as package

    found: dict[tuple[str, str], Command] = {}
    for name in package.MODULES:
        found.update(importlib.import_module(f"{package.__name__}.{name}").COMMANDS)
    return found


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="posventa", description="Post-sale customer-support intake service.")
    parser.add_argument("--config", "-c", metavar="FILE",
                        help=f"TOML config file (default: ${DEFAULT_CONFIG_ENV}, else built-in defaults)")
    parser.add_argument("--verbose", "-v", action="store_true",
                        help="log INFO lines too (migrations, model loading); tracebacks of unexpected errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add_config(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", "-c", metavar="FILE", default=argparse.SUPPRESS, help="TOML config file")
        p.add_argument("--verbose", "-v", action="store_true", default=argparse.SUPPRESS,
                       help="log INFO lines too (migrations, model loading)")

    serve = sub.add_parser("serve", help="run every enabled channel, the HTTP server and the workers")
    add_config(serve)
    serve.set_defaults(run=cmd_serve)

    groups: dict[str, argparse._SubParsersAction] = {}
    db = sub.add_parser("db", help="database schema")
    groups["db"] = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    up = groups["db"].add_parser("upgrade", help="apply migrations")
    add_config(up)
    up.set_defaults(run=cmd_db_upgrade)

    help_for_group = {"kb": "knowledge base (Discourse)", "import": "import sales or the survey catalog",
                      "surveys": "post-sale surveys", "users": "console users",
                      "contacts": "contacts: privacy requests (export, erase)",
                      "calendars": "business-hours calendars in effect (list, show)"}
    for (group, name), (help_text, add_args, run) in sorted(extra_commands().items()):
        if not group:  # a command of its own, like `posventa demo`
            p = sub.add_parser(name, help=help_text)
            add_config(p)
            add_args(p)
            p.set_defaults(run=_with_config(run))
            continue
        if group not in groups:
            g = sub.add_parser(group, help=help_for_group.get(group, group))
            groups[group] = g.add_subparsers(dest=f"{group}_command", metavar="ACTION", required=True)
        p = groups[group].add_parser(name, help=help_text)
        add_config(p)
        add_args(p)
        p.set_defaults(run=_with_config(run))
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 0
    try:
        return args.run(args)
    except ConfigError as exc:
        print(f"posventa: {exc}", file=sys.stderr)
        return 2
    except StorageUnavailable as exc:
        # The exception's own text is the bare driver class (it may reach HTTP clients);
        # here, for the admin, the driver's first line says what is wrong.
        detail = f"{exc}: {_first_line(exc.__cause__)}" if exc.__cause__ is not None else str(exc)
        print(f"posventa: database unavailable ({detail})", file=sys.stderr)
        return 3
    except PosventaError as exc:
        print(f"posventa: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (``posventa contacts export 7 | head``): nothing to report.
        # stdout now points at /dev/null, or the interpreter's last flush at exit fails again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 141  # as a program killed by SIGPIPE, which Python ignores
    except OSError as exc:
        # e.g. the port is taken: one line, not a traceback.
        print(f"posventa: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except SQLAlchemyError as exc:
        print(f"posventa: database error: {_first_line(exc)}", file=sys.stderr)
        return 1
    except Exception as exc:
        if getattr(args, "verbose", False):
            raise
        print(f"posventa: unexpected {type(exc).__name__}: {_first_line(exc)} "
              "(run again with --verbose for the traceback)", file=sys.stderr)
        return 1


def _first_line(exc: BaseException) -> str:
    """What an error says, without SQLAlchemy's statement and parameters (which may hold
    customer data or a password hash): the driver's own first line."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0][:300] if text else "no detail"


if __name__ == "__main__":
    sys.exit(main())
