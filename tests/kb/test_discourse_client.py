"""The real Discourse client against the fake Discourse, over real HTTP on 127.0.0.1.

Time is a ManualClock shared by the client's throttle and the fake's rate bucket, so
throttling is exercised without real waiting and without asserting on wall-clock speed.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import datetime
import aiohttp
import pytest
from aiohttp import web

from posventa.kb.discourse import (
    DiscourseAuthError,
    DiscourseBadResponse,
    DiscourseClient,
    DiscourseNotFound,
    DiscourseRejected,
    DiscourseUnavailable,
)
from posventa.kb.webhook_signature import InvalidWebhook, WebhookEvent, WebhookKind, parse_webhook, verify_webhook_signature
from tests.fakes.discourse_api import CONTRACT_GAPS, Contract, FakeDiscourse, sign

API_KEY = "k-7f3a9c1e5b2d4f6a8c0e"


class ManualClock:
    """time.monotonic and asyncio.sleep for tests: sleeping just moves the clock."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture(scope="module")
def contract() -> Contract:
    """Parsing the 700 kB contract once per module keeps each fake cheap to start."""
    return Contract()


@pytest.fixture
async def fake(clock: ManualClock, contract: Contract) -> AsyncIterator[FakeDiscourse]:
    async with FakeDiscourse(api_key=API_KEY, clock=clock, contract=contract) as server:
        yield server


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def make_client(session: aiohttp.ClientSession, fake: FakeDiscourse, clock: ManualClock, **kw: object) -> DiscourseClient:
    options: dict[str, object] = {"api_user": "system", "api_key": API_KEY, "clock": clock, "sleep": clock.sleep}
    options.update(kw)
    return DiscourseClient(session=session, base_url=fake.base_url, **options)  # type: ignore[arg-type]


@pytest.fixture
def client(session: aiohttp.ClientSession, fake: FakeDiscourse, clock: ManualClock) -> DiscourseClient:
    return make_client(session, fake, clock)


def pages_requested(fake: FakeDiscourse, path_start: str) -> list[str]:
    return [dict(r.query).get("page", "0") for r in fake.requests if r.path.startswith(path_start)]


def seed(fake: FakeDiscourse, count: int, *, category_id: int = 1) -> list[int]:
    return [fake.add_topic(f"Known problem number {i:03d}", f"Body text for problem {i}.", category_id=category_id).id
            for i in range(count)]


# --------------------------------------------------------------------------- listing


async def test_walks_exactly_full_pages_until_an_empty_one(fake: FakeDiscourse, client: DiscourseClient) -> None:
    ids = seed(fake, 60)

    listed = [t.id async for t in client.iter_topics()]

    assert listed == list(reversed(ids))  # newest bump first
    # Two full pages carry more_topics_url; only the empty third page ends the walk.
    assert pages_requested(fake, "/latest.json") == ["0", "1", "2"]


async def test_stops_after_a_partial_page(fake: FakeDiscourse, client: DiscourseClient) -> None:
    seed(fake, 45)

    first = await client.latest(page=0)
    listed = [t async for t in client.iter_topics()]

    assert first.has_more and len(first.topics) == 30
    assert len(listed) == 45 and len({t.id for t in listed}) == 45
    assert pages_requested(fake, "/latest.json") == ["0", "0", "1"]


async def test_category_listing_pages_on_per_page(fake: FakeDiscourse, client: DiscourseClient) -> None:
    printers = fake.add_category("Printers")
    mine = seed(fake, 31, category_id=printers)
    seed(fake, 5)  # another category, not indexed

    listed = [t.id async for t in client.iter_topics(category_ids=[printers])]

    assert sorted(listed) == sorted(mine)
    assert [r.path for r in fake.requests].count(f"/c/{printers}/show.json") == 1  # slug looked up once
    assert pages_requested(fake, f"/c/printers/{printers}.json") == ["0", "1"]


async def test_incremental_sync_stops_at_bumped_since_but_not_at_pinned(
    fake: FakeDiscourse, client: DiscourseClient
) -> None:
    old_pinned = fake.add_topic("About this knowledge base", "Read this before posting anything.", pinned=True)
    ids = seed(fake, 70)
    fresh = ids[-10:]
    since = fake.topics[fresh[0]].bumped_at

    listed = [t.id async for t in client.iter_topics(bumped_since=since)]

    assert listed == [old_pinned.id, *reversed(fresh)]
    assert pages_requested(fake, "/latest.json") == ["0"]


async def test_new_reply_brings_a_topic_back_into_an_incremental_sync(
    fake: FakeDiscourse, client: DiscourseClient
) -> None:
    ids = seed(fake, 5)
    since = fake.tick()
    fake.add_reply(ids[0], "Another customer had the same issue; this fixed it.")

    assert [t.id async for t in client.iter_topics(bumped_since=since)] == [ids[0]]


async def test_naive_bumped_since_is_refused(client: DiscourseClient) -> None:
    with pytest.raises(ValueError):
        [t async for t in client.iter_topics(bumped_since=datetime(2024, 1, 1))]


# --------------------------------------------------------------------------- one topic


async def test_topic_with_accepted_answer(fake: FakeDiscourse, client: DiscourseClient) -> None:
    cat = fake.add_category("Printers")
    seeded = fake.add_topic(
        "Printer shows error 42 on boot", "My printer shows E42 at start.",
        replies=["Did you try the other tray?", "Update the firmware to 3.1 and restart it."],
        category_id=cat, tags=["printer", "firmware"], accepted_post_number=3,
    )

    topic = await client.topic(seeded.id)

    assert topic.title == "Printer shows error 42 on boot"
    assert topic.category_id == cat and topic.tags == ("printer", "firmware")
    assert topic.first_post_text == "My printer shows E42 at start."
    assert topic.accepted_answer_text == "Update the firmware to 3.1 and restart it."
    assert topic.url == f"{fake.base_url}/t/printer-shows-error-42-on-boot/{seeded.id}"
    assert not any(r.path.endswith("/posts.json") for r in fake.requests)


async def test_accepted_answer_outside_the_first_chunk_is_fetched(fake: FakeDiscourse, client: DiscourseClient) -> None:
    replies = [f"Reply number {n}" for n in range(2, 61)]
    seeded = fake.add_topic("Scanner loses its network settings", "After a reboot the IP is gone.",
                            replies=replies, accepted_post_number=57)
    for number in range(30, 40):  # deleted posts leave gaps: post 57 is no longer at index 56
        fake.delete_post(seeded.id, number)

    topic = await client.topic(seeded.id)

    assert topic.accepted_answer_text == "Reply number 57"
    assert any(r.path == f"/t/{seeded.id}/posts.json" for r in fake.requests)


async def test_topic_without_answer_and_hostile_html(fake: FakeDiscourse, client: DiscourseClient) -> None:
    seeded = fake.add_topic(
        "Invoice PDF is blank when printed", "ignored",
        first_post_cooked='<p>Steps&nbsp;&amp; tips:<br>open <b>Settings</b></p><script>alert("x")</script>'
                          "<style>p{}</style><ul><li>one</li><li>two</li></ul><p>Done &lt;ok&gt;",
    )

    topic = await client.topic(seeded.id)

    assert topic.accepted_answer_text is None
    assert topic.first_post_text == "Steps & tips:\nopen Settings\n\n- one\n- two\n\nDone <ok>"


async def test_editing_the_question_moves_updated_at(fake: FakeDiscourse, client: DiscourseClient) -> None:
    seeded = fake.add_topic("Router keeps dropping the VPN", "It drops every ten minutes.")
    before = await client.topic(seeded.id)
    fake.edit_topic(seeded.id, body="It drops every ten minutes, only on Wi-Fi.")

    after = await client.topic(seeded.id)

    assert after.updated_at > before.updated_at
    assert after.first_post_text == "It drops every ten minutes, only on Wi-Fi."


async def test_deleted_topic_is_not_found(fake: FakeDiscourse, client: DiscourseClient) -> None:
    seeded = fake.add_topic("Temporary topic to be removed", "This topic will be deleted soon.")
    fake.delete_topic(seeded.id)

    with pytest.raises(DiscourseNotFound):
        await client.topic(seeded.id)


# --------------------------------------------------------------------------- search


async def test_search_joins_posts_to_their_topics(fake: FakeDiscourse, client: DiscourseClient) -> None:
    cat = fake.add_category("Billing")
    a = fake.add_topic("Invoice shows the wrong tax rate", "The VAT on my invoice is wrong.",
                       replies=["Set the tax rate in settings; the VAT follows."], category_id=cat, tags=["tax"])
    fake.add_topic("Unrelated printer question", "Paper jam in tray two.")

    hits = await client.search("VAT")

    assert [(h.topic_id, h.post_number) for h in hits] == [(a.id, 1)]  # one hit per topic, best first
    hit = hits[0]
    assert (hit.title, hit.category_id, hit.tags) == ("Invoice shows the wrong tax rate", cat, ("tax",))
    assert hit.blurb == "The VAT on my invoice is wrong."
    assert hit.url == client.topic_url(a.slug, a.id)


async def test_blank_search_sends_nothing(fake: FakeDiscourse, client: DiscourseClient) -> None:
    assert await client.search("   ") == []
    assert fake.requests == []


# --------------------------------------------------------------------------- publishing

TITLE = "Printer error 42 after the firmware update"
BODY = "Problem: E42 on boot.\n\nAnswer: reinstall firmware 3.1."


async def test_create_topic_and_recreate_with_the_same_external_id(fake: FakeDiscourse, client: DiscourseClient) -> None:
    cat = fake.add_category("Solutions")

    created = await client.create_topic(title=TITLE, raw=BODY, category=cat, external_id="case-1042")
    again = await client.create_topic(title=TITLE, raw=BODY, category=cat, external_id="case-1042")

    assert again == created
    topic = fake.topics[created.topic_id]
    assert (topic.title, topic.category_id, topic.external_id) == (TITLE, cat, "case-1042")
    assert created.post_id == topic.posts[0].id
    assert created.url == client.topic_url(topic.slug, topic.id)
    assert sum(1 for r in fake.requests if r.method == "POST") == 1


async def test_create_whose_response_was_lost_is_found_on_retry(fake: FakeDiscourse, client: DiscourseClient) -> None:
    fake.fail_next("/posts.json", 502, after_processing=True)  # Discourse created it, the proxy timed out

    with pytest.raises(DiscourseUnavailable):
        await client.create_topic(title=TITLE, raw=BODY, category=None, external_id="case-7")
    retried = await client.create_topic(title=TITLE, raw=BODY, category=None, external_id="case-7")

    assert [t.id for t in fake.topics.values() if t.external_id == "case-7"] == [retried.topic_id]


async def test_external_id_taken_422_is_resolved_to_the_existing_topic(
    fake: FakeDiscourse, client: DiscourseClient
) -> None:
    # A concurrent attempt creates the topic between our lookup and our POST.
    existing = fake.add_topic(TITLE, BODY, external_id="case-9")
    fake.fail_next("/t/external_id/", 404, body={"errors": ["Not found."], "error_type": "not_found"})

    created = await client.create_topic(title=TITLE, raw=BODY, category=None, external_id="case-9")

    assert created.topic_id == existing.id
    assert len(fake.topics) == 1


async def test_lengths_are_checked_before_sending(fake: FakeDiscourse, client: DiscourseClient) -> None:
    with pytest.raises(DiscourseRejected) as caught:
        await client.create_topic(title="Too short", raw="Also short", category=None, external_id="case-1")

    assert caught.value.errors == (
        "Title is too short: at least 15 characters are needed.",
        "Body is too short: at least 20 characters are needed.",
    )
    assert fake.requests == []


async def test_bad_external_id_is_refused_before_sending(fake: FakeDiscourse, client: DiscourseClient) -> None:
    with pytest.raises(DiscourseRejected, match="external_id"):
        await client.create_topic(title=TITLE, raw=BODY, category=None, external_id="../t/1")
    assert fake.requests == []


async def test_create_post_422_messages_reach_the_caller(
    fake: FakeDiscourse, session: aiohttp.ClientSession, clock: ManualClock
) -> None:
    lenient = make_client(session, fake, clock, min_title_length=5, min_post_length=5)

    with pytest.raises(DiscourseRejected) as caught:
        await lenient.create_topic(title="Short title", raw="Short body", category=None, external_id="case-3")

    assert caught.value.status == 422
    assert caught.value.errors == (
        "Title is too short (minimum is 15 characters)",
        "Body is too short (minimum is 20 characters)",
    )
    assert fake.topics.keys() == {*()}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"errors": ["Category is invalid."], "error_type": "invalid_parameters"}, ("Category is invalid.",)),
        ({"action": "create_post", "errors": ["Body is too similar to what you recently posted"]},
         ("Body is too similar to what you recently posted",)),
        ({"failed": "FAILED", "message": "Topic is closed."}, ("Topic is closed.",)),
        (b"<html>Bad request</html>", ()),
    ],
)
async def test_error_shapes_become_rejections(
    fake: FakeDiscourse, client: DiscourseClient, body: object, expected: tuple[str, ...]
) -> None:
    fake.fail_next("/search.json", 400, body=body)  # type: ignore[arg-type]

    with pytest.raises(DiscourseRejected) as caught:
        await client.search("anything")

    assert caught.value.errors == expected and caught.value.status == 400


# --------------------------------------------------------------------------- failures


async def test_429_retry_after_from_the_header(fake: FakeDiscourse, client: DiscourseClient) -> None:
    fake.fail_next("/latest.json", 429, body=b"Slow down", headers={"Retry-After": "12"})

    with pytest.raises(DiscourseUnavailable) as caught:
        await client.latest()

    assert caught.value.retry_after == 12


async def test_429_retry_after_from_extras_wait_seconds(fake: FakeDiscourse, client: DiscourseClient) -> None:
    fake.fail_next("/latest.json", 429, body={"errors": ["Please wait"], "error_type": "rate_limit",
                                               "extras": {"wait_seconds": 7}})

    with pytest.raises(DiscourseUnavailable) as caught:
        await client.latest()

    assert caught.value.retry_after == 7


async def test_discourse_rate_limit_pauses_the_whole_client(
    fake: FakeDiscourse, client: DiscourseClient, clock: ManualClock
) -> None:
    fake.rate_limit_per_minute = 2  # another integration is using up the site-wide bucket
    await client.latest()
    await client.latest()

    with pytest.raises(DiscourseUnavailable) as caught:
        await client.latest()
    waited_from = clock.now
    page = await client.latest()  # waits out Retry-After on the shared clock, then succeeds

    assert caught.value.retry_after == 60
    assert clock.now - waited_from >= 60
    assert page.topics == ()


async def test_bad_key_is_an_auth_error_and_the_key_is_never_logged(
    fake: FakeDiscourse, session: aiohttp.ClientSession, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = make_client(session, fake, clock, api_key="wrong-key-0123456789")

    with pytest.raises(DiscourseAuthError) as caught:
        await wrong.latest()

    assert caught.value.status == 403
    assert caught.value.errors == ("You are not permitted to view the requested resource.",)
    assert "wrong-key-0123456789" not in caplog.text + str(caught.value) + repr(wrong)


async def test_every_request_carries_the_auth_headers(fake: FakeDiscourse, client: DiscourseClient) -> None:
    seeded = fake.add_topic("Any topic with a long title", "Any body that is long enough.")
    await client.topic(seeded.id)
    await client.search("topic")
    await client.create_topic(title=TITLE, raw=BODY, category=None, external_id="x1")

    assert fake.requests
    assert all(r.headers.get("Api-Key") == API_KEY and r.headers.get("Api-Username") == "system"
               for r in fake.requests)


async def test_proxy_503_is_unavailable(fake: FakeDiscourse, client: DiscourseClient) -> None:
    fake.down = True

    with pytest.raises(DiscourseUnavailable) as caught:
        await client.latest()

    assert caught.value.retry_after is None


async def test_connection_refused_is_unavailable(session: aiohttp.ClientSession, clock: ManualClock) -> None:
    async with FakeDiscourse(api_key=API_KEY, clock=clock) as gone:
        client = make_client(session, gone, clock)
    # The server has shut down; its port now refuses connections.

    with pytest.raises(DiscourseUnavailable):
        await client.latest()


async def test_oversized_response_is_refused(
    fake: FakeDiscourse, session: aiohttp.ClientSession, clock: ManualClock
) -> None:
    seeded = fake.add_topic("A topic with a very large first post", "x" * 50_000)
    small = make_client(session, fake, clock, max_response_bytes=10_000)

    with pytest.raises(DiscourseBadResponse, match="too large|exceeds"):
        await small.topic(seeded.id)


async def test_non_json_success_is_a_bad_response(fake: FakeDiscourse, client: DiscourseClient) -> None:
    fake.fail_next("/latest.json", 200, body=b"<html>Login</html>")

    with pytest.raises(DiscourseBadResponse):
        await client.latest()


# --------------------------------------------------------------------------- throttle


async def test_throttle_spaces_requests_after_the_burst(
    fake: FakeDiscourse, session: aiohttp.ClientSession, clock: ManualClock
) -> None:
    throttled = make_client(session, fake, clock, requests_per_minute=60, burst=2)

    for _ in range(5):
        await throttled.latest()

    assert clock.sleeps == pytest.approx([1.0, 1.0, 1.0])


async def test_default_throttle_never_hits_discourses_bucket(fake: FakeDiscourse, client: DiscourseClient,
                                                             clock: ManualClock) -> None:
    start = clock.now

    for _ in range(130):
        await client.latest()  # would raise DiscourseUnavailable on a 429

    assert clock.now - start >= (130 - 5) / 50 * 60 - 1e-6


# --------------------------------------------------------------------------- webhooks

SECRET = "webhook-secret-for-tests"


async def test_webhook_signature_round_trip(fake: FakeDiscourse) -> None:
    received: list[WebhookEvent | None] = []

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        if not verify_webhook_signature(SECRET, body, request.headers.get("X-Discourse-Event-Signature")):
            return web.Response(status=401)
        received.append(parse_webhook(request.headers.get("X-Discourse-Event"), body))
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/hooks/discourse", receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    url = f"http://{host}:{port}/hooks/discourse"
    try:
        good = await fake.send_webhook(url, "post_edited", {"post": {"id": 9, "topic_id": 31}}, SECRET)
        forged = await fake.send_webhook(url, "topic_destroyed", {"topic": {"id": 31}}, "guessed-secret")
        created = await fake.send_webhook(url, "topic_created", {"topic": {"id": 32, "title": "x"}}, SECRET)
    finally:
        await runner.cleanup()

    assert (good, forged, created) == (200, 401, 200)
    assert received == [WebhookEvent(WebhookKind.POST_EDITED, 31), WebhookEvent(WebhookKind.TOPIC_CREATED, 32)]


@pytest.mark.parametrize(
    "header",
    [None, "", "sha256=", "sha1=" + "0" * 40, "sha256=" + "0" * 64, "sha256=ñandú", "garbage"],
)
def test_unsigned_or_forged_webhooks_are_refused(header: str | None) -> None:
    assert verify_webhook_signature(SECRET, b'{"topic":{"id":1}}', header) is False


def test_signature_checks_the_exact_body_and_needs_a_secret() -> None:
    body = b'{"topic":{"id":1}}'
    assert verify_webhook_signature(SECRET, body, sign(SECRET, body))
    assert not verify_webhook_signature(SECRET, body + b" ", sign(SECRET, body))
    assert not verify_webhook_signature("", body, sign("", body))


def test_parse_webhook_ignores_other_events_and_refuses_malformed_ones() -> None:
    assert parse_webhook("ping", b'{"ping":"OK"}') is None
    assert parse_webhook("topic_destroyed", b'{"topic":{"id":5}}') == WebhookEvent(WebhookKind.TOPIC_DESTROYED, 5)
    for body in (b"not json", b"[]", b'{"topic":{"id":"5"}}', b'{"post":{"id":3}}'):
        with pytest.raises(InvalidWebhook):
            parse_webhook("topic_edited" if b"topic" in body else "post_edited", body)


# --------------------------------------------------------------------------- the fake itself


def test_contract_gaps_are_still_gaps() -> None:
    """When the contract learns one of these fields, drop it from CONTRACT_GAPS."""
    contract = Contract(gaps=())
    for gap in CONTRACT_GAPS:
        node = contract.document
        for part in (Contract.response_pointer(*gap.operation) + gap.where).lstrip("/").split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        assert gap.name not in node.get("properties", {}), gap


async def test_a_fake_that_drifts_from_the_contract_fails(session: aiohttp.ClientSession, clock: ManualClock) -> None:
    class DriftingFake(FakeDiscourse):
        def _list_item(self, topic, *, in_category):  # type: ignore[no-untyped-def]
            return {**super()._list_item(topic, in_category=in_category), "views": "many"}

    drifting = DriftingFake(api_key=API_KEY, clock=clock)
    drifting.add_topic("Some topic with a long title", "Some body that is long enough.")
    async with drifting:
        with pytest.raises(DiscourseUnavailable):
            await make_client(session, drifting, clock).latest()
        with pytest.raises(AssertionError, match="views"):
            drifting.assert_contract()
        drifting.contract_violations.clear()  # seen; let the context exit cleanly



PNG_1X1 = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8cfc0f01f0005000201a5e1b1f20000000049454e44ae426082")


async def test_upload_an_image_as_the_contract_says(fake: FakeDiscourse, client: DiscourseClient) -> None:
    uploaded = await client.upload(PNG_1X1, filename="pantalla.png", content_type="image/png")
    [stored] = fake.uploads
    assert stored.data == PNG_1X1 and stored.original_filename == "pantalla.png" and stored.upload_type == "composer"
    assert uploaded.id == stored.id and uploaded.url == stored.url
    # A post refers to it the way Discourse's own composer does.
    assert uploaded.markdown_url == stored.short_url and stored.short_url.startswith("upload://")
    assert fake.contract_violations == []
