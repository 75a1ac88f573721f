"""The newcomer's commands: --help, db upgrade, serve answering and stopping cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request

from tests.support import REPO, free_port


def run(*args, cwd, env=None, timeout=60):
    return subprocess.run([sys.executable, "-m", "cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})


def test_help_lists_the_commands(tmp_path):
    r = run("--help", cwd=tmp_path)
    assert r.returncode == 0 and "serve" in r.stdout and "db" in r.stdout
    assert run("db", "upgrade", "--help", cwd=tmp_path).returncode == 0


def test_db_upgrade_creates_the_embedded_database(tmp_path):
    r = run("db", "upgrade", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "revision" in r.stdout and (tmp_path / "posventa.db").exists()


def test_serve_answers_then_drains_on_sigterm_and_exits_0(tmp_path):
    port = free_port()
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[http]\nport = {port}\n[email]\nenabled = false\n[telegram]\ntoken = "1234:SECRETSECRET"\n')
    proc = subprocess.Popen([sys.executable, "-m", "cli", "serve", "--config", str(cfg)], cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
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
