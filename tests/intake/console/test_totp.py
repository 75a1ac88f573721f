"""The console's optional TOTP second factor (issue 16 §1): enrolment from the profile page
with a QR code drawn on the server, a code at login (each code good once), the brake on
wrong codes, and ``[console] require_totp_for_admins``. Over HTTP against a running
Service, and the whole story once in Chromium.

Time is the service's FakeClock: codes are computed for it, never waited for."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import AsyncIterator

import pyotp
import pytest
from sqlalchemy import select

from posventa.core.persistence.schema import users
from posventa.service import Service
from tests.browser import chromium_page, collect_page_errors, save_screenshot
from tests.intake.console.harness import PASSWORD, SQLITE_ONLY, ConsoleClient, Running, start_console
from tests.support import FakeClock, make_config

SECRET_RE = re.compile(r'name="secret" value="([A-Z2-7]{32})"')


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


async def _start(database_url, tmp_path, clock: FakeClock, *, require_for_admins: bool = False
                 ) -> AsyncIterator[Running]:
    config = make_config(database_url, tmp_path)
    config = dataclasses.replace(config, console=dataclasses.replace(
        config.console, require_totp_for_admins=require_for_admins))
    service = Service(config, clock=clock)
    run = await start_console(service)
    try:
        yield run
    finally:
        await service.stop()


@pytest.fixture
async def running(database_url, tmp_path, clock) -> AsyncIterator[Running]:
    async for run in _start(database_url, tmp_path, clock):
        yield run


@pytest.fixture
async def strict(database_url, tmp_path, clock) -> AsyncIterator[Running]:
    async for run in _start(database_url, tmp_path, clock, require_for_admins=True):
        yield run


def code(secret: str, clock: FakeClock) -> str:
    return pyotp.TOTP(secret).at(clock.now())


async def enrol(client: ConsoleClient, clock: FakeClock) -> str:
    status, page = await client.get("/console/profile")
    assert status == 200 and 'data-totp="off"' in page
    # The QR code is inline SVG drawn by the server: no image URL, no third party.
    assert re.search(r'<figure class="qr" id="totp-qr"><svg [^>]*class="segno"', page)
    secret = SECRET_RE.search(page).group(1)
    status, page = await client.post("/console/profile/totp", {"secret": secret, "code": code(secret, clock)})
    assert status == 200 and 'data-totp="on"' in page
    return secret


async def login(run: Running, username: str, password: str = PASSWORD, totp: str | None = None
                ) -> tuple[int, str]:
    async with ConsoleClient(run.base) as client:
        await client.get("/console/login")
        fields = {"username": username, "password": password, "_csrf": client.csrf}
        if totp is not None:
            fields["code"] = totp
        async with client.http.post(run.base + "/console/login", data=fields, allow_redirects=False) as r:
            return r.status, await r.text()


async def test_enrolment_then_a_code_at_every_login_each_good_once(running, clock):
    async with ConsoleClient(running.base) as agent:
        assert (await agent.login("agent1"))[0] == 200
        status, page = await agent.get("/console/profile")
        secret = SECRET_RE.search(page).group(1)
        # A wrong code stores nothing.
        status, page = await agent.post("/console/profile/totp", {"secret": secret, "code": "000000"
                                                                   if code(secret, clock) != "000000" else "111111"})
        assert status == 422 and "does not match" in page
        async with running.service.db.engine.connect() as conn:
            assert (await conn.execute(select(users.c.totp_secret).where(users.c.username == "agent1"))).scalar() \
                is None
        secret = await enrol(agent, clock)
    async with running.service.db.engine.connect() as conn:
        assert (await conn.execute(select(users.c.totp_secret).where(users.c.username == "agent1"))).scalar() \
            == secret
    # The password alone is not enough now; the page asks for the code.
    status, page = await login(running, "agent1")
    assert status == 401 and "Enter the 6-digit code" in page
    clock.advance(seconds=30)
    now = code(secret, clock)
    assert (await login(running, "agent1", totp=now))[0] == 303
    # The same code again (seen over a shoulder, or in a log) is refused.
    status, page = await login(running, "agent1", totp=now)
    assert status == 401 and "Wrong or already used code" in page
    # The wrong password with the right code is still the wrong password.
    clock.advance(seconds=30)
    assert (await login(running, "agent1", "not the password", totp=code(secret, clock)))[0] == 401
    assert (await login(running, "agent1", totp=code(secret, clock)))[0] == 303
    # Other users are untouched.
    assert (await login(running, "manager1"))[0] == 303


@SQLITE_ONLY
async def test_wrong_codes_meet_the_login_brake(running, clock):
    async with ConsoleClient(running.base) as agent:
        await agent.login("agent1")
        secret = await enrol(agent, clock)
    clock.advance(seconds=30)
    wrong = "000000" if code(secret, clock) != "000000" else "111111"
    brake = running.service.console.throttle
    for _ in range(brake.free_per_account):
        assert (await login(running, "agent1", totp=wrong))[0] == 401
    # Even the right code waits now, from this address.
    status, page = await login(running, "agent1", totp=code(secret, clock))
    assert status == 429 and "Too many failed attempts" in page


@SQLITE_ONLY
async def test_admins_must_enrol_when_the_config_says_so(strict, clock):
    async with ConsoleClient(strict.base) as admin:
        status, page = await admin.login("admin1")
        # Every page leads to the profile until the admin enrols.
        assert status == 200 and 'id="must-enrol"' in page and 'data-totp="off"' in page
        status, _ = await admin.get("/console/admin/users", allow_redirects=False)
        assert status == 303
        status, page = await admin.post("/console/admin/users", {"username": "luz", "password": PASSWORD,
                                                                 "role": "agent"})
        assert status == 403 and "second factor" in page
        secret = await enrol(admin, clock)
        assert (await admin.get("/console/admin/users"))[0] == 200
        # And it cannot be removed while the rule holds.
        clock.advance(seconds=30)
        status, page = await admin.post("/console/profile/totp/remove", {"code": code(secret, clock)})
        assert status == 403 and "must keep" in page
    # Agents are free to go without one.
    async with ConsoleClient(strict.base) as agent:
        status, page = await agent.login("agent1")
        assert status == 200 and 'id="must-enrol"' not in page
        assert (await agent.get("/console/inbox", allow_redirects=False))[0] == 200


@SQLITE_ONLY
async def test_a_user_removes_their_second_factor_with_a_current_code(running, clock):
    async with ConsoleClient(running.base) as agent:
        await agent.login("agent1")
        secret = await enrol(agent, clock)
        clock.advance(seconds=30)
        status, _ = await agent.post("/console/profile/totp/remove", {"code": "12345"})
        assert status == 422
        status, page = await agent.post("/console/profile/totp/remove", {"code": code(secret, clock)})
        assert status == 200 and 'data-totp="off"' in page
    assert (await login(running, "agent1"))[0] == 303


@SQLITE_ONLY
async def test_enrolment_and_login_with_a_code_in_chromium(running, clock):
    async with chromium_page(locale="en-US") as page:  # the console follows the browser's language
        errors = collect_page_errors(page)
        await page.goto(f"{running.base}/console/login")
        await page.fill("input[name=username]", "admin1")
        await page.fill("input[name=password]", PASSWORD)
        await page.click("button[type=submit]")
        await page.wait_for_url("**/console/inbox")
        await page.click("a.user")  # the name in the top bar leads to the profile
        await page.wait_for_url("**/console/profile")
        assert await page.locator("#totp-qr svg").count() == 1
        secret = (await page.locator("#totp-secret").inner_text()).strip()
        await save_screenshot(page, "console-totp-enrol")
        await page.fill("input[name=code]", code(secret, clock))
        await page.click("button.primary")
        await page.wait_for_selector('#totp-status[data-totp="on"]')
        await page.click("button.link")  # log out
        await page.wait_for_url("**/console/login")

        clock.advance(seconds=30)
        await page.fill("input[name=username]", "admin1")
        await page.fill("input[name=password]", PASSWORD)
        await page.click("button[type=submit]")
        await page.wait_for_selector("#login-error")
        assert "6-digit code" in await page.locator("#login-error").inner_text()
        await page.fill("input[name=password]", PASSWORD)
        await page.fill("input[name=code]", code(secret, clock))
        await page.click("button[type=submit]")
        await page.wait_for_url("**/console/inbox")
        assert await page.locator(".user[data-username=admin1]").count() == 1
        assert errors == []
