"""Log hygiene (issue 16 §4) through the service's real logging set-up (cli.setup_logging)
writing to stderr: control characters from the network escaped on every line, the SMTP
library quiet by default, JSON lines on request, and a CSV download the client abandons
logged as one info line."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import sys
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
from aiohttp import web

from posventa.cli import SMTP_LIBRARY_LOGGER, setup_logging
from posventa.core.config import Config
from posventa.core.logs import EscapeControls, JsonLines, log_fields
from posventa.intake.http import HttpServer, stream_csv
from posventa.service import Service
from tests.support import free_port, make_config

sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    levels = {name: logging.getLogger(name).level for name in (SMTP_LIBRARY_LOGGER, "alembic", "httpx")}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, saved in levels.items():
        logging.getLogger(name).setLevel(saved)


def with_logging(config: Config, **service: str) -> Config:
    return dataclasses.replace(config, service=dataclasses.replace(config.service, **service))


async def smtp_dialogue(port: int, *lines: bytes) -> list[bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    replies = [await reader.readline()]
    for line in lines:
        writer.write(line + b"\r\n")
        await writer.drain()
        replies.append(await reader.readline())
        while replies[-1][3:4] == b"-":  # a multi-line reply (EHLO)
            replies.append(await reader.readline())
    writer.close()
    await writer.wait_closed()
    return replies


@sqlite_only
async def test_a_nul_in_an_envelope_sender_appears_escaped_in_the_log(database_url, tmp_path, capsys,
                                                                      restore_logging):
    config = make_config(database_url, tmp_path, email={"enabled": True, "listen_port": free_port(),
                                                        "smtp_log_level": "INFO", "outbound": {"enabled": False}})
    setup_logging(config, service=True)
    async with Service(config) as service:
        replies = await smtp_dialogue(service.smtp.bound_port, b"EHLO probe.example",
                                      b"MAIL FROM:<eve\x00\x1bred@evil.example>",
                                      b"RCPT TO:<x@relay\x00\x1bforged.example>", b"QUIT")
    assert replies[-1].startswith(b"221"), replies
    err = capsys.readouterr().err
    assert "\x00" not in err and "\x1b" not in err
    # aiosmtpd's own line (its logger at INFO here) and ours, each escaped and on one line.
    assert "sender: eve\\x00\\x1bred@evil.example" in err
    refused = [line for line in err.splitlines() if "refused relay" in line]
    assert len(refused) == 1 and "relay\\x00\\x1bforged.example" in refused[0]


@sqlite_only
async def test_the_smtp_library_logs_warnings_only_by_default(database_url, tmp_path, capsys, restore_logging):
    config = make_config(database_url, tmp_path, email={"enabled": True, "listen_port": free_port(),
                                                        "outbound": {"enabled": False}})
    setup_logging(config, service=True)
    assert logging.getLogger(SMTP_LIBRARY_LOGGER).getEffectiveLevel() == logging.WARNING
    async with Service(config) as service:
        await smtp_dialogue(service.smtp.bound_port, b"EHLO probe.example", b"MAIL FROM:<a@b.example>", b"QUIT")
    err = capsys.readouterr().err
    assert " mail.log: " not in err and "posventa is up" in err


def test_every_control_character_is_escaped_and_tracebacks_keep_their_lines():
    record = logging.LogRecord("mail.log", logging.INFO, __file__, 1, "from %s: %r", ("a\x00b\u2028c\x85", "\r\n"),
                               None)
    assert EscapeControls().filter(record)
    assert record.getMessage() == "from a\\x00b\\u2028c\\x85: '\\r\\n'"
    try:
        raise ValueError("bad\x00value\x1b")
    except ValueError:
        failing = logging.LogRecord("x", logging.ERROR, __file__, 1, "oops", None, sys.exc_info())
    EscapeControls().filter(failing)
    text = logging.Formatter().format(failing)
    assert "bad\\x00value\\x1b" in text and "\x00" not in text
    assert text.count("\n") >= 3  # the traceback is still a traceback


def test_json_lines_carry_case_and_channel_where_known():
    formatter = JsonLines()

    def line(msg: str, **extra: object) -> dict:
        record = logging.LogRecord("posventa", logging.WARNING, __file__, 1, msg, None, None)
        record.__dict__.update(extra)
        EscapeControls().filter(record)
        text = formatter.format(record)
        assert "\n" not in text
        return json.loads(text)

    plain = line("nothing known")
    assert plain["message"] == "nothing known" and plain["level"] == "WARNING" and plain["logger"] == "posventa"
    assert "case" not in plain and "channel" not in plain and plain["time"].endswith("+00:00")
    with log_fields(channel="webchat"):
        assert line("in a chat")["channel"] == "webchat"
        with log_fields(case=42):
            tagged = line("two\nlines\x00")
            assert (tagged["case"], tagged["channel"], tagged["message"]) == (42, "webchat", "two\\nlines\\x00")
    assert line("explicit", case=7, channel="email") | {"time": ""} == {
        "time": "", "level": "WARNING", "logger": "posventa", "message": "explicit", "case": 7, "channel": "email"}


@sqlite_only
async def test_json_logs_are_switched_on_by_config(database_url, tmp_path, capsys, restore_logging):
    config = with_logging(make_config(database_url, tmp_path), log_format="json")
    setup_logging(config, service=True)
    async with Service(config):
        pass
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert any(entry["message"].startswith("posventa is up") for entry in lines)


async def test_a_client_leaving_a_csv_export_is_one_info_line(caplog):
    """An endless export, so only the client's going away can end it."""
    closed = asyncio.Event()
    logged = asyncio.Event()

    class Notice(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "CSV export" in record.getMessage():
                logged.set()

    async def rows() -> AsyncIterator[str]:
        try:
            while True:
                yield "1,ana,pedido\r\n" * 500
        finally:
            closed.set()

    async def export(request: web.Request) -> web.StreamResponse:
        return await stream_csv(request, rows(), filename="cases.csv")

    app = web.Application()
    app.router.add_get("/cases.csv", export)
    server = HttpServer(app=app, host="127.0.0.1", port=0)
    await server.start()
    notice = Notice()
    logging.getLogger("posventa.intake.http").addHandler(notice)
    caplog.set_level(logging.INFO, logger="posventa.intake.http")
    try:
        async with aiohttp.ClientSession() as http:
            response = await http.get(f"http://127.0.0.1:{server.bound_port}/cases.csv")
            assert response.status == 200 and response.content_type == "text/csv"
            assert (await response.content.readexactly(14)) == b"1,ana,pedido\r\n"
            response.close()  # the browser tab is closed mid-download
        async with asyncio.timeout(10):
            await logged.wait()
            await closed.wait()  # the generator (and its database connection) was let go
    finally:
        logging.getLogger("posventa.intake.http").removeHandler(notice)
        await server.stop()
    [record] = [r for r in caplog.records if "CSV export" in r.getMessage()]
    assert record.levelno == logging.INFO and record.exc_info is None
    assert record.getMessage().startswith("CSV export cases.csv: the client disconnected after ")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
