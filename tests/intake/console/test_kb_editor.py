"""The KB tab's Markdown editor in headless Chromium: an agent writes the answer with an
image (uploaded through the editor, stored like an attachment), publishes, and the
(fake) Discourse receives the image on POST /uploads.json and a post that refers to that
upload, never to our console. Plus the sanitised rendering, over plain HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select

from posventa.core.domain import ChannelName, InboundMessage
from posventa.core.persistence import Database, upgrade
from posventa.core.persistence.schema import kb_images
from posventa.service import Service
from tests.browser import chromium_browser, collect_page_errors, save_screenshot
from tests.fakes.discourse_api import FakeDiscourse
from tests.intake.console.harness import PASSWORD, SQLITE_ONLY, ConsoleClient, Running, start_console
from tests.support import make_config

PNG_1X1 = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8cfc0f01f0005000201a5e1b1f20000000049454e44ae426082")


@pytest.fixture
async def stack(tmp_path) -> AsyncIterator[tuple[Running, FakeDiscourse]]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'console.db'}"
    db = Database(url)
    await upgrade(db)
    await db.dispose()
    async with FakeDiscourse() as discourse:
        service = Service(make_config(url, tmp_path, kb={
            "enabled": True, "api_url": discourse.base_url, "api_key": discourse.api_key, "publish_category": 1,
            "sync_interval_seconds": 3600, "semantic": False}))
        running = await start_console(service)
        try:
            yield running, discourse
        finally:
            await service.stop()


async def _until(check, timeout: float = 15.0) -> None:
    async def wait() -> None:
        while not check():
            await asyncio.sleep(0.05)
    await asyncio.wait_for(wait(), timeout)


async def test_an_answer_with_an_image_is_published_with_the_image_uploaded_to_discourse(stack, tmp_path):
    running, discourse = stack
    service = running.service
    receipt = await service.inbox.receive(InboundMessage(
        channel=ChannelName.EMAIL, external_id="<kb1@example.org>", sender="ana@example.org",
        subject="La impresora muestra el error 42", text="Sale un error 42 al imprimir."))
    number = receipt.case_number
    image = tmp_path / "panel-de-la-impresora.png"
    image.write_bytes(PNG_1X1)

    async with chromium_browser() as browser:
        context = await browser.new_context(locale="en-US", viewport={"width": 1280, "height": 900})
        page = await context.new_page()
        page.set_default_timeout(10_000)
        errors = collect_page_errors(page)
        await page.goto(f"{running.base}/console/cases/{number}?tab=kb")
        await page.fill("input[name=username]", running.users["agent"])
        await page.fill("input[name=password]", PASSWORD)
        await page.click("button[type=submit]")
        await page.wait_for_url(f"**/console/cases/{number}?tab=kb")

        # Both Markdown fields became editors; "Copy description" still fills the problem.
        answer = page.locator("#kb-answer-editor.EasyMDEContainer")
        await answer.locator(".CodeMirror").wait_for()
        assert await page.locator(".EasyMDEContainer").count() == 2
        await page.click("#copy-description")
        assert await page.evaluate("window.posventaEditors['kb-problem'].value()") == "Sale un error 42 al imprimir."

        # Write the answer with the keyboard, a bold word and a list, then add the image.
        await answer.locator(".CodeMirror").click()
        # (The editor continues a list on Enter, as agents expect, and ends it on an empty item.)
        await page.keyboard.type("Apagar la impresora y revisar el **panel**:\n\n- cable\nbandeja\n\n")
        async with page.expect_response(f"**/console/cases/{number}/kb/images") as uploaded:
            async with page.expect_file_chooser() as chooser:
                await answer.locator("button.upload-image").click()
            await (await chooser.value).set_files(str(image))
        assert (await uploaded.value).status == 201
        await page.wait_for_function(
            "window.posventaEditors['kb-answer'].value().includes('/console/kb/images/')")
        markdown = await page.evaluate("window.posventaEditors['kb-answer'].value()")
        assert "**panel**" in markdown and "- cable\n- bandeja\n" in markdown
        # The preview is the server's sanitised rendering, and shows our stored image.
        await answer.locator("button.preview").click()
        await answer.locator(".editor-preview-full img").wait_for()
        assert "<strong>panel</strong>" in await answer.locator(".editor-preview-full").inner_html()
        await save_screenshot(page, "console-kb-editor", full_page=True)
        await answer.locator("button.preview").click()

        await page.click("#kb-form button:has-text('Save')")
        await page.wait_for_selector("#notice")
        await page.locator("#kb-answer-rendered img").wait_for()
        await page.click("#kb-publish button")
        await page.wait_for_selector("#notice")
        await context.close()
        assert errors == []

    # The image was stored like an attachment, for this case.
    async with service.db.engine.connect() as conn:
        [stored] = (await conn.execute(select(kb_images))).all()
    assert stored.case_id == number and stored.content_type == "image/png" and stored.size == len(PNG_1X1)
    assert service.attachments.path_for(stored.sha256).read_bytes() == PNG_1X1

    # The KB channel published it: the upload first, then a post that refers to the upload.
    await _until(lambda: any(t.external_id == f"case-{number}" for t in discourse.topics.values()))
    [upload] = discourse.uploads
    assert upload.data == PNG_1X1 and upload.original_filename == "panel-de-la-impresora.png"
    [topic] = [t for t in discourse.topics.values() if t.external_id == f"case-{number}"]
    raw = topic.posts[0].raw
    assert f"]({upload.short_url})" in raw and "/console/" not in raw and "**panel**" in raw
    assert discourse.contract_violations == []
    async with service.db.engine.connect() as conn:
        assert (await conn.execute(select(kb_images.c.discourse_url))).scalar_one() == upload.short_url


@SQLITE_ONLY
async def test_kb_markdown_is_rendered_sanitised_and_images_are_refused_by_their_bytes(running, agent):
    receipt = await running.service.inbox.receive(InboundMessage(
        channel=ChannelName.EMAIL, external_id="<kb2@example.org>", sender="ana@example.org", text="x"))
    number = receipt.case_number
    hostile = ('**ok** <script>window.__pwned=1</script> <img src=x onerror="alert(1)"> '
               '[click](javascript:alert(1)) <a href="javascript:alert(2)" onclick="alert(3)">a</a>')
    await running.service.cases.update_kb_fields(number, agent="agent1", answer=hostile)
    status, page = await agent.get(f"/console/cases/{number}?tab=kb")
    assert status == 200
    rendered = page[page.index('id="kb-answer-rendered"'):]
    rendered = rendered[:rendered.index("</div>")]
    # Raw HTML stays text, the javascript: link is not a link: nothing runs, nothing links out.
    assert "<strong>ok</strong>" in rendered and "&lt;script&gt;" in rendered
    assert "<script" not in rendered and "<img" not in rendered and "<a " not in rendered
    # The preview endpoint is the same renderer.
    async with agent.http.post(f"{agent.base}/console/markdown/preview", data=hostile.encode(),
                               headers={"X-CSRF-Token": agent.csrf or "", "Content-Type": "text/plain"}) as r:
        assert r.status == 200 and "<script" not in await r.text() and "<strong>ok</strong>" in await r.text()
    # Only images, told by their bytes: a script named .png is refused, and a 1x1 PNG is taken.
    import aiohttp

    def upload(data: bytes, name: str) -> aiohttp.FormData:
        form = aiohttp.FormData()
        form.add_field("image", data, filename=name, content_type="image/png")
        return form

    url = f"{agent.base}/console/cases/{number}/kb/images"
    async with agent.http.post(url, data=upload(b"<script>alert(1)</script>", "x.png"),
                               headers={"X-CSRF-Token": agent.csrf or ""}) as r:
        assert r.status == 422 and (await r.json())["field"] == "image"
    async with agent.http.post(url, data=upload(PNG_1X1, "shot"), headers={"X-CSRF-Token": agent.csrf or ""}) as r:
        assert r.status == 201
        body = await r.json()
    assert body["url"].startswith("/console/kb/images/") and body["filename"] == "shot.png"
    async with agent.http.get(f"{agent.base}{body['url']}") as r:
        assert r.status == 200 and await r.read() == PNG_1X1 and r.headers["Content-Type"] == "image/png"
    # Without the CSRF token nothing is stored.
    async with agent.http.post(url, data=upload(PNG_1X1, "y.png")) as r:
        assert r.status == 403
