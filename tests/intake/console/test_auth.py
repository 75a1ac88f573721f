"""Who gets into the console, over real HTTP against a running Service, on both databases:
passwords, session cookies, roles, CSRF, the login brake."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import aiohttp
from sqlalchemy import select

from posventa.core.persistence.schema import users
from posventa.intake.console.tables import console_sessions
from posventa.intake.console.auth import LoginThrottle
from posventa.service import Service
from tests.intake.console.harness import PASSWORD, SQLITE_ONLY, ConsoleClient, start_console
from tests.support import FakeClock, make_config


async def test_login_sets_a_hardened_cookie_and_stores_only_hashes(running):
    async with ConsoleClient(running.base) as client:
        status, _ = await client.get("/console/inbox", allow_redirects=False)
        assert status == 303
        await client.get("/console/login")
        async with client.http.post(running.base + "/console/login", allow_redirects=False,
                                    data={"username": "agent1", "password": PASSWORD, "_csrf": client.csrf,
                                          "next": "/console/cases/1"}) as r:
            assert r.status == 303 and r.headers["Location"] == "/console/cases/1"
            cookie = next(h for h in r.headers.getall("Set-Cookie") if h.startswith("pv_console="))
        assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/console/" in cookie
        assert "Secure" not in cookie  # public_url is http in this test
        token = cookie.split("=", 1)[1].split(";", 1)[0]
        async with running.service.db.engine.connect() as conn:
            stored = (await conn.execute(select(console_sessions.c.token_hash))).scalars().all()
            hashes = (await conn.execute(select(users.c.password_hash))).scalars().all()
        assert stored and token not in stored
        assert all(h.startswith("$argon2id$") and PASSWORD not in h for h in hashes)
        status, page = await client.get("/console/inbox")
        assert status == 200 and 'data-username="agent1"' in page
        # Logging out ends the session in the database, not just in this browser.
        status, _ = await client.post("/console/logout")
        async with running.service.db.engine.connect() as conn:
            assert (await conn.execute(select(console_sessions))).all() == []
    async with ConsoleClient(running.base) as replay:
        replay.http.cookie_jar.update_cookies({"pv_console": token})
        status, _ = await replay.get("/console/inbox", allow_redirects=False)
        assert status == 303


@SQLITE_ONLY
async def test_wrong_password_unknown_user_and_open_redirect(running):
    async with ConsoleClient(running.base) as client:
        status, page = await client.login("agent1", "wrong password!!")
        assert status == 401 and "Wrong username or password" in page
        status, page = await client.login("nobody", PASSWORD)
        assert status == 401 and "Wrong username or password" in page
        await client.get("/console/login")
        async with client.http.post(running.base + "/console/login", allow_redirects=False,
                                    data={"username": "agent1", "password": PASSWORD, "_csrf": client.csrf,
                                          "next": "//evil.example/steal"}) as r:
            assert r.headers["Location"] == "/console/"


@SQLITE_ONLY
async def test_secure_cookie_behind_https(database_url, tmp_path):
    config = make_config(database_url, tmp_path)
    config = dataclasses.replace(config, http=dataclasses.replace(config.http, public_url="https://support.example.com"))
    service = Service(config)
    run = await start_console(service)
    try:
        async with aiohttp.ClientSession() as http:
            # TLS ends at the proxy; this test talks plain HTTP to the service behind it and
            # carries the (Secure) login cookie by hand, as the browser would over HTTPS.
            async with http.get(run.base + "/console/login") as r:
                login_cookie = r.cookies["pv_console_login"]
                assert login_cookie["secure"]
            async with http.post(run.base + "/console/login", allow_redirects=False,
                                 headers={"Cookie": f"pv_console_login={login_cookie.value}"},
                                 data={"username": "agent1", "password": PASSWORD, "_csrf": login_cookie.value}) as r:
                assert r.status == 303
                cookie = next(h for h in r.headers.getall("Set-Cookie") if h.startswith("pv_console="))
            assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    finally:
        await service.stop()


@SQLITE_ONLY
async def test_agent_is_denied_manager_and_admin_pages(running, agent):
    for path in ("/console/admin/users", "/console/panel", "/console/charts", "/console/catalog",
                 "/console/exports/panel.csv"):
        status, page = await agent.get(path)
        assert status == 403, path
        assert "Not allowed" in page
    status, _ = await agent.post("/console/admin/users", {"username": "mallory", "password": PASSWORD, "role": "admin"})
    assert status == 403
    assert "mallory" not in [u.username for u in await running.service.console.users.list()]
    async with ConsoleClient(running.base) as manager:
        await manager.login(running.users["manager"])
        assert (await manager.get("/console/admin/users"))[0] == 403
        assert (await manager.get("/console/panel"))[0] == 200


@SQLITE_ONLY
async def test_posts_without_csrf_or_from_another_site_are_refused(running, agent):
    number = await _case(running)
    status, page = await agent.post(f"/console/cases/{number}/note", {"note": "no token"}, csrf=False)
    assert status == 403 and "did not come from this console" in page
    status, _ = await agent.post(f"/console/cases/{number}/note", {"note": "bad token", "_csrf": "x" * 43})
    assert status == 403
    status, _ = await agent.post(f"/console/cases/{number}/note", {"note": "cross-site"},
                                 headers={"Origin": "https://evil.example"})
    assert status == 403
    case = await running.service.cases.get_case(number)
    assert [m for m in case["messages"] if m["author"] == "note"] == []
    # The login form has its own (double-submit) token.
    async with ConsoleClient(running.base) as fresh:
        status, _ = await fresh.post("/console/login", {"username": "agent1", "password": PASSWORD}, csrf=False)
        assert status == 403
    # With the token, the same note goes in.
    status, _ = await agent.post(f"/console/cases/{number}/note", {"note": "with token"})
    assert status == 200
    assert [m["text"] for m in (await running.service.cases.get_case(number))["messages"]
            if m["author"] == "note"] == ["with token"]


@SQLITE_ONLY
async def test_multipart_posts_count_their_fields_and_a_malformed_one_is_refused(running, agent):
    """The console takes no uploads, but a browser or script may post multipart anyway: its
    fields count, the CSRF one too, and a file part is dropped. A body that claims to be
    multipart and is not has no token, so it is refused like any other (it was a 500)."""
    number = await _case(running)
    form = aiohttp.FormData()
    form.add_field("_csrf", agent.csrf)
    form.add_field("note", "sent as multipart")
    form.add_field("stray", b"%PDF-1.4 " * 100, filename="invoice.pdf", content_type="application/pdf")
    async with agent.http.post(f"{running.base}/console/cases/{number}/note", data=form) as r:
        assert r.status == 200
    assert [m["text"] for m in (await running.service.cases.get_case(number))["messages"]
            if m["author"] == "note"] == ["sent as multipart"]
    async with agent.http.post(f"{running.base}/console/cases/{number}/note", data=b"--nope\r\n\r\n",
                               headers={"Content-Type": "multipart/form-data; boundary=other"}) as r:
        assert r.status == 403 and "did not come from this console" in await r.text()


@SQLITE_ONLY
async def test_login_attempts_are_rate_limited(running):
    throttle: LoginThrottle = running.service.console.throttle
    async with ConsoleClient(running.base) as client:
        for _ in range(throttle.free_per_account):
            status, _ = await client.login("agent1", "not the password")
            assert status == 401
        # Even the right password waits now from this address: it has been guessing.
        status, page = await client.login("agent1", PASSWORD)
        assert status == 429 and "Too many failed attempts. Try again in 1 second." in page
    async with ConsoleClient(running.base) as other:
        # Another account from the same address still works (until the address's allowance);
        # the same account from another address too (tests/intake/console/test_login_brake.py).
        status, _ = await other.login("manager1", PASSWORD)
        assert status == 200


async def test_sessions_live_in_the_database_and_expire(database_url, tmp_path):
    """Two service processes on one database: a login on one is valid on the other."""
    clock = FakeClock()
    first = Service(make_config(database_url, tmp_path / "a"), clock=clock)
    run = await start_console(first)
    second = Service(make_config(database_url, tmp_path / "b"), clock=clock)
    await second.start()
    try:
        async with ConsoleClient(run.base) as client:
            assert (await client.login("agent1"))[0] == 200
            cookie = client.http.cookie_jar.filter_cookies(aiohttp.client.URL(run.base + "/console/"))["pv_console"]
            async with ConsoleClient(f"http://127.0.0.1:{second.http.bound_port}") as other:
                other.http.cookie_jar.update_cookies({"pv_console": cookie.value})
                assert (await other.get("/console/inbox", allow_redirects=False))[0] == 200
                clock.advance(hours=7)
                assert (await other.get("/console/inbox", allow_redirects=False))[0] == 200  # still active
                clock.advance(hours=7)
                assert (await other.get("/console/inbox", allow_redirects=False))[0] == 200  # idle < 8h
                clock.current += first.console.sessions.absolute + timedelta(minutes=1)
                assert (await other.get("/console/inbox", allow_redirects=False))[0] == 303  # absolute limit
    finally:
        await second.stop()
        await first.stop()


async def test_admin_manages_users_and_deactivation_ends_sessions(running):
    async with ConsoleClient(running.base) as admin, ConsoleClient(running.base) as agent:
        await admin.login(running.users["admin"])
        await agent.login(running.users["agent"])
        status, page = await admin.post("/console/admin/users", {"username": "Bad Name!", "password": "short",
                                                                  "role": "agent"})
        assert status == 422 and 'id="error-username"' in page
        status, page = await admin.post("/console/admin/users", {"username": "luz", "password": "short",
                                                                  "role": "agent"})
        assert status == 422 and 'id="error-password"' in page
        status, _ = await admin.post("/console/admin/users", {"username": "luz", "password": PASSWORD,
                                                               "role": "manager", "display_name": "Luz"})
        assert status == 200
        users_by_name = {u.username: u for u in await running.service.console.users.list()}
        assert users_by_name["luz"].role == "manager"
        # The last admin cannot demote itself.
        me = users_by_name["admin1"]
        status, page = await admin.post(f"/console/admin/users/{me.id}", {"role": "agent"})
        assert status == 422 and "last active admin" in page
        status, _ = await admin.post(f"/console/admin/users/{users_by_name['agent1'].id}", {"active": "0"})
        assert status == 200
        assert (await agent.get("/console/inbox", allow_redirects=False))[0] == 303


async def _case(running) -> int:
    from posventa.core.domain import ChannelName, InboundMessage

    receipt = await running.service.inbox.receive(InboundMessage(
        channel=ChannelName.EMAIL, external_id="<csrf-probe@example.org>", sender="ana@example.org",
        text="La impresora no imprime", subject="Impresora"))
    return receipt.case_number
