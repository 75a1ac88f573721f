"""The survey commands as a user runs them: `posventa import catalog`, `posventa import
sales` (with a bad row) and `posventa surveys tick`, as subprocesses, on both databases."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from tests.support import REPO


def run(*args, cwd, timeout=120):
    return subprocess.run([sys.executable, "-m", "posventa", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"})


def test_import_and_tick_from_the_command_line(database_url, tmp_path):
    config = tmp_path / "posventa.toml"
    config.write_text(f'[database]\nurl = "{database_url}"\n[email]\nenabled = false\n'
                      '[surveys]\ntimezone = "America/Argentina/Buenos_Aires"\n', encoding="utf-8")
    r = run("import", "catalog", str(REPO / "examples" / "catalog.toml"), "--config", str(config), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "questions" in r.stdout and "4" in r.stdout

    sqlite = database_url.startswith("sqlite")  # the error paths do not depend on the database
    broken = tmp_path / "broken.toml"
    broken.write_text('[[questions]]\ncode = "q"\nscale = "1-5"\ntext = { es = "a", pt = "b", en = "c" }\n'
                      'weights = [1, 2, 3]\n', encoding="utf-8")
    if sqlite:
        r = run("import", "catalog", str(broken), "--config", str(config), cwd=tmp_path)
        assert r.returncode == 1 and "questions[1] ('q'): weights lists 3 values" in r.stderr
        assert "Traceback" not in r.stderr

    # A deal closed eight local days ago: its "Primera semana" window (7 days, 5 long) is open today.
    today = datetime.now(ZoneInfo("America/Argentina/Buenos_Aires")).date()
    closed = (today - timedelta(days=8)).isoformat()
    sales = tmp_path / "sales.csv"
    sales.write_text("external_id,closed_at,product,seller,customer_name,email,telegram_id\n"
                     f"V-1,{closed},PRN-100,marta,Ana,ana@example.com,\n"
                     f"V-2,{closed},NOPE,marta,Bob,bob@example.com,\n"
                     f"V-3,{closed},PRN-100,pedro,Cid,,123456\n", encoding="utf-8")
    r = run("import", "sales", str(sales), "--config", str(config), cwd=tmp_path)
    assert r.returncode == 1, r.stderr  # a rejected row is worth a non-zero status
    assert r.stderr.splitlines()[-1].startswith("posventa: 1 of 3 rows rejected (the others were imported")
    assert "created" in r.stdout and "rejected" in r.stdout
    assert "3" in r.stdout and "V-2" in r.stdout and "product 'NOPE' does not exist" in r.stdout

    r = run("surveys", "tick", "--config", str(config), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "opened" in r.stdout and "2 (email: 1, telegram: 1)" in r.stdout

    if sqlite:
        r = run("import", "sales", str(tmp_path / "missing.csv"), "--config", str(config), cwd=tmp_path)
        assert r.returncode == 1 and "no such CSV file" in r.stderr
