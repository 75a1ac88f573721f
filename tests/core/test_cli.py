"""The newcomer's commands: --help, db upgrade, serve answering and stopping cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from tests.support import REPO, free_port, require_or_skip, throwaway_pg_database, toml_text

PASSWORD = "a long enough secret"


def run(*args, cwd, env=None, timeout=60, stdin=None):
    return subprocess.run([sys.executable, "-m", "posventa", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, input=stdin,
                          env={**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "120", **(env or {})})


def test_help_lists_the_commands(tmp_path):
    r = run("--help", cwd=tmp_path)
    assert r.returncode == 0 and "serve" in r.stdout and "db" in r.stdout
    assert run("db", "upgrade", "--help", cwd=tmp_path).returncode == 0


def test_db_upgrade_creates_the_embedded_database(tmp_path):
    r = run("db", "upgrade", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "revision" in r.stdout and (tmp_path / "posventa.db").exists()
    assert r.stderr == ""  # Alembic's INFO lines only with --verbose
    r = run("db", "upgrade", "--verbose", cwd=tmp_path)
    assert r.returncode == 0 and "INFO alembic.runtime.migration" in r.stderr


def test_commands_bring_a_fresh_sqlite_database_up_to_date(tmp_path):
    """The README's first step, before serve ever ran: no database file yet."""
    r = run("users", "add", "admin", "--role", "admin", "--password-stdin", cwd=tmp_path,
            stdin=PASSWORD + "\n")
    assert (r.returncode, r.stdout, r.stderr) == (0, "created admin 'admin'\n", "")
    r = run("users", "list", cwd=tmp_path)
    assert r.returncode == 0 and r.stderr == ""
    assert "username" in r.stdout and "admin" in r.stdout


async def test_commands_on_an_old_postgresql_schema_say_what_to_run(tmp_path):
    try:
        async with throwaway_pg_database(prefix="pv_cli") as url:
            (tmp_path / "posventa.toml").write_text(toml_text({"database": {"url": url}}))
            r = run("users", "list", "--config", "posventa.toml", cwd=tmp_path)
    except OSError:
        require_or_skip(False, "PostgreSQL is not reachable on 127.0.0.1:5432")
        return
    assert r.returncode == 2 and r.stdout == ""
    [line] = r.stderr.splitlines()
    assert line.endswith("database schema is at nothing, expected "
                         f"{head()}: run `posventa db upgrade` first") and "key database.url" in line


def head() -> str:
    from posventa.core.persistence.migrate import head_revision

    return head_revision()


def test_an_unexpected_error_is_a_sentence_not_a_class_name(tmp_path):
    """A database file that is not one: the message says what is wrong, in one line."""
    (tmp_path / "posventa.db").write_bytes(b"this is not a database" * 100)
    r = run("users", "list", cwd=tmp_path)
    assert r.returncode in (1, 3) and "Traceback" not in r.stderr
    [line] = r.stderr.splitlines()
    assert line.startswith("posventa: ") and "file is not a database" in line


def test_serve_answers_then_drains_on_sigterm_and_exits_0(tmp_path):
    port = free_port()
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[http]\nport = {port}\n[email]\nenabled = false\n[telegram]\ntoken = "1234:SECRETSECRET"\n')
    env = {k: v for k, v in os.environ.items() if k != "POSVENTA_API_TOKENS"}  # no API token at all
    proc = subprocess.Popen([sys.executable, "-m", "posventa", "serve", "--config", str(cfg)], cwd=tmp_path,
                            env={**env, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert proc.poll() is None, proc.stdout.read()
                assert time.monotonic() < deadline, "serve did not come up"
                time.sleep(0.2)
        # Without a token the API refuses everyone, and the refusal says where tokens come from.
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/cases", timeout=5)
        assert refused.value.code == 401
        body = json.loads(refused.value.read())
        refused.value.close()
        assert body["error"] == "unauthorized" and "POSVENTA_API_TOKENS or [api] tokens" in body["message"]
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=10)
        assert proc.returncode == 0
        assert time.monotonic() - started < 10
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        proc.stdout.close()
    assert "shutting down" in output and "SECRETSECRET" not in output
    warnings = [line for line in output.splitlines() if "answers 401 to everyone" in line]
    assert len(warnings) == 1 and "WARNING" in warnings[0]
    assert warnings[0].endswith("the API answers 401 to everyone: set POSVENTA_API_TOKENS or [api] tokens")
    # Migrations ran (a fresh file), in one line of ours rather than Alembic's.
    assert "alembic" not in output and "database schema upgraded from nothing to" in output


def test_demo_loads_the_example_catalog_and_sales_dated_from_today(tmp_path):
    r = run("demo", cwd=tmp_path)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert "10 new" in r.stdout and "my rules (open now)" in r.stdout
    lines = r.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if "my rules (open now)" in line)
    counts = lines[header + 2]  # below the header's rule
    assert counts.replace("│", " ").split() == ["4", "3", "7", "3"]
