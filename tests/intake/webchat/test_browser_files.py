"""Files in the web chat, end to end in headless Chromium against a running Service: the
visitor attaches a photo in the real widget (the demo page), sees the upload's progress and
the thumbnail; the agent sees the preview on the case page in the console and downloads it.
A disguised executable is refused, with the reason shown in the widget. Both databases.

Waits are for DOM states (Playwright's ``expect``), never fixed sleeps.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest
from sqlalchemy import func, select

from posventa.core.persistence.schema import attachments, messages
from posventa.service import Service
from tests.browser import chromium_browser, collect_page_errors, save_screenshot
from tests.intake.console.harness import PASSWORD, Running, start_console
from tests.support import make_config

try:
    from playwright.async_api import expect
except ImportError:  # chromium_browser skips (or fails under POSVENTA_REQUIRE_ALL) with the reason
    expect = None

pytestmark = pytest.mark.browser

ELF = b"\x7fELF\x02\x01\x01\x00" + bytes(56) + b"\x90" * 4000


def png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A real (if plain) photo: one colour, big enough to be seen in a thumbnail."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    row = b"\x00" + bytes(rgb) * width
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(row * height)) + chunk(b"IEND", b""))


PHOTO = png(120, 80, (200, 40, 40))


@pytest.fixture
async def running(database_url, tmp_path):
    service = Service(make_config(database_url, tmp_path, webchat={"enabled": True}))
    running = await start_console(service)
    try:
        yield running
    finally:
        await service.stop()


async def count(running: Running, table) -> int:
    async with running.service.db.engine.connect() as conn:
        return (await conn.execute(select(func.count()).select_from(table))).scalar()


async def open_chat(browser, running: Running, locale: str = "es-ES"):
    context = await browser.new_context(locale=locale)
    page = await context.new_page()
    page.set_default_timeout(15_000)
    errors = collect_page_errors(page)
    await page.goto(f"{running.base}/chat/")
    await page.locator(".pvc-bubble").click()
    await expect(page.locator(".pvc-state")).to_have_attribute("data-state", "online")
    # The welcome offered uploads: the attach button is there.
    await expect(page.locator(".pvc-attach")).to_be_visible()
    return context, page, errors


async def test_a_photo_from_the_chat_is_seen_and_downloaded_by_the_agent(running):
    async with chromium_browser() as browser:
        context, page, errors = await open_chat(browser, running)
        await page.locator(".pvc-input").fill("Hola, la pava llegó rota")
        await page.locator(".pvc-send").click()
        await expect(page.locator('.pvc-from-customer[data-status="sent"]')).to_have_count(1)

        await page.locator(".pvc-file-input").set_input_files(
            {"name": "pava rota.png", "mimeType": "image/png", "buffer": PHOTO})
        upload = page.locator('.pvc-from-customer[data-upload="true"]')
        await expect(upload).to_have_attribute("data-status", "sent")
        thumb = upload.locator("img.pvc-thumb")
        await expect(thumb).to_be_visible()
        assert await thumb.evaluate("img => img.complete && img.naturalWidth") == 120
        await expect(upload.locator(".pvc-file-link")).to_have_text("pava rota.png")
        assert await upload.locator("progress").count() == 0  # the progress bar gave way to the file
        await save_screenshot(page, "webchat-upload-photo")

        # After a reload the file comes back from the server (fetched with the session's token).
        await page.reload()
        await page.locator(".pvc-bubble").click()
        replayed = page.locator(".pvc-from-customer img.pvc-thumb")
        await expect(replayed).to_have_count(1)
        await expect(replayed).to_have_js_property("naturalWidth", 120)
        assert errors == []
        await context.close()

        async with running.service.db.engine.connect() as conn:
            number = (await conn.execute(select(func.max(messages.c.case_id)))).scalar()

        # --- the agent, in the console ---------------------------------------------------
        agent = await browser.new_context(locale="en-US", accept_downloads=True)
        console = await agent.new_page()
        console.set_default_timeout(15_000)
        console_errors = collect_page_errors(console)
        await console.goto(f"{running.base}/console/cases/{number}")
        await console.fill("input[name=username]", running.users["agent"])
        await console.fill("input[name=password]", PASSWORD)
        await console.click("button[type=submit]")
        await console.wait_for_url(f"**/console/cases/{number}")
        preview = console.locator("#thread img.attachment-preview")
        await expect(preview).to_have_count(1)
        await expect(preview).to_have_js_property("naturalWidth", 120)
        link = console.locator("#thread a.attachment-download")
        await expect(link).to_have_text("pava rota.png")
        await save_screenshot(console, "console-case-webchat-photo")
        async with console.expect_download() as info:
            await link.click()
        download = await info.value
        assert download.suggested_filename == "pava rota.png"
        assert Path(await download.path()).read_bytes() == PHOTO
        # The download's headers: its real type, as an attachment, never sniffed.
        response = await console.request.get(f"{running.base}{await link.get_attribute('href')}")
        assert response.status == 200
        assert response.headers["content-type"] == "image/png"
        assert response.headers["content-disposition"].startswith("attachment;")
        assert response.headers["x-content-type-options"] == "nosniff"
        assert console_errors == []
        await agent.close()


async def test_a_disguised_executable_is_refused_with_the_reason_in_the_widget(running):
    async with chromium_browser() as browser:
        context, page, errors = await open_chat(browser, running, locale="es-ES")
        await page.locator(".pvc-file-input").set_input_files(
            {"name": "photo.jpg", "mimeType": "image/jpeg", "buffer": ELF})
        refused = page.locator('.pvc-from-customer[data-upload="true"]')
        await expect(refused).to_have_attribute("data-status", "failed")
        reason = "Ese tipo de archivo no se acepta. Puedes enviar: imágenes, PDF, texto."
        await expect(refused.locator(".pvc-file-error")).to_have_text(reason)
        await expect(page.locator(".pvc-notice")).to_have_text(reason)
        await save_screenshot(page, "webchat-upload-refused")
        assert await count(running, messages) == 0 and await count(running, attachments) == 0
        assert errors == []
        await context.close()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_file_dropped_on_the_chat_is_sent(running):
    async with chromium_browser() as browser:
        context, page, errors = await open_chat(browser, running)
        data_transfer = await page.evaluate_handle("""() => {
            const dt = new DataTransfer();
            dt.items.add(new File(["Serial: AB-123\\nBought in May.\\n"], "receipt.txt", {type: "text/plain"}));
            return dt;
        }""")
        panel = page.locator(".pvc-panel")
        await panel.dispatch_event("dragenter", {"dataTransfer": data_transfer})
        await expect(page.locator(".pvc-drop-hint")).to_have_text("Suelta el archivo para enviarlo")
        await panel.dispatch_event("drop", {"dataTransfer": data_transfer})
        sent = page.locator('.pvc-from-customer[data-upload="true"]')
        await expect(sent).to_have_attribute("data-status", "sent")
        await expect(sent.locator(".pvc-file-link")).to_have_text("receipt.txt")
        await expect(page.locator(".pvc-drop-hint")).to_be_hidden()
        assert await count(running, attachments) == 1
        assert errors == []
        await context.close()


MANUAL = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


async def test_an_agent_attaches_a_file_in_the_console_and_the_visitor_downloads_it(running):
    async with chromium_browser() as browser:
        context, page, errors = await open_chat(browser, running)
        await page.locator(".pvc-input").fill("Hola, ¿me pasan el manual de la pava?")
        await page.locator(".pvc-send").click()
        await expect(page.locator('.pvc-from-customer[data-status="sent"]')).to_have_count(1)
        async with running.service.db.engine.connect() as conn:
            number = (await conn.execute(select(func.max(messages.c.case_id)))).scalar()

        # --- the agent attaches the manual to the reply ------------------------------------
        agent = await browser.new_context(locale="es-ES")
        console = await agent.new_page()
        console.set_default_timeout(15_000)
        console_errors = collect_page_errors(console)
        await console.goto(f"{running.base}/console/cases/{number}")
        await console.fill("input[name=username]", running.users["agent"])
        await console.fill("input[name=password]", PASSWORD)
        await console.click("button[type=submit]")
        await console.wait_for_url(f"**/console/cases/{number}")
        await expect(console.locator("label[for=reply-files]")).to_have_text("Adjuntar archivos")

        # A disguised executable is refused next to the control, and nothing goes out.
        await console.fill("#reply-text", "Le envío el manual.")
        await console.locator("#reply-files").set_input_files(
            {"name": "manual.pdf", "mimeType": "application/pdf", "buffer": ELF})
        await console.click("#send-reply")
        await expect(console.locator("#error-files")).to_have_text(
            "manual.pdf: Ese tipo de archivo no se acepta. Puedes enviar: imágenes, PDF, texto.")
        await expect(console.locator("#reply-text")).to_have_value("Le envío el manual.")
        assert await count(running, attachments) == 0

        await console.locator("#reply-files").set_input_files(
            {"name": "manual de la pava.pdf", "mimeType": "application/pdf", "buffer": MANUAL})
        await console.click("#send-reply")
        await console.wait_for_url("**done=reply**")
        await expect(console.locator("#thread a.attachment-download")).to_have_text("manual de la pava.pdf")
        await save_screenshot(console, "console-reply-with-file")
        assert console_errors == []

        # --- the visitor sees the file on the agent's message and downloads it -------------
        reply = page.locator(".pvc-from-agent").filter(has_text="Le envío el manual.")
        link = reply.locator(".pvc-file-link")
        await expect(link).to_have_text("manual de la pava.pdf")
        await save_screenshot(page, "webchat-agent-file")
        async with page.expect_download() as info:
            await link.click()
        download = await info.value
        assert download.suggested_filename == "manual de la pava.pdf"
        assert Path(await download.path()).read_bytes() == MANUAL
        assert errors == []
        await context.close()
        await agent.close()
