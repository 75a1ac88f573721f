"""``posventa kb sync`` and ``posventa kb search`` as an operator runs them, against the fake
Discourse over HTTP: the sync stores articles and their passage vectors, the search then
encodes nothing new and ranks by meaning."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys

from tests.fakes.discourse_api import FakeDiscourse
from tests.support import REPO, toml_text


async def posventa(*args: str, cwd) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "posventa", *args, cwd=cwd, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"})
    out, _ = await asyncio.wait_for(proc.communicate(), 180)  # the fake answers on this loop meanwhile
    return proc.returncode, out.decode()


async def test_sync_then_search_from_the_command_line(tmp_path):
    async with FakeDiscourse(api_key="kb-key-0123456789") as forum:
        forum.add_topic("Lost or stolen card", "Freeze the card in the app straight away, then order a new one.")
        forum.add_topic("Change your PIN", "You can change the PIN at any ATM of our network.")
        forum.add_topic("Card delivery times", "A new card takes 5 to 7 working days to arrive.")
        db = tmp_path / "kb.db"
        (tmp_path / "posventa.toml").write_text(toml_text({
            "database": {"url": f"sqlite+aiosqlite:///{db}"},
            "kb": {"enabled": True, "api_url": forum.base_url, "api_key": "kb-key-0123456789"},
        }))
        code, out = await posventa("kb", "sync", "--config", "posventa.toml", cwd=tmp_path)
        assert code == 0, out
        assert "3 topics seen" in out and "kb-key-0123456789" not in out
        with sqlite3.connect(db) as conn:
            vectors = conn.execute("select count(*) from kb_vectors").fetchone()[0]
        assert vectors >= 3  # encoded by the sync, so serve starts with every vector

        code, out = await posventa("kb", "search", "my card card is gone, someone took it", "--limit", "3",
                                   "--config", "posventa.toml", cwd=tmp_path)
        assert code == 0, out
        rows = [line for line in out.splitlines() if "card" in line.lower() and "│" in line]
        assert rows and "Lost or stolen card" in rows[0], out
        # Quiet: the table, not ONNX Runtime's or Alembic's INFO lines.
        assert not [line for line in out.splitlines() if " INFO " in line or "onnxruntime" in line.lower()
                    or "alembic" in line or "Quantization" in line], out
        with sqlite3.connect(db) as conn:
            assert conn.execute("select count(*) from kb_vectors").fetchone()[0] == vectors


async def test_search_and_sync_refuse_a_disabled_kb_with_the_same_line(tmp_path):
    (tmp_path / "posventa.toml").write_text(toml_text({
        "database": {"url": f"sqlite+aiosqlite:///{tmp_path / 'kb.db'}"}, "kb": {"enabled": False}}))
    results = [await posventa("kb", command, *extra, "--config", "posventa.toml", cwd=tmp_path)
               for command, extra in (("sync", ()), ("search", ("tarjeta",)))]
    assert [code for code, _ in results] == [2, 2]
    sync, search = (out.strip() for _, out in results)
    assert sync == search and sync.endswith("the knowledge base is disabled: set [kb] enabled = true")
    assert "\n" not in sync
