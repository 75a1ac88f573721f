"""The console end to end in headless Chromium (Debian's, via Playwright) against a running
Service: log in, see a case that came in by email, watch live updates, reply and see the
reply arrive in an SMTP sink (the real outbound channel), publish to the (fake) Discourse, and, as a manager, find an expired
survey under inconsistencies. Screenshots go to test-artifacts/.

One browser and one service for the whole story keeps this fast; the rules each step
relies on are tested over plain HTTP on both databases in test_auth.py / test_pages.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import select

from posventa.core.domain import ChannelName, InboundMessage, ThreadHints
from posventa.core.persistence import Database, upgrade
from posventa.core.persistence.schema import outbox
from posventa.service import Service
from tests.browser import chromium_browser, collect_page_errors, save_screenshot
from tests.fakes.discourse_api import FakeDiscourse
from tests.fakes.smtp_sink import SmtpSink
from tests.intake.console.harness import PASSWORD, Running, start_console
from tests.support import free_port, make_config

XSS_TITLE = '<img src=x onerror="window.__pwned=1">Impresora rota'
XSS_BODY = 'La impresora muestra <script>window.__pwned=1</script> "error 42" al imprimir'


def _importable(module: str) -> bool:
    """Whether another engineer's part is in this checkout yet (the KB publisher, the
    SMTP channel); without it the test checks the same step at our own seam instead."""
    try:
        __import__(module)
    except ModuleNotFoundError:
        return False
    return True


@pytest.fixture
async def stack(tmp_path) -> AsyncIterator[tuple[Running, FakeDiscourse, SmtpSink]]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'console.db'}"
    db = Database(url)
    await upgrade(db)
    await db.dispose()
    async with FakeDiscourse() as discourse:
        sections = {}
        if _importable("posventa.kb.runtime"):
            sections["kb"] = {"enabled": True, "api_url": discourse.base_url, "api_key": discourse.api_key,
                              "publish_category": 1, "sync_interval_seconds": 3600}
        async with SmtpSink() as sink:
            smtp = _importable("posventa.intake.email.channel")
            if smtp:
                # The real outbound SMTP channel, relaying into a capturing server.
                sections["email"] = {"enabled": True, "listen_port": free_port(), "domains": ("example.com",),
                                     "address": "support@example.com",
                                     "outbound": {"host": "127.0.0.1", "port": sink.port}}
            service = Service(make_config(url, tmp_path, **sections))
            running = await start_console(service, record_email=not smtp)
            try:
                yield running, discourse, sink
            finally:
                await service.stop()


async def _expired_survey(running: Running) -> None:
    """A sale closed long ago whose survey window ended unanswered."""
    from posventa.core.surveys import Surveys
    from posventa.core.surveys.sales import Customer, SaleInput

    service = running.service
    surveys = Surveys.build(db=service.db, outgoing=service.outgoing, clock=service.clock,
                            config=service.config.surveys)
    await surveys.catalog.create_question({
        "code": "nps", "scale": "0-10", "weights": [-100, -100, -80, -60, -40, -20, 0, 20, 60, 80, 100],
        "text": {"es": "¿Nos recomendaría?", "pt": "Nos recomendaria?", "en": "Would you recommend us?"}})
    await surveys.catalog.create_rule({"name": "Post-venta 7 días", "start_after_days": 1, "expires_after_days": 7,
                                       "questions": ["nps"], "operators": [running.users["manager"]]})
    await surveys.catalog.create_profile({"name": "Estándar", "rules": ["Post-venta 7 días"]})
    await surveys.catalog.create_product({"code": "IMP-1", "name": "Impresora láser", "profile": "Estándar"})
    now = service.clock.now()
    [result] = await surveys.sales.record([SaleInput(
        external_id="S-0001", product="IMP-1", seller="<b>Vendedor</b> Uno", closed_at=now - timedelta(days=40),
        customer=Customer(name="Ana Pérez", email="ana@example.org"))])
    assert getattr(result, "instances", 0) == 1, result
    await surveys.scheduler.tick(now)


async def test_console_end_to_end(stack):
    running, discourse, sink = stack
    service = running.service
    first = await service.inbox.receive(InboundMessage(
        channel=ChannelName.EMAIL, external_id="<first@example.org>", sender="ana@example.org",
        sender_name="Ana Pérez", subject=XSS_TITLE, text=XSS_BODY))
    number = first.case_number
    await _expired_survey(running)

    async with chromium_browser() as browser:
        context = await browser.new_context(locale="en-US", viewport={"width": 1280, "height": 860})
        page = await context.new_page()
        page.set_default_timeout(10_000)
        errors = collect_page_errors(page)
        dialogs: list[str] = []
        page.on("dialog", lambda d: (dialogs.append(d.message), asyncio.ensure_future(d.dismiss())))

        # --- log in ------------------------------------------------------------------
        await page.goto(f"{running.base}/console/cases/{number}")
        assert "/console/login" in page.url
        await page.fill("input[name=username]", running.users["agent"])
        await page.fill("input[name=password]", "wrong password, sorry")
        await page.click("button[type=submit]")
        assert "Wrong username or password" in await page.inner_text("#login-error")
        await save_screenshot(page, "console-login-error")
        await page.fill("input[name=password]", PASSWORD)
        await page.click("button[type=submit]")
        # Back where we were going: the case that came in by email.
        await page.wait_for_url(f"**/console/cases/{number}")

        # --- the case: escaped, with the thread -------------------------------------------
        assert await page.inner_text("#case-title") == XSS_TITLE
        assert XSS_BODY in await page.inner_text("#thread")
        assert await page.evaluate("window.__pwned") is None
        assert await page.locator("#thread img").count() == 0

        # --- the inbox, and a live update ----------------------------------------------
        await page.click("nav[aria-label=Main] >> text=Inbox")
        await page.wait_for_selector(f'tr[data-case="{number}"]')
        assert XSS_TITLE in await page.inner_text(f'tr[data-case="{number}"] td.title')
        await page.wait_for_selector(".live-status.on")
        second = await service.inbox.receive(InboundMessage(
            channel=ChannelName.EMAIL, external_id="<second@example.org>", sender="leo@example.org",
            subject="La factura llegó duplicada", text="Me cobraron dos veces"))
        row = page.locator(f'tr[data-case="{second.case_number}"]')
        await row.wait_for(timeout=5000)  # no reload: the SSE event refreshed the table
        # The customer column: the name, else the address (Leo's mail had no display name).
        assert await page.inner_text(f'tr[data-case="{number}"] td.customer') == "Ana Pérez"
        assert await row.locator("td.customer").inner_text() == "leo@example.org"
        await save_screenshot(page, "console-inbox")

        # --- reply, and watch it go out on the customer's channel -----------------------------
        await page.click(f'tr[data-case="{number}"] td.title a')
        await page.fill("#reply-text", "Hola Ana: apague la impresora, espere 10 segundos y vuelva a encenderla.")
        await page.click("#reply-form button[type=submit]")
        await page.wait_for_selector("#notice")
        assert "(email)" in await page.inner_text("#notice")
        # Two acknowledgements (one per new case), then our reply.
        if running.email is None:  # through real SMTP into the sink
            captured = await sink.wait_for(3)
            [mail] = [c for c in captured if "apague la impresora" in c.message.get_body(("plain",)).get_content()]
            assert mail.rcpt_tos == ("ana@example.org",)
            assert f"#{number}" in mail.message["Subject"]
        else:  # at our Channel seam
            sent = await running.email.wait_for(3)
            [reply] = [m for m in sent if m.kind == "reply"]
            assert reply.recipient == "ana@example.org" and reply.case_number == number
            assert reply.text.startswith("Hola Ana: apague la impresora")
        # Its delivery state follows without a reload: the outbox's event refreshed the thread.
        await (page.locator("#thread li.msg", has_text="apague la impresora")
               .locator('[data-delivery="sent"]').wait_for(timeout=5000))
        # The customer answers in the same thread: it appears without a reload.
        await service.inbox.receive(InboundMessage(
            channel=ChannelName.EMAIL, external_id="<third@example.org>", sender="ana@example.org",
            subject=f"Re: {XSS_TITLE}", text="¡Funcionó, gracias!", thread=ThreadHints(case_number=number)))
        await page.locator("#thread", has_text="¡Funcionó, gracias!").wait_for(timeout=5000)
        await save_screenshot(page, "console-case", full_page=True)

        # --- KB tab: copy the description, answer, publish ---------------------------------
        await page.click("#tab-kb")
        # Problem and Answer are Markdown editors (EasyMDE); the page names them in posventaEditors.
        await page.locator("#kb-answer-editor .CodeMirror").wait_for()
        await page.evaluate("window.posventaEditors['kb-problem'].value('')")
        await page.click("#copy-description")  # JavaScript copies, no round trip
        assert await page.evaluate("window.posventaEditors['kb-problem'].value()") == XSS_BODY
        await page.evaluate("window.posventaEditors['kb-answer'].value("
                            "'Apagar y encender la impresora borra el error 42.')")
        await page.click("#kb-form button:has-text('Save')")
        await page.wait_for_selector("#notice")
        await page.click("#kb-publish button")
        await page.wait_for_selector("#notice")
        if getattr(service, "kb", None) is not None:
            # The KB publisher channel delivers it to the fake Discourse.
            for _ in range(100):
                if any("error 42" in t.title or "Impresora" in t.title for t in discourse.topics.values()):
                    break
                await asyncio.sleep(0.1)
            titles = [t.title for t in discourse.topics.values()]
            assert any("Impresora rota" in t for t in titles), titles
            for _ in range(50):
                if (await service.cases.get_case(number))["kb"]["url"]:
                    break
                await asyncio.sleep(0.1)
            await page.reload()
            await page.wait_for_selector("#kb-view-publication")
        else:
            async with service.db.engine.connect() as conn:
                kinds = (await conn.execute(select(outbox.c.channel, outbox.c.kind)
                                            .where(outbox.c.case_id == number))).all()
            assert ("kb", "kb_publish") in [tuple(k) for k in kinds]
        await save_screenshot(page, "console-kb-tab", full_page=True)

        # --- an agent cannot open the admin or manager pages -----------------------------------
        for path in ("/console/admin/users", "/console/panel"):
            response = await page.goto(f"{running.base}{path}")
            assert response.status == 403
            assert "Not allowed" in await page.inner_text("h1")

        # --- a manager: the panel shows the expired survey ------------------------------------
        await page.goto(f"{running.base}/console/inbox")
        await page.click("text=Log out")
        await page.wait_for_url("**/console/login")
        await page.fill("input[name=username]", running.users["manager"])
        await page.fill("input[name=password]", PASSWORD)
        await page.click("button[type=submit]")
        await page.wait_for_url("**/console/inbox")
        await page.click("nav[aria-label=Main] >> text=Survey panel")
        await page.wait_for_selector('#panel-items[data-section="inconsistencies"]')
        row = page.locator("#panel-items tbody tr[data-instance]")
        assert await row.count() == 1
        text = await row.inner_text()
        assert "Post-venta 7 días" in text and "S-0001" in text and "Expired" in text
        assert "<b>Vendedor</b> Uno" in text  # the seller's name, as text
        await save_screenshot(page, "console-panel-inconsistencies", full_page=True)
        await page.click("nav[aria-label=Main] >> text=Charts")
        await page.wait_for_selector("body[data-charts-ready='1']")
        await save_screenshot(page, "console-charts", full_page=True)

        await context.close()
        assert dialogs == [] and errors == []
