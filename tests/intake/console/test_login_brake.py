"""The console's login brake after the audit (issue 16): it slows the address that is
guessing, never the account for everyone; the address is the forwarded one only behind
a trusted proxy; every outcome is one log line and a count in /metrics.

Time is a hand-moved monotonic clock inside the brake, so the growing delays are
skipped rather than slept through."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping

import aiohttp
import pytest

from posventa.intake.console.auth import LoginThrottle
from posventa.intake.http import ClientAddresses
from posventa.service import Service
from tests.intake.console.harness import PASSWORD, SQLITE_ONLY, ConsoleClient, Running, start_console
from tests.support import make_config

#: The brake lives in the process; the database kind changes nothing.
sqlite_only = SQLITE_ONLY

A, B = "203.0.113.10", "198.51.100.20"


class Monotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def _running(database_url, tmp_path, **http) -> AsyncIterator[tuple[Running, Monotonic]]:
    service = Service(make_config(database_url, tmp_path, http=http))
    run = await start_console(service)
    clock = Monotonic()
    service.console.throttle = LoginThrottle(monotonic=clock)
    try:
        yield run, clock
    finally:
        await service.stop()


@pytest.fixture
async def behind_proxy(database_url, tmp_path):
    """The service behind nginx on 127.0.0.1 (this test), which names the client."""
    async for pair in _running(database_url, tmp_path, trusted_proxies=("127.0.0.1/32",)):
        yield pair


@pytest.fixture
async def direct(database_url, tmp_path):
    """No trusted proxy: clients connect directly and X-Forwarded-For is their own word."""
    async for pair in _running(database_url, tmp_path):
        yield pair


async def login(run: Running, username: str, password: str, *, forwarded: str | None = None
                ) -> tuple[int, str, Mapping[str, str]]:
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    async with ConsoleClient(run.base) as client:
        await client.get("/console/login", headers=headers)
        async with client.http.post(run.base + "/console/login", allow_redirects=False, headers=headers,
                                    data={"username": username, "password": password, "_csrf": client.csrf}) as r:
            return r.status, await r.text(), r.headers


async def fail_repeatedly(run: Running, clock: Monotonic, usernames: list[str], forwarded: str | None) -> None:
    """Wrong passwords, each one after the delay the last one earned (a patient guesser)."""
    for username in usernames:
        clock.now += run.service.console.throttle.retry_after(forwarded or "127.0.0.1", username)
        status, page, _ = await login(run, username, "not the password", forwarded=forwarded)
        assert status == 401 and "Wrong username or password" in page


@sqlite_only
async def test_twenty_bad_passwords_from_a_leave_the_account_open_from_b(behind_proxy):
    run, clock = behind_proxy
    await fail_repeatedly(run, clock, ["agent1"] * 20, A)
    # A is slowed down, even with the right password: it has been guessing.
    status, page, headers = await login(run, "agent1", PASSWORD, forwarded=A)
    assert status == 429 and "Too many failed attempts" in page and int(headers["Retry-After"]) >= 1
    # B has not been failing: the owner logs in.
    status, _, headers = await login(run, "agent1", PASSWORD, forwarded=B)
    assert status == 303 and headers["Location"] == "/console/"
    # Once A's delay has passed, the right password from A works too.
    clock.now += run.service.console.throttle.retry_after(A, "agent1")
    assert (await login(run, "agent1", PASSWORD, forwarded=A))[0] == 303


@sqlite_only
async def test_invented_names_slow_down_their_address_only(behind_proxy):
    run, clock = behind_proxy
    await fail_repeatedly(run, clock, [f"nobody{i}" for i in range(20)], A)
    assert (await login(run, "manager1", PASSWORD, forwarded=A))[0] == 429
    assert (await login(run, "manager1", PASSWORD, forwarded=B))[0] == 303


async def test_delays_grow_with_each_failure_and_are_capped():
    clock = Monotonic()
    throttle = LoginThrottle(free_per_account=3, free_per_address=10, first_delay=1.0, max_delay=900.0,
                             monotonic=clock)
    waits: list[float] = []
    for _ in range(16):
        clock.now += waits[-1] if waits else 0.0
        waits.append(throttle.failed(A, "agent1"))
    assert waits[:2] == [0.0, 0.0]
    assert waits[2:7] == [1.0, 2.0, 4.0, 8.0, 16.0]
    assert waits[-1] == 900.0 and waits == sorted(waits)
    # Another account from the same address has its own allowance (until the address's).
    assert throttle.retry_after(A, "agent2") > 0  # 16 failures: past the address's 10
    assert throttle.retry_after(B, "agent1") == 0
    # A success clears the pair, not the address (a guesser's own account must not reset it).
    throttle.succeeded(A, "agent1")
    assert throttle.retry_after(A, "agent1") == throttle.retry_after(A, "anyone") > 0
    # Forgotten an hour after the last failure.
    clock.now += 3600
    assert throttle.retry_after(A, "agent1") == 0 and throttle.retry_after(A, "x") == 0


@sqlite_only
async def test_behind_a_trusted_proxy_the_forwarded_address_is_the_client(behind_proxy):
    run, clock = behind_proxy
    await fail_repeatedly(run, clock, ["agent1"] * 5, A)
    assert (await login(run, "agent1", PASSWORD, forwarded=A))[0] == 429
    assert (await login(run, "agent1", PASSWORD, forwarded=B))[0] == 303


@sqlite_only
async def test_from_an_untrusted_peer_the_forwarded_address_is_ignored(direct):
    # A guesser cannot dodge the brake by naming a new address each time.
    run, clock = direct
    await fail_repeatedly(run, clock, ["agent1"] * 5, None)
    assert (await login(run, "agent1", PASSWORD, forwarded=B))[0] == 429
    assert run.service.console.throttle.retry_after("127.0.0.1", "agent1") > 0
    assert run.service.console.throttle.retry_after(B, "agent1") == 0


def test_client_address_rule():
    rule = ClientAddresses.from_cidrs(["10.0.0.0/8", "127.0.0.1"])
    # An untrusted peer is the client, whatever it writes.
    assert rule.resolve("192.0.2.1", ["6.6.6.6"]) == "192.0.2.1"
    # A trusted proxy's last entry is the client; entries written before it are ignored.
    assert rule.resolve("127.0.0.1", ["6.6.6.6, 192.0.2.7"]) == "192.0.2.7"
    # A chain of trusted proxies is walked from the right.
    assert rule.resolve("127.0.0.1", ["6.6.6.6, 192.0.2.7, 10.1.2.3", "10.0.0.9"]) == "192.0.2.7"
    # A malformed entry stops the walk at the last address a proxy wrote.
    assert rule.resolve("127.0.0.1", ["192.0.2.7, bogus, 10.1.2.3"]) == "10.1.2.3"
    assert rule.resolve("127.0.0.1", []) == "127.0.0.1"
    assert rule.resolve("::ffff:192.0.2.1", []) == "192.0.2.1"
    assert rule.resolve(None, ["6.6.6.6"]) == "unknown"
    assert ClientAddresses().resolve("127.0.0.1", ["6.6.6.6"]) == "127.0.0.1"


@sqlite_only
async def test_logins_are_logged_and_counted(behind_proxy, caplog):
    run, clock = behind_proxy
    caplog.set_level(logging.INFO, logger="posventa.intake.console")
    await fail_repeatedly(run, clock, ["agent1"] * 3, A)
    assert (await login(run, "agent1", PASSWORD, forwarded=A))[0] == 429
    assert (await login(run, "agent1", PASSWORD, forwarded=B))[0] == 303
    lines = [r.getMessage() for r in caplog.records if r.name == "posventa.intake.console.auth"]
    assert lines.count(f"console login failed: account 'agent1' from {A}") == 3
    assert f"console login locked: account 'agent1' from {A} for 1 s" in lines
    assert f"console login refused while locked: account 'agent1' from {A}, 1 s left" in lines
    assert f"console login: account 'agent1' from {B}" in lines
    async with aiohttp.ClientSession() as http, http.get(run.base + "/metrics") as r:
        metrics = await r.text()
    assert 'posventa_console_logins_total{outcome="failure"} 3.0' in metrics
    assert 'posventa_console_logins_total{outcome="success"} 1.0' in metrics
    assert 'posventa_console_logins_total{outcome="throttled"} 1.0' in metrics
    assert "posventa_console_lockouts_total 1.0" in metrics
