"""The real widget in real headless Chromium, against a scripted double of /chat/ws.

Every wait is for a DOM state or a frame at the double; time-dependent behaviour (backoff)
runs on Playwright's fake clock, so nothing here sleeps or depends on machine speed.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

import pytest

from tests.browser import chromium_browser, collect_page_errors, save_screenshot
from tests.intake.webchat.chat_double import ChatDouble

try:
    from playwright.async_api import expect
except ImportError:  # the page fixture skips (or fails under POSVENTA_REQUIRE_ALL) with the reason
    expect = None

if TYPE_CHECKING:
    from playwright.async_api import Page

pytestmark = pytest.mark.browser

UUID_V4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
XSS = '<img src=x onerror="window.__pwned = 1">'


async def open_chat(page: Page, chat: ChatDouble, **shop: Any) -> str:
    """Load the shop page, open the widget, wait until online; return the session token."""
    await page.goto(chat.shop_url(**shop))
    await page.locator(".pvc-bubble").click()
    await expect(page.locator(".pvc-state")).to_have_attribute("data-state", "online")
    return chat.sent("hello")[-1]["session"] or chat.session_tokens()[-1]


async def stored_state(page: Page, chat: ChatDouble) -> dict[str, Any]:
    key = f"posventa-chat:ws://{chat.widget_origin.removeprefix('http://')}/chat/ws"
    raw = await page.evaluate("key => localStorage.getItem(key)", key)
    return json.loads(raw)


async def send(page: Page, text: str) -> None:
    await page.locator(".pvc-input").fill(text)
    await page.locator(".pvc-send").click()


async def test_send_shows_sending_until_the_ack_marks_it_sent(page: Page, chat: ChatDouble) -> None:
    token = await open_chat(page, chat)
    hello = chat.sent("hello")[0]
    # With the browser's time zone: the outside-hours notice is then in the visitor's time.
    browser_tz = await page.evaluate("() => Intl.DateTimeFormat().resolvedOptions().timeZone")
    assert hello == {"type": "hello", "session": None, "last_seen": None, "lang": "es", "tz": browser_tz}
    await expect(page.locator(".pvc-input")).to_be_focused()

    chat.drop_acks = True
    await send(page, "Hola, mi pedido no llegó")
    bubble = page.locator(".pvc-from-customer")
    await expect(bubble).to_have_attribute("data-status", "sending")
    await expect(bubble.locator(".pvc-status")).to_have_text("Enviando…")
    await expect(page.locator(".pvc-input")).to_have_value("")

    [frame] = await chat.wait_for_frames("message")
    assert frame["text"] == "Hola, mi pedido no llegó"
    assert UUID_V4.match(frame["id"])
    assert [q["id"] for q in (await stored_state(page, chat))["queue"]] == [frame["id"]]

    ack = chat.ack_for(token, frame["id"])
    await chat.send_raw(token, ack)
    await expect(bubble).to_have_attribute("data-status", "sent")
    await expect(bubble).to_have_attribute("data-message-id", str(ack["message_id"]))
    await expect(bubble.locator(".pvc-status")).to_have_text("Enviado")
    await expect(page.locator(".pvc-case")).to_have_text("Caso n.º 1")
    state = await stored_state(page, chat)
    assert state["queue"] == []
    assert state["session"] == token


async def test_suggestions_become_safe_links_and_choices_send_a_choice_frame(page: Page, chat: ChatDouble) -> None:
    token = await open_chat(page, chat)
    await chat.push(
        token,
        sender="bot",
        text="Gracias, abrimos el caso 1.",
        suggestions=[
            {"title": "Cómo rastrear un envío", "url": "https://kb.example.com/t/rastrear/12", "score": 0.91},
            {"title": "Script", "url": "javascript:alert(1)", "score": 0.8},
            {"title": "Data", "url": "data:text/html,<b>x</b>", "score": 0.7},
            {"title": "Relative", "url": "/t/13", "score": 0.6},
        ],
        question="q-kind",
        choices=[{"label": "Solicitud", "value": "request"}, {"label": "Reclamo", "value": "complaint"}],
    )
    message = page.locator(".pvc-from-bot")
    await expect(message.locator(".pvc-suggestions-title")).to_have_text("Esto puede ayudarte")
    links = message.locator("a")
    await expect(links).to_have_count(1)  # only the http(s) URL becomes a link
    await expect(links).to_have_text("Cómo rastrear un envío")
    await expect(links).to_have_attribute("href", "https://kb.example.com/t/rastrear/12")
    await expect(links).to_have_attribute("target", "_blank")
    await expect(links).to_have_attribute("rel", "noopener noreferrer")

    await message.get_by_role("button", name="Reclamo").click()
    [choice] = await chat.wait_for_frames("choice")
    assert choice["question"] == "q-kind" and choice["value"] == "complaint"
    assert UUID_V4.match(choice["id"])
    for label in ("Solicitud", "Reclamo"):
        await expect(message.get_by_role("button", name=label)).to_be_disabled()
    await expect(message.get_by_role("button", name="Reclamo")).to_have_attribute("aria-pressed", "true")
    await expect(page.locator('.pvc-from-customer[data-status="sent"]')).to_have_text(re.compile("Reclamo"))

    # The answer survives a reload: the replayed question comes back already answered.
    await page.reload()
    await page.locator(".pvc-bubble").click()
    await expect(page.locator(".pvc-from-bot").get_by_role("button", name="Solicitud")).to_be_disabled()
    assert len(chat.sent("choice")) == 1


async def test_reload_keeps_session_and_history_without_duplicates(page: Page, chat: ChatDouble) -> None:
    token = await open_chat(page, chat)
    await send(page, "uno")
    await expect(page.locator('.pvc-msg[data-status="sent"]')).to_have_count(1)
    dos = await chat.push(token, text="dos")
    await expect(page.locator(".pvc-from-agent")).to_have_text(re.compile("dos"))

    await page.reload()
    # A returning visitor reconnects at once, without opening the panel, and asks for the
    # whole history (last_seen null) with the same session.
    await chat.wait_for_frames("hello", 2)
    assert chat.sent("hello")[1]["session"] == token
    assert chat.sent("hello")[1]["last_seen"] is None
    log = page.locator(".pvc-log .pvc-msg")
    await expect(log).to_have_count(2)
    await expect(log.locator(".pvc-text")).to_have_text(["uno", "dos"])
    ids = await log.evaluate_all("nodes => nodes.map(n => n.dataset.messageId)")
    assert len(set(ids)) == 2
    # A server that replays a message twice still shows it once.
    await chat.send_raw(token, {"type": "message", "message_id": dos, "from": "agent", "text": "dos"})

    # Seen before the reload, so not unread; a new agent message while closed is.
    badge = page.locator(".pvc-badge")
    await expect(badge).to_be_hidden()
    await chat.push(token, text="tres")
    await expect(badge).to_have_text("1")
    await page.locator(".pvc-bubble").click()
    await expect(badge).to_be_hidden()
    await expect(log.locator(".pvc-text")).to_have_text(["uno", "dos", "tres"])
    assert chat.history_texts(token) == ["uno", "dos", "tres"]


async def test_offline_messages_are_queued_and_resent_once_with_the_same_id(page: Page, chat: ChatDouble) -> None:
    await page.clock.install()
    token = await open_chat(page, chat)
    agent_id = await chat.push(token, text="¿En qué podemos ayudarte?")
    await expect(page.locator(".pvc-from-agent")).to_have_count(1)

    # "A" reaches the server and is committed, but its ack is lost with the connection.
    chat.drop_acks = True
    await send(page, "A")
    [frame_a] = await chat.wait_for_frames("message")
    await chat.go_offline()
    await expect(page.locator(".pvc-state")).to_have_attribute("data-state", "offline")

    # "B" is written while offline: shown as sending and kept in localStorage.
    await send(page, "B")
    await expect(page.locator('.pvc-msg[data-status="sending"]')).to_have_count(2)
    queued = (await stored_state(page, chat))["queue"]
    assert [q["text"] for q in queued] == ["A", "B"]
    assert len(chat.sent("message")) == 1

    chat.drop_acks = False
    chat.go_online()
    await page.clock.fast_forward(31_000)  # past the backoff cap, whatever the attempt count
    await expect(page.locator(".pvc-state")).to_have_attribute("data-state", "online")
    await expect(page.locator('.pvc-msg[data-status="sending"]')).to_have_count(0)

    resumed = chat.sent("hello")[-1]
    assert resumed["session"] == token and resumed["last_seen"] == agent_id
    frames = chat.sent("message")
    frame_b = frames[-1]
    assert [f["id"] for f in frames] == [frame_a["id"], frame_a["id"], frame_b["id"]]
    assert chat.history_texts(token) == ["¿En qué podemos ayudarte?", "A", "B"]
    # "A" came back both in the history replay and as the ack of the resend: shown once.
    await expect(page.locator(".pvc-from-customer .pvc-text")).to_have_text(["A", "B"])
    assert (await stored_state(page, chat))["queue"] == []


async def test_messages_queued_offline_survive_a_reload(page: Page, chat: ChatDouble) -> None:
    await page.clock.install()
    token = await open_chat(page, chat)
    await chat.go_offline()
    await expect(page.locator(".pvc-state")).to_have_attribute("data-state", "offline")
    await send(page, "escrito sin conexión")
    await expect(page.locator('.pvc-msg[data-status="sending"]')).to_have_count(1)

    await page.reload()  # still offline: the queued message is shown from localStorage
    await page.locator(".pvc-bubble").click()
    pending = page.locator('.pvc-msg[data-status="sending"]')
    await expect(pending).to_have_text(re.compile("escrito sin conexión"))
    assert chat.sent("message") == []

    chat.go_online()
    await page.clock.fast_forward(31_000)
    await expect(page.locator('.pvc-msg[data-status="sent"]')).to_have_count(1)
    assert len(chat.sent("message")) == 1
    assert chat.history_texts(token) == ["escrito sin conexión"]


async def test_snippet_in_head_and_pasted_twice_makes_one_widget(page: Page, chat: ChatDouble) -> None:
    await open_chat(page, chat, in_head=True, copies=2)
    assert await page.locator("#posventa-chat").count() == 1
    await send(page, "hola")
    await expect(page.locator('.pvc-msg[data-status="sent"]')).to_have_count(1)
    assert len(chat.sent("hello")) == 1


@pytest.mark.parametrize("random", [0.0, 0.5])
async def test_reconnect_backoff_doubles_with_jitter_up_to_the_cap(page: Page, chat: ChatDouble, random: float) -> None:
    # Math.random pinned, so "equal jitter" (half the ceiling plus a random half) is exact.
    await page.add_init_script(f"Math.random = () => {random}")
    await page.clock.install()
    await open_chat(page, chat)
    now = await page.evaluate("Date.now()")
    await page.clock.pause_at(now + 1000)
    await chat.go_offline()
    state = page.locator(".pvc-state")
    await expect(state).to_have_attribute("data-state", "offline")

    for attempt in range(7):
        ceiling = min(30_000, 1000 * 2**attempt)  # 1 s doubling, capped at 30 s
        delay = int(ceiling / 2 + random * ceiling / 2)
        await page.clock.fast_forward(delay - 1)
        await expect(state).to_have_attribute("data-state", "offline")
        assert chat.refused == attempt
        await page.clock.fast_forward(1)
        await chat.wait_for(lambda d, n=attempt + 1: d.refused == n)
        await expect(state).to_have_attribute("data-state", "offline")

    # The online event skips the rest of a long wait; a welcome resets the backoff.
    chat.go_online()
    await page.evaluate("window.dispatchEvent(new Event('online'))")
    await expect(state).to_have_attribute("data-state", "online")
    await chat.go_offline()
    await expect(state).to_have_attribute("data-state", "offline")
    await page.clock.fast_forward(int(500 + random * 500))
    await chat.wait_for(lambda d: d.refused == 8)


async def test_markup_from_server_and_user_is_shown_as_text(page: Page, chat: ChatDouble) -> None:
    token = await open_chat(page, chat)
    await chat.push(
        token,
        text=XSS,
        suggestions=[{"title": "<b>bold</b>" + XSS, "url": "https://kb.example.com/?q=<script>", "score": 1}],
        question="<script>q</script>",
        choices=[{"label": XSS, "value": "x"}],
    )
    # Malformed frames are ignored without breaking the widget (the fixture fails on any
    # uncaught page error).
    await chat.send_text(token, "not json {")
    await chat.send_raw(token, {"type": "message", "message_id": {"x": 1}, "text": XSS})
    await chat.send_raw(token, {"type": "message", "message_id": 5, "from": "agent", "text": 42})
    await chat.send_raw(token, {"type": "ack", "id": None, "message_id": 3})
    await send(page, XSS)
    await expect(page.locator('.pvc-from-customer[data-status="sent"] .pvc-text')).to_have_text(XSS)
    await expect(page.locator(".pvc-from-agent .pvc-text").first).to_have_text(XSS)
    await expect(page.locator(".pvc-link")).to_have_text("<b>bold</b>" + XSS)
    await expect(page.locator(".pvc-choice")).to_have_text(XSS)
    assert await page.locator(".pvc-root img, .pvc-root b, .pvc-root script").count() == 0
    assert await page.evaluate("window.__pwned") is None
    assert await page.evaluate("Object.keys(window).filter(k => /posventa|pvc/i.test(k))") == ["PosventaChat"]


async def test_unauthorized_drops_the_session_and_says_hello_again(page: Page, chat: ChatDouble) -> None:
    old = await open_chat(page, chat)
    await send(page, "mensaje de la sesión vieja")
    await expect(page.locator('.pvc-msg[data-status="sent"]')).to_have_count(1)
    chat.forget(old)

    await page.reload()
    await chat.wait_for_frames("hello", 3)
    assert [h["session"] for h in chat.sent("hello")] == [None, old, None]
    await page.locator(".pvc-bubble").click()
    await expect(page.locator(".pvc-state")).to_have_attribute("data-state", "online")
    new = (await stored_state(page, chat))["session"]
    assert new not in (None, old)
    await expect(page.locator(".pvc-notice")).to_have_text("La sesión expiró; empezamos una nueva.")
    await expect(page.locator(".pvc-msg")).to_have_count(0)
    await send(page, "hola de nuevo")
    await expect(page.locator('.pvc-msg[data-status="sent"]')).to_have_count(1)
    assert chat.history_texts(new) == ["hola de nuevo"]


async def test_unauthorized_for_a_new_session_backs_off_instead_of_looping(page: Page, chat: ChatDouble) -> None:
    await page.clock.install()
    chat.refuse_new_sessions = True
    await page.goto(chat.shop_url())
    now = await page.evaluate("Date.now()")
    await page.clock.pause_at(now + 1000)
    await page.locator(".pvc-bubble").click()
    state = page.locator(".pvc-state")
    await chat.wait_for_frames("hello")
    await expect(state).to_have_attribute("data-state", "offline")
    assert len(chat.sent("hello")) == 1  # the clock is paused: no retry until it moves

    chat.refuse_new_sessions = False
    await page.clock.fast_forward(1000)
    await expect(state).to_have_attribute("data-state", "online")
    assert [h["session"] for h in chat.sent("hello")] == [None, None]


async def test_errors_without_an_id_apply_to_the_oldest_pending_message(page: Page, chat: ChatDouble) -> None:
    await page.clock.install()
    await open_chat(page, chat)
    chat.reject_next = "too_large"
    await send(page, "demasiado")
    failed = page.locator('.pvc-msg[data-status="failed"]')
    await expect(failed).to_have_text(re.compile("No enviado"))
    await expect(page.locator(".pvc-notice")).to_have_text("El mensaje es demasiado largo.")

    chat.reject_next = "rate_limited"
    await send(page, "despacio")
    await expect(page.locator(".pvc-notice")).to_have_text(re.compile("Demasiados mensajes"))
    await chat.wait_for_frames("message", 2)
    await page.clock.fast_forward(1000)  # the rate-limit retry waits one backoff step
    await expect(page.locator('.pvc-msg[data-status="sent"]')).to_have_text(re.compile("despacio"))
    ids = [f["id"] for f in chat.sent("message")]
    assert ids[1] == ids[2] and len(ids) == 3
    assert [q["text"] for q in (await stored_state(page, chat))["queue"]] == []


LANGUAGE_CASES = [  # (data-lang, browser locale, expected widget language)
    ("pt", "es-ES", "pt"),
    ("en", "pt-BR", "en"),
    (None, "pt-BR", "pt"),
    (None, "en-US", "en"),
    ("fr", "de-DE", "es"),
]
STRINGS = {  # title, placeholder, send button, online state, suggestions heading
    "es": ("Soporte", "Escribe tu mensaje…", "Enviar", "En línea", "Esto puede ayudarte"),
    "pt": ("Suporte", "Escreva sua mensagem…", "Enviar", "Online", "Isto pode ajudar"),
    "en": ("Support", "Type your message…", "Send", "Online", "This may help"),
}


async def test_language_comes_from_data_lang_then_browser_then_spanish(chat: ChatDouble) -> None:
    # One browser, one fresh context per case: a launch per case would triple the time.
    async with chromium_browser() as browser:
        for data_lang, locale, expected in LANGUAGE_CASES:
            context = await browser.new_context(locale=locale)
            page = await context.new_page()
            errors = collect_page_errors(page)
            token = await open_chat(page, chat, lang=data_lang)
            assert chat.sent("hello")[-1]["lang"] == expected, (data_lang, locale)
            title, placeholder, send_label, online, heading = STRINGS[expected]
            url = "https://kb.example.com/t/1"
            await chat.push(token, text="kb", suggestions=[{"title": "t", "url": url, "score": 1}])
            await expect(page.locator(".pvc-title")).to_have_text(title)
            await expect(page.locator(".pvc-input")).to_have_attribute("placeholder", placeholder)
            await expect(page.locator(".pvc-send")).to_have_text(send_label)
            await expect(page.locator(".pvc-state")).to_have_text(online)
            await expect(page.locator(".pvc-suggestions-title")).to_have_text(heading)
            assert errors == [], (data_lang, locale)
            await context.close()


async def test_keyboard_only_use_and_uuid_fallback(page: Page, chat: ChatDouble) -> None:
    # Plain-http shops have no crypto.randomUUID; the fallback must still give v4 UUIDs.
    await page.add_init_script("delete Crypto.prototype.randomUUID")
    await page.goto(chat.shop_url())
    bubble = page.locator(".pvc-bubble")
    await bubble.focus()
    await page.keyboard.press("Enter")
    await expect(page.locator(".pvc-panel")).to_be_visible()
    await expect(bubble).to_have_attribute("aria-expanded", "true")
    await expect(page.locator(".pvc-log")).to_have_attribute("role", "log")
    await expect(page.locator(".pvc-log")).to_have_attribute("aria-live", "polite")
    await expect(page.locator(".pvc-input")).to_be_focused()
    await expect(page.locator(".pvc-state")).to_have_attribute("data-state", "online")

    await page.keyboard.type("primera línea")
    await page.keyboard.press("Shift+Enter")  # a new line, not a send
    await page.keyboard.type("segunda")
    await page.keyboard.press("Enter")
    [frame] = await chat.wait_for_frames("message")
    assert frame["text"] == "primera línea\nsegunda"
    assert UUID_V4.match(frame["id"])
    await expect(page.locator('.pvc-msg[data-status="sent"]')).to_have_count(1)

    await page.keyboard.press("Escape")
    await expect(page.locator(".pvc-panel")).to_be_hidden()
    await expect(bubble).to_be_focused()
    await expect(bubble).to_have_attribute("aria-expanded", "false")

    # The one global: open()/close() for the host page (and tests).
    await page.evaluate("PosventaChat.open()")
    await expect(page.locator(".pvc-panel")).to_be_visible()
    await page.evaluate("PosventaChat.close()")
    await expect(page.locator(".pvc-panel")).to_be_hidden()


async def test_prechat_form_sends_name_and_email_in_hello(page: Page, chat: ChatDouble) -> None:
    await page.goto(chat.shop_url(prechat=True))
    await page.locator(".pvc-bubble").click()
    await expect(page.locator(".pvc-composer")).to_be_hidden()
    await expect(page.locator(".pvc-name")).to_be_focused()
    await page.locator(".pvc-name").fill("Ana")
    await page.locator(".pvc-email").fill("no-es-un-correo")
    await page.locator(".pvc-start").click()
    await expect(page.locator(".pvc-notice")).to_have_text("Revisa el nombre y el correo electrónico.")
    assert chat.sent("hello") == []

    await page.locator(".pvc-email").fill("ana@example.com")
    await page.keyboard.press("Enter")
    [hello] = await chat.wait_for_frames("hello")
    assert hello["name"] == "Ana" and hello["email"] == "ana@example.com" and hello["session"] is None
    await expect(page.locator(".pvc-input")).to_be_focused()
    await expect(page.locator(".pvc-prechat")).to_be_hidden()


async def test_demo_page_embeds_the_widget_and_a_screenshot_is_saved(page: Page, chat: ChatDouble) -> None:
    await page.goto(f"{chat.widget_origin}/chat/demo.html")
    await page.get_by_role("button", name="Abrir el chat de soporte").click()
    await expect(page.locator(".pvc-state")).to_have_attribute("data-state", "online")
    token = chat.session_tokens()[0]
    await send(page, "Mi impresora no enciende desde ayer.")
    await expect(page.locator('.pvc-msg[data-status="sent"]')).to_have_count(1)
    await chat.push(
        token,
        sender="bot",
        text="Gracias. Mientras un agente lo revisa:",
        suggestions=[{"title": "La impresora no enciende", "url": "https://kb.example.com/t/42", "score": 0.88}],
        question="kind",
        choices=[{"label": "Solicitud", "value": "request"}, {"label": "Incidente", "value": "incident"}],
    )
    await expect(page.locator(".pvc-choice")).to_have_count(2)
    path = await save_screenshot(page, "webchat-widget-demo")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
