"""Several real ``python -m posventa serve`` processes on one PostgreSQL database.

Each node is a subprocess with its own TOML file (its own HTTP port, and SMTP port when
email is on), its log in a file the test can read, and Prometheus metrics over HTTP.
``Cluster.close`` ends every process it started (SIGTERM, then SIGKILL), whatever the
test did.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from tests.support import API_TOKEN, REPO, free_port, toml_text

_METRIC = re.compile(r'^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$')


def cli(*args: str, cwd: Path, stdin: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "posventa", *args], cwd=cwd, input=stdin, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "PYTHONPATH": str(REPO)})


@dataclass
class Node:
    name: str
    port: int
    config: Path
    log: Path
    proc: subprocess.Popen[bytes]
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    async def metrics(self) -> dict[tuple[str, str], float]:
        """``(name, labels)`` → value from this node's /metrics."""
        async with aiohttp.ClientSession() as http, http.get(f"{self.base}/metrics") as r:
            text = await r.text()
        found: dict[tuple[str, str], float] = {}
        for line in text.splitlines():
            match = _METRIC.match(line)
            if match:
                found[(match.group(1), match.group(2) or "")] = float(match.group(3))
        return found

    async def metric(self, name: str, labels: str = "") -> float:
        return (await self.metrics()).get((name, labels), 0.0)


class Cluster:
    def __init__(self, *, tmp_path: Path, database_url: str) -> None:
        self.tmp_path = tmp_path
        self.database_url = database_url
        self.nodes: list[Node] = []
        #: One attachment folder for all: in production it is shared storage too.
        self.data_dir = tmp_path / "data"

    def base_sections(self, port: int) -> dict[str, dict[str, Any]]:
        return {
            "database": {"url": self.database_url, "pool_size": 3},
            "service": {"data_dir": str(self.data_dir), "log_level": "INFO"},
            "http": {"port": port, "public_url": "http://127.0.0.1:8080"},
            "api": {"tokens": [API_TOKEN]},
            "email": {"enabled": False},
            "telegram": {"enabled": False},
            "webchat": {"enabled": False},
            "kb": {"enabled": False},
            "surveys": {"enabled": False},
            "outbox": {"poll_seconds": 0.2, "base_delay_seconds": 0.2, "max_delay_seconds": 2.0},
        }

    def write_config(self, name: str, **sections: dict[str, Any]) -> tuple[Path, dict[str, dict[str, Any]]]:
        port = sections.pop("_port", None) or free_port()
        merged = self.base_sections(port)
        for section, values in sections.items():
            merged[section] = {**merged.get(section, {}), **values}
        path = self.tmp_path / f"{name}.toml"
        path.write_text(toml_text(merged), encoding="utf-8")
        return path, merged

    def cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """A one-off command against the cluster's database (db upgrade, imports, users)."""
        path, _ = self.write_config("cli")
        return cli(*args, "--config", str(path), cwd=self.tmp_path, stdin=stdin)

    def spawn(self, name: str, **sections: dict[str, Any]) -> Node:
        path, merged = self.write_config(name, **sections)
        log = self.tmp_path / f"{name}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen([sys.executable, "-m", "posventa", "serve", "--config", str(path)], cwd=self.tmp_path,
                                    env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=out,
                                    stderr=subprocess.STDOUT)
        node = Node(name, merged["http"]["port"], path, log, proc, merged)
        self.nodes.append(node)
        return node

    async def wait_up(self, *nodes: Node, timeout: float = 45.0) -> None:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
            for node in nodes:
                while True:
                    assert node.alive, f"{node.name} exited:\n{node.output()[-3000:]}"
                    try:
                        async with http.get(f"{node.base}/healthz") as r:
                            if r.status == 200:
                                break
                    except (aiohttp.ClientError, TimeoutError):
                        pass
                    assert time.monotonic() < deadline, f"{node.name} did not come up:\n{node.output()[-3000:]}"
                    await asyncio.sleep(0.2)

    def kill(self, node: Node) -> None:
        """``kill -9``: no shutdown code runs, the kernel closes its sockets."""
        node.proc.send_signal(signal.SIGKILL)
        node.proc.wait(timeout=10)

    async def stop(self, node: Node, timeout: float = 15.0) -> int:
        if node.alive:
            node.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while node.alive and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        if node.alive:
            node.proc.kill()
        return node.proc.wait(timeout=10)

    async def close(self) -> None:
        for node in self.nodes:
            if node.alive:
                node.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        while any(n.alive for n in self.nodes) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        for node in self.nodes:
            if node.alive:
                node.proc.kill()
            node.proc.wait(timeout=10)


async def eventually(check, *, timeout: float = 20.0, interval: float = 0.1, what: str = "condition"):
    """Call ``check()`` (sync or async) until it returns something truthy; fail with
    ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what} (last: {value!r})"
        await asyncio.sleep(interval)
