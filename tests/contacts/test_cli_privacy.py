"""``posventa contacts export ID`` and ``posventa contacts erase ID`` on a real SQLite file."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

from posventa.core.domain import ChannelName, InboundMessage
from posventa.service import Service
from tests.core.test_cli import REPO, run
from tests.support import make_config, toml_text


def _contact_with_a_case(tmp_path) -> tuple[int, dict]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'posventa.db'}"
    config = {"database": {"url": url}, "service": {"data_dir": str(tmp_path / "data")},
              "email": {"enabled": False}, "webchat": {"enabled": False}, "http": {"enabled": False}}

    async def make() -> int:
        service = Service(make_config(url, tmp_path, http={"enabled": False}))
        await service.start()
        try:
            raw = await service.attachments.put_raw(b"From: Luz <luz@x.example>\r\n\r\nMi direccion es Calle Falsa 123",
                                                    kind="email", suffix=".eml")
            receipt = await service.inbox.receive(InboundMessage(
                channel=ChannelName.EMAIL, external_id="<c1@x.example>", sender="luz@x.example", sender_name="Luz",
                text="Mi dirección es Calle Falsa 123", subject="Envío", raw_path=raw))
            return (await service.cases.get_case(receipt.case_number))["contact"]["id"]
        finally:
            await service.stop()

    return asyncio.run(make()), config


def test_export_and_erase_from_the_command_line(tmp_path):
    contact_id, config = _contact_with_a_case(tmp_path)
    (tmp_path / "posventa.toml").write_text(toml_text(config))
    exported = run("contacts", "export", str(contact_id), "-c", "posventa.toml", cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    document = json.loads(exported.stdout)
    assert document["contact"]["name"] == "Luz" and document["identities"][0]["address"] == "luz@x.example"
    assert document["cases"][0]["messages"][0]["text"] == "Mi dirección es Calle Falsa 123"

    refused = run("contacts", "erase", str(contact_id), "-c", "posventa.toml", cwd=tmp_path, stdin="no\n")
    assert refused.returncode == 1 and "nothing was erased" in refused.stderr
    assert "Calle Falsa" in run("contacts", "export", str(contact_id), "-c", "posventa.toml", cwd=tmp_path).stdout

    erased = run("contacts", "erase", str(contact_id), "-c", "posventa.toml", "--by", "dpo", cwd=tmp_path,
                 stdin=f"{contact_id}\n")
    assert erased.returncode == 0, erased.stderr
    assert f"contact #{contact_id} erased (1 file deleted)" in erased.stdout  # the raw mail
    after = json.loads(run("contacts", "export", str(contact_id), "-c", "posventa.toml", cwd=tmp_path).stdout)
    assert after["contact"]["name"] == f"erased contact #{contact_id}" and after["identities"] == []
    assert "Calle Falsa" not in json.dumps(after) and after["history"][-1]["actor"] == "cli:dpo"
    assert after["history"][-1]["code"] == "contact_history_erased"
    held = sum(len(c["messages"]) for c in document["cases"]) + len(document["messages_outside_cases"])
    # The history counts the files the CLI said it deleted.
    assert after["history"][-1]["values"] == {"cases": 1, "messages": held, "files": 1}
    assert after["history"][-1]["detail"] == f"cases: 1, messages: {held}, files: 1"
    missing = run("contacts", "erase", "999999", "--yes", "-c", "posventa.toml", cwd=tmp_path)
    assert missing.returncode == 1 and "not found" in missing.stderr


def test_an_export_piped_into_a_reader_that_has_gone_ends_quietly(tmp_path):
    """``posventa contacts export ID | head -c 10``: the reader closes the pipe first. The
    command stops without a traceback or a second error at exit, with SIGPIPE's status."""
    contact_id, config = _contact_with_a_case(tmp_path)
    (tmp_path / "posventa.toml").write_text(toml_text(config))
    read_end, write_end = os.pipe()
    os.close(read_end)  # nobody will ever read: the first write fails, deterministically
    try:
        done = subprocess.run([sys.executable, "-m", "posventa", "contacts", "export", str(contact_id),
                               "-c", "posventa.toml"], cwd=tmp_path, stdout=write_end, stderr=subprocess.PIPE,
                              text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})
    finally:
        os.close(write_end)
    assert done.returncode == 141, done.stderr
    assert done.stderr == ""
