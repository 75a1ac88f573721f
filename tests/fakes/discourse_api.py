"""A fake Discourse forum, served over real HTTP, that keeps to the published API contract.

    async with FakeDiscourse(api_key="k") as fake:
        cat = fake.add_category("Printers")
        fake.add_topic("Printer shows error 42", "Turn it off and on.", category_id=cat)
        client = DiscourseClient(session=..., base_url=fake.base_url, api_user="system", api_key="k")

Every JSON body the fake returns is validated against the response schema of
``tests/contracts/discourse-openapi.json`` (OpenAPI 3.1, JSON Schema 2020-12, ``$ref``s
resolved inside the document). A violation answers 500 *and* is recorded; leaving the
``async with`` block then fails the test, so a fake that drifts from the contract cannot
pass silently. Request bodies we receive (POST /posts.json) are validated the same way,
which catches the client drifting too.

Where the contract is silent or narrower than real Discourse, we say so next to the code
(``CONTRACT_GAPS`` and the error schema below). The spec is generated from Discourse's
request specs, with tiny fixtures: an empty search, short lists, no plugins.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import html
import json
import math
import re
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

CONTRACT_PATH = Path(__file__).resolve().parents[1] / "contracts" / "discourse-openapi.json"
_CONTRACT_URI = "urn:posventa:discourse-openapi"
_JSON = "application/json"

# --------------------------------------------------------------------------- the contract


@dataclass(frozen=True)
class ContractGap:
    """A property real Discourse sends that the contract's schema does not list.

    Each gap is *added* to a copy of the schema (never loosening a type or a ``required``),
    and a test checks it is still missing from the contract, so the list shrinks when the
    contract catches up.
    """

    operation: tuple[str, str]  # (path template, method)
    where: str  # JSON pointer inside the 200 response schema to the object that gains the property
    name: str
    schema: dict[str, Any]
    why: str


_SOLVED_ANSWER = {
    "type": "object",
    "additionalProperties": False,
    "required": ["post_number", "username", "name", "excerpt"],
    "properties": {
        "post_number": {"type": "integer"},
        "username": {"type": "string"},
        "name": {"type": ["string", "null"]},
        "excerpt": {"type": ["string", "null"]},
        "accepter_username": {"type": "string"},
        "accepter_name": {"type": ["string", "null"]},
    },
}

CONTRACT_GAPS: tuple[ContractGap, ...] = (
    ContractGap(
        ("/t/{id}.json", "get"), "", "accepted_answer", _SOLVED_ANSWER,
        "discourse-solved (bundled with Discourse) adds the accepted answer to the topic view; "
        "the spec documents core without plugins.",
    ),
    ContractGap(
        ("/t/{id}.json", "get"), "/properties/post_stream/properties/posts/items", "accepted_answer",
        {"type": "boolean"}, "discourse-solved marks the answer post itself.",
    ),
    ContractGap(
        ("/t/{id}.json", "get"), "/properties/post_stream/properties/posts/items", "topic_accepted_answer",
        {"type": "boolean"}, "discourse-solved tells every post whether its topic is solved.",
    ),
    ContractGap(
        ("/search.json", "get"), "", "topics",
        # Real search sends the hits' topics as list items with tags; the contract's own shape
        # for such an item is the suggested-topic one in the topic view, so we reuse it.
        {"type": "array", "items": {"$ref": _CONTRACT_URI + "#/paths/~1t~1%7Bid%7D.json/get/responses/200/content/"
                                    "application~1json/schema/properties/suggested_topics/items"}},
        "the spec was recorded from a search with no results, when Discourse omits `topics`.",
    ),
)

#: The contract documents no error responses at all (only 200s, and a bodiless 301 for
#: /t/external_id). This is the shape Discourse's ApplicationController renders for errors,
#: ours rather than the contract's; error bodies are checked against it.
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["errors"],
    "additionalProperties": False,
    "properties": {
        "errors": {"type": "array", "minItems": 1, "items": {"type": "string"}},
        "error_type": {"type": "string"},
        "action": {"type": "string"},
        "extras": {"type": "object", "properties": {"wait_seconds": {"type": "integer"}, "time_left": {"type": "string"}}},
    },
}


def _pointer(*parts: str) -> str:
    return "/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def _resolve(doc: Any, pointer: str) -> Any:
    node = doc
    for part in pointer.lstrip("/").split("/") if pointer else ():
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


class Contract:
    """Validators for the contract's response (and request) schemas, with ``CONTRACT_GAPS`` applied."""

    def __init__(self, path: Path = CONTRACT_PATH, gaps: Sequence[ContractGap] = CONTRACT_GAPS):
        self.original = json.loads(path.read_text())
        self.document = copy.deepcopy(self.original)
        for gap in gaps:
            target = _resolve(self.document, self.response_pointer(*gap.operation) + gap.where)
            target.setdefault("properties", {})[gap.name] = gap.schema
        resource = Resource.from_contents(self.document, default_specification=DRAFT202012)
        self._registry = Registry().with_resource(_CONTRACT_URI, resource)
        self._validators: dict[str, Draft202012Validator] = {}

    @staticmethod
    def response_pointer(path: str, method: str, status: str = "200") -> str:
        return _pointer("paths", path, method, "responses", status, "content", _JSON, "schema")

    @staticmethod
    def request_pointer(path: str, method: str, content_type: str = _JSON) -> str:
        return _pointer("paths", path, method, "requestBody", "content", content_type, "schema")

    def errors(self, pointer: str, instance: Any) -> list[str]:
        if pointer not in self._validators:
            _resolve(self.document, pointer)  # KeyError: the contract has no schema here
            self._validators[pointer] = Draft202012Validator(
                {"$ref": _CONTRACT_URI + "#" + pointer}, registry=self._registry
            )
        found = self._validators[pointer].iter_errors(instance)
        return [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in found][:5]


# --------------------------------------------------------------------------- the forum


@dataclass
class FakePost:
    id: int
    topic_id: int
    post_number: int
    raw: str
    cooked: str
    username: str
    created_at: datetime
    updated_at: datetime
    deleted: bool = False


@dataclass
class FakeTopic:
    id: int
    title: str
    slug: str
    category_id: int
    tags: list[str]
    created_at: datetime
    bumped_at: datetime
    posts: list[FakePost] = field(default_factory=list)
    pinned: bool = False
    external_id: str | None = None
    accepted_post_number: int | None = None
    deleted: bool = False

    @property
    def visible_posts(self) -> list[FakePost]:
        return [p for p in self.posts if not p.deleted]


@dataclass
class FakeUpload:
    id: int
    original_filename: str
    content_type: str
    data: bytes
    upload_type: str
    url: str
    short_url: str


@dataclass
class FakeCategory:
    id: int
    name: str
    slug: str


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: tuple[tuple[str, str], ...]
    headers: dict[str, str]
    body: bytes


@dataclass
class _Injection:
    path_prefix: str
    status: int
    body: bytes
    headers: dict[str, str]
    after_processing: bool


def slugify(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:80] or "topic"


def cook(raw: str) -> str:
    """A tiny stand-in for Discourse's markdown cooking: escaped paragraphs."""
    return "".join(f"<p>{html.escape(p.strip())}</p>" for p in raw.split("\n\n") if p.strip())


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class FakeDiscourse:
    """An in-memory Discourse on 127.0.0.1 with the handful of endpoints posventa uses.

    Knobs for tests: ``down`` (503 from a proxy), ``fail_next`` (inject one status),
    ``rate_limit_per_minute`` (Discourse's admin API bucket, on ``clock``), ``requests``
    (what was asked, in order) and ``contract_violations``.
    """

    PAGE_SIZE = 30  # Discourse's topic list page
    CHUNK_SIZE = 20  # posts per topic view chunk

    def __init__(
        self,
        *,
        api_key: str = "test-api-key",
        api_username: str = "system",
        rate_limit_per_minute: int = 60,
        clock: Callable[[], float] = time.monotonic,
        min_title_length: int = 15,
        min_post_length: int = 20,
        contract: Contract | None = None,
    ):
        self.api_key = api_key
        self.api_username = api_username
        self.rate_limit_per_minute = rate_limit_per_minute
        self.clock = clock
        self.min_title_length = min_title_length
        self.min_post_length = min_post_length
        self.contract = contract or Contract()
        self.down = False
        self.requests: list[RecordedRequest] = []
        self.contract_violations: list[str] = []
        self.categories: dict[int, FakeCategory] = {}
        self.topics: dict[int, FakeTopic] = {}
        self._tag_ids: dict[str, int] = {}
        self._users: dict[str, int] = {api_username: 1}
        self._injections: list[_Injection] = []
        self._recent: deque[float] = deque()
        #: Files received on POST /uploads.json, in order.
        self.uploads: list[FakeUpload] = []
        self._next_topic_id = 1
        self._next_post_id = 1
        self._now = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)
        self._runner: web.AppRunner | None = None
        self.base_url = ""
        self.add_category("Uncategorized", slug="uncategorized")

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> FakeDiscourse:
        app = web.Application(middlewares=[self._middleware], client_max_size=1024 * 1024)
        app.router.add_get("/latest.json", self._latest)
        app.router.add_get(r"/c/{id:\d+}/show.json", self._category_show)
        app.router.add_get(r"/c/{slug}/{id:\d+}.json", self._category_topics)
        app.router.add_get(r"/t/external_id/{external_id}.json", self._by_external_id)
        app.router.add_get(r"/t/{id:\d+}.json", self._topic)
        app.router.add_get(r"/t/{id:\d+}/posts.json", self._topic_posts)
        app.router.add_get("/search.json", self._search)
        app.router.add_post("/posts.json", self._create_post)
        app.router.add_post("/uploads.json", self._create_upload)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.base_url = f"http://{host}:{port}"
        return self

    async def __aexit__(self, exc_type: Any, *_: Any) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if exc_type is None:
            self.assert_contract()

    def assert_contract(self) -> None:
        assert not self.contract_violations, "fake Discourse broke the contract:\n" + "\n".join(
            self.contract_violations
        )

    # ------------------------------------------------------------------ test controls

    def tick(self, minutes: float = 1) -> datetime:
        """The forum's clock: every change happens a little later than the previous one."""
        self._now += timedelta(minutes=minutes)
        return self._now

    def add_category(self, name: str, *, slug: str | None = None) -> int:
        category_id = len(self.categories) + 1
        self.categories[category_id] = FakeCategory(category_id, name, slug or slugify(name))
        return category_id

    def add_topic(
        self,
        title: str,
        body: str,
        *,
        replies: Sequence[str] = (),
        category_id: int = 1,
        tags: Sequence[str] = (),
        accepted_post_number: int | None = None,
        pinned: bool = False,
        external_id: str | None = None,
        bumped_at: datetime | None = None,
        first_post_cooked: str | None = None,
    ) -> FakeTopic:
        created = self.tick()
        topic = FakeTopic(
            id=self._next_topic_id, title=title, slug=slugify(title), category_id=category_id,
            tags=list(tags), created_at=created, bumped_at=created, pinned=pinned, external_id=external_id,
        )
        self._next_topic_id += 1
        self.topics[topic.id] = topic
        self._add_post(topic, body, cooked=first_post_cooked)
        for reply in replies:
            self._add_post(topic, reply)
        topic.accepted_post_number = accepted_post_number
        if bumped_at is not None:
            topic.bumped_at = bumped_at
        return topic

    def add_reply(self, topic_id: int, raw: str) -> FakePost:
        """A new reply bumps the topic, as in Discourse."""
        return self._add_post(self.topics[topic_id], raw)

    def edit_topic(self, topic_id: int, *, title: str | None = None, body: str | None = None) -> None:
        """Edits do not bump (Discourse keeps bumped_at); they change updated_at of the post."""
        topic = self.topics[topic_id]
        if title is not None:
            topic.title, topic.slug = title, slugify(title)
        if body is not None:
            first = topic.posts[0]
            first.raw, first.cooked, first.updated_at = body, cook(body), self.tick()

    def delete_post(self, topic_id: int, post_number: int) -> None:
        next(p for p in self.topics[topic_id].posts if p.post_number == post_number).deleted = True

    def delete_topic(self, topic_id: int) -> None:
        self.topics[topic_id].deleted = True

    def fail_next(
        self,
        path_prefix: str,
        status: int,
        *,
        body: bytes | dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        after_processing: bool = False,
    ) -> None:
        """Answer the next request under ``path_prefix`` with ``status``.

        ``after_processing=True`` lets the request take effect first, as when a proxy times
        out after Discourse created the topic: the client sees a failure, the forum changed.
        Injected bodies are deliberately not validated; they are there to test odd replies.
        """
        if body is None:
            body = b"<html><body><h1>Bad Gateway</h1></body></html>" if status >= 500 else {"errors": ["Injected."]}
        raw = json.dumps(body).encode() if isinstance(body, dict) else body
        self._injections.append(_Injection(path_prefix, status, raw, dict(headers or {}), after_processing))

    async def send_webhook(self, url: str, event: str, payload: dict[str, Any], secret: str) -> int:
        """POST a webhook delivery signed as Discourse signs it; returns the receiver's status."""
        body = json.dumps(payload).encode()
        headers = {
            "Content-Type": _JSON,
            "X-Discourse-Instance": self.base_url,
            "X-Discourse-Event-Id": str(len(self.requests) + 1),
            "X-Discourse-Event-Type": event.split("_", 1)[0],
            "X-Discourse-Event": event,
            "X-Discourse-Event-Signature": sign(secret, body),
        }
        async with aiohttp.ClientSession() as session, session.post(url, data=body, headers=headers) as resp:
            await resp.read()
            return resp.status

    # ------------------------------------------------------------------ plumbing

    def _add_post(self, topic: FakeTopic, raw: str, *, cooked: str | None = None) -> FakePost:
        moment = self.tick()
        post = FakePost(
            id=self._next_post_id, topic_id=topic.id, post_number=len(topic.posts) + 1, raw=raw,
            cooked=cooked if cooked is not None else cook(raw), username=self.api_username,
            created_at=moment, updated_at=moment,
        )
        self._next_post_id += 1
        topic.posts.append(post)
        topic.bumped_at = moment
        return post

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Callable[..., Any]) -> web.StreamResponse:
        body = await request.read()
        self.requests.append(
            RecordedRequest(request.method, request.path, tuple(request.query.items()), dict(request.headers), body)
        )
        if self.down:
            return web.Response(status=503, text="<html><body>503 Service Unavailable</body></html>",
                                content_type="text/html")
        if request.headers.get("Api-Key") != self.api_key or request.headers.get("Api-Username") != self.api_username:
            return self._error(403, "You are not permitted to view the requested resource.", error_type="invalid_access")
        limited = self._rate_limited()
        if limited is not None:
            return limited
        injection = next((i for i in self._injections if request.path.startswith(i.path_prefix)), None)
        if injection is None:
            return await handler(request)
        self._injections.remove(injection)
        if injection.after_processing:
            await handler(request)
        return web.Response(status=injection.status, body=injection.body, headers=injection.headers,
                            content_type=_JSON if injection.body.startswith(b"{") else "text/html")

    def _rate_limited(self) -> web.Response | None:
        """Discourse's admin API bucket: N requests in any 60 s, site-wide."""
        now = self.clock()
        while self._recent and now - self._recent[0] >= 60:
            self._recent.popleft()
        if len(self._recent) >= self.rate_limit_per_minute:
            wait = max(1, math.ceil(60 - (now - self._recent[0])))
            return self._error(
                429, f"You’ve performed this action too many times. Please wait {wait} seconds before trying again.",
                error_type="rate_limit", extras={"wait_seconds": wait, "time_left": f"{wait} seconds"},
                headers={"Retry-After": str(wait)},
            )
        self._recent.append(now)
        return None

    def _ok(self, operation: tuple[str, str], payload: dict[str, Any]) -> web.Response:
        problems = self.contract.errors(Contract.response_pointer(*operation), payload)
        if problems:
            self.contract_violations.extend(f"{operation[1].upper()} {operation[0]}: {p}" for p in problems)
            return web.Response(status=500, text="fake Discourse broke the contract")
        return web.json_response(payload)

    def _error(self, status: int, *messages: str, error_type: str | None = None, action: str | None = None,
               extras: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> web.Response:
        payload: dict[str, Any] = {"errors": list(messages)}
        if action:
            payload["action"] = action
        if error_type:
            payload["error_type"] = error_type
        if extras:
            payload["extras"] = extras
        for problem in Draft202012Validator(ERROR_SCHEMA).iter_errors(payload):
            self.contract_violations.append(f"error body: {problem.message}")
        return web.json_response(payload, status=status, headers=headers)

    def _visible_topic(self, request: web.Request) -> FakeTopic | None:
        topic = self.topics.get(int(request.match_info["id"]))
        return topic if topic is not None and not topic.deleted else None

    def _not_found(self) -> web.Response:
        return self._error(404, "The requested URL or resource could not be found.", error_type="not_found")

    def _user_id(self, username: str) -> int:
        return self._users.setdefault(username, len(self._users) + 1)

    def _tag_json(self, name: str) -> dict[str, Any]:
        return {"id": self._tag_ids.setdefault(name, len(self._tag_ids) + 1), "name": name, "slug": slugify(name)}

    # ------------------------------------------------------------------ topic lists

    def _listed(self, category_id: int | None) -> list[FakeTopic]:
        topics = [t for t in self.topics.values() if not t.deleted
                  and (category_id is None or t.category_id == category_id)]
        # Pinned first, then most recently bumped: Discourse's default list order.
        return sorted(topics, key=lambda t: (not t.pinned, -t.bumped_at.timestamp(), -t.id))

    def _page(self, request: web.Request, topics: list[FakeTopic]) -> tuple[list[FakeTopic], int, bool]:
        try:
            page = max(0, int(request.query.get("page", "0")))
        except ValueError:
            page = 0
        chunk = topics[page * self.PAGE_SIZE : (page + 1) * self.PAGE_SIZE]
        return chunk, page, len(chunk) == self.PAGE_SIZE  # Discourse: a full page may have a successor

    def _list_item(self, topic: FakeTopic, *, in_category: bool) -> dict[str, Any]:
        posts = topic.visible_posts
        item: dict[str, Any] = {
            "id": topic.id, "title": topic.title, "fancy_title": html.escape(topic.title), "slug": topic.slug,
            "posts_count": len(posts), "reply_count": len(posts) - 1, "highest_post_number": len(topic.posts),
            "created_at": iso(topic.created_at), "last_posted_at": iso(posts[-1].created_at),
            "bumped": True, "bumped_at": iso(topic.bumped_at), "archetype": "regular", "unseen": False,
            "pinned": topic.pinned, "unpinned": None, "visible": True, "closed": False, "archived": False,
            "views": 0, "like_count": 0, "has_summary": False, "last_poster_username": posts[-1].username,
            "category_id": topic.category_id, "pinned_globally": False, "featured_link": None,
            "posters": [{"extras": "latest single", "description": "Original Poster, Most Recent Poster",
                         "user_id": self._user_id(posts[0].username), "primary_group_id": None}],
        }
        if in_category:  # the two list schemas disagree on these types; each gets its own
            item.update(image_url=None, excerpt=html.escape(posts[0].raw[:200]), bookmarked=None, liked=None)
        else:
            item.update(bookmarked=False, liked=False)
        return item

    def _users_json(self) -> list[dict[str, Any]]:
        return [{"id": uid, "username": name, "name": name.title(), "avatar_template": f"/user_avatar/x/{name}/{{size}}/1.png"}
                for name, uid in self._users.items()]

    async def _latest(self, request: web.Request) -> web.Response:
        chunk, page, full = self._page(request, self._listed(None))
        topic_list: dict[str, Any] = {
            "can_create_topic": True, "per_page": self.PAGE_SIZE,
            "topics": [self._list_item(t, in_category=False) for t in chunk],
        }
        if full:
            topic_list["more_topics_url"] = f"/latest?no_definitions=true&page={page + 1}"
        return self._ok(("/latest.json", "get"),
                        {"users": self._users_json(), "primary_groups": [], "topic_list": topic_list})

    async def _category_topics(self, request: web.Request) -> web.Response:
        category = self.categories.get(int(request.match_info["id"]))
        if category is None or request.match_info["slug"] != category.slug:
            return self._not_found()
        chunk, _, _ = self._page(request, self._listed(category.id))
        # No more_topics_url here: real Discourse sends it on full pages, but this schema has
        # additionalProperties: false without it. The client pages on per_page instead.
        topic_list = {"can_create_topic": True, "per_page": self.PAGE_SIZE,
                      "topics": [self._list_item(t, in_category=True) for t in chunk]}
        return self._ok(("/c/{slug}/{id}.json", "get"),
                        {"users": self._users_json(), "primary_groups": [], "topic_list": topic_list})

    async def _category_show(self, request: web.Request) -> web.Response:
        category = self.categories.get(int(request.match_info["id"]))
        if category is None:
            return self._not_found()
        count = sum(1 for t in self.topics.values() if t.category_id == category.id and not t.deleted)
        return self._ok(("/c/{id}/show.json", "get"), {"category": {
            "id": category.id, "name": category.name, "color": "0088CC", "text_color": "FFFFFF",
            "style_type": "square", "emoji": None, "icon": None, "slug": category.slug,
            "topic_count": count, "post_count": count, "position": category.id, "description": None,
            "description_text": None, "description_excerpt": None, "topic_url": None, "read_restricted": False,
            "permission": 1, "notification_level": 1, "can_edit": True, "topic_template": None,
            "topic_title_placeholder": None, "has_children": False, "subcategory_count": None, "sort_order": None,
            "sort_ascending": None, "show_subcategory_list": False, "num_featured_topics": 3, "default_view": None,
            "subcategory_list_style": "rows_with_featured_topics", "default_top_period": "all",
            "default_list_filter": "all", "minimum_required_tags": 0, "navigate_to_first_post_after_read": False,
            "custom_fields": {}, "required_tag_groups": [], "read_only_banner": None, "available_groups": [],
            "auto_close_hours": None, "auto_close_based_on_last_post": False,
            "allow_unlimited_owner_edits_on_first_post": False, "default_slow_mode_seconds": None,
            "group_permissions": [{"permission_type": 1, "group_name": "everyone", "group_id": 0}],
            "email_in": None, "email_in_allow_strangers": False, "mailinglist_mirror": False,
            "all_topics_wiki": False, "can_delete": False, "allow_badges": True,
            "topic_featured_link_allowed": True, "search_priority": 0, "topic_posting_review_group_ids": [],
            "reply_posting_review_group_ids": [], "uploaded_logo": None, "uploaded_logo_dark": None,
            "uploaded_background": None, "uploaded_background_dark": None,
        }})

    # ------------------------------------------------------------------ one topic

    def _post_json(self, post: FakePost, topic: FakeTopic) -> dict[str, Any]:
        item: dict[str, Any] = {
            "id": post.id, "name": post.username.title(), "username": post.username,
            "avatar_template": f"/user_avatar/x/{post.username}/{{size}}/1.png", "created_at": iso(post.created_at),
            "cooked": post.cooked, "post_number": post.post_number, "post_type": 1,
            "updated_at": iso(post.updated_at), "reply_count": 0, "reply_to_post_number": None,
            "quote_count": 0, "incoming_link_count": 0, "reads": 1, "readers_count": 0, "score": 0.0,
            "yours": True, "topic_id": topic.id, "topic_slug": topic.slug, "display_username": post.username.title(),
            "primary_group_name": None, "flair_name": None, "flair_url": None, "flair_bg_color": None,
            "flair_color": None, "version": 1, "can_edit": True, "can_delete": post.post_number > 1,
            "can_recover": False, "can_wiki": True, "link_counts": [], "read": True, "user_title": None,
            "bookmarked": False, "actions_summary": [], "moderator": False, "admin": True, "staff": True,
            "user_id": self._user_id(post.username), "hidden": False, "trust_level": 4, "deleted_at": None,
            "user_deleted": False, "edit_reason": None, "can_view_edit_history": True, "wiki": False,
            "reviewable_id": 0, "reviewable_score_count": 0, "reviewable_score_pending_count": 0,
        }
        if topic.accepted_post_number is not None:  # discourse-solved, see CONTRACT_GAPS
            item["accepted_answer"] = post.post_number == topic.accepted_post_number
            item["topic_accepted_answer"] = True
        return item

    def _suggested_item(self, topic: FakeTopic) -> dict[str, Any]:
        """A topic in the shape of the contract's suggested_topics items (also used for search)."""
        item = self._list_item(topic, in_category=True)
        poster = item.pop("posters")[0]
        for key in ("has_summary", "last_poster_username", "pinned_globally"):
            item.pop(key)
        user = next(u for u in self._users_json() if u["id"] == poster["user_id"])
        item.update(tags=[self._tag_json(t) for t in topic.tags], tags_descriptions={},
                    posters=[{"extras": poster["extras"], "description": poster["description"], "user": user}])
        return item

    async def _topic(self, request: web.Request) -> web.Response:
        topic = self._visible_topic(request)
        if topic is None:
            return self._not_found()
        posts = topic.visible_posts
        op = posts[0]
        op_user = {"id": self._user_id(op.username), "username": op.username, "name": op.username.title(),
                   "avatar_template": f"/user_avatar/x/{op.username}/{{size}}/1.png"}
        payload: dict[str, Any] = {
            "post_stream": {"posts": [self._post_json(p, topic) for p in posts[: self.CHUNK_SIZE]],
                            "stream": [p.id for p in posts]},
            "timeline_lookup": [], "suggested_topics": [
                self._suggested_item(t) for t in self._listed(topic.category_id) if t.id != topic.id][:5],
            "tags": [self._tag_json(t) for t in topic.tags], "tags_descriptions": {},
            "id": topic.id, "title": topic.title, "fancy_title": html.escape(topic.title),
            "posts_count": len(posts), "created_at": iso(topic.created_at), "views": 0,
            "reply_count": len(posts) - 1, "like_count": 0, "last_posted_at": iso(posts[-1].created_at),
            "visible": True, "closed": False, "archived": False, "has_summary": False, "archetype": "regular",
            "slug": topic.slug, "category_id": topic.category_id, "word_count": None, "deleted_at": None,
            "user_id": op_user["id"], "featured_link": None, "pinned_globally": False, "pinned_at": None,
            "pinned_until": None, "image_url": None, "slow_mode_seconds": 0, "draft": None,
            "draft_key": f"topic_{topic.id}", "draft_sequence": 0, "unpinned": None, "pinned": topic.pinned,
            "highest_post_number": len(topic.posts), "deleted_by": None, "has_deleted": len(posts) < len(topic.posts),
            "actions_summary": [], "chunk_size": self.CHUNK_SIZE, "bookmarked": False, "bookmarks": [],
            "topic_timer": None, "message_bus_last_id": 0, "participant_count": 1, "show_read_indicator": False,
            "thumbnails": None, "slow_mode_enabled_until": None,
            "details": {
                "can_edit": True, "notification_level": 1, "can_move_posts": True, "can_delete": True,
                "can_remove_allowed_users": True, "can_create_post": True, "can_reply_as_new_topic": True,
                "can_convert_topic": True, "can_review_topic": True, "can_close_topic": True,
                "can_archive_topic": True, "can_split_merge_topic": True, "can_edit_staff_notes": True,
                "can_toggle_topic_visibility": True, "can_pin_unpin_topic": True, "can_moderate_category": True,
                "can_remove_self_id": op_user["id"], "created_by": op_user, "last_poster": op_user,
            },
        }
        answer = next((p for p in posts if p.post_number == topic.accepted_post_number), None)
        if answer is not None:  # discourse-solved, see CONTRACT_GAPS
            payload["accepted_answer"] = {"post_number": answer.post_number, "username": answer.username,
                                          "name": answer.username.title(), "excerpt": html.escape(answer.raw[:140])}
        return self._ok(("/t/{id}.json", "get"), payload)

    async def _topic_posts(self, request: web.Request) -> web.Response:
        topic = self._visible_topic(request)
        if topic is None:
            return self._not_found()
        try:
            wanted = {int(v) for v in request.query.getall("post_ids[]", [])}
        except ValueError:
            return self._error(400, "post_ids[] must be integers", error_type="invalid_parameters")
        posts = [self._post_json(p, topic) for p in topic.visible_posts if p.id in wanted]
        return self._ok(("/t/{id}/posts.json", "get"), {"post_stream": {"posts": posts}, "id": topic.id})

    async def _by_external_id(self, request: web.Request) -> web.Response:
        # The contract documents a bodiless 301 to /t/{topic_id}.json; nothing to validate.
        external_id = request.match_info["external_id"]
        topic = next((t for t in self.topics.values() if t.external_id == external_id and not t.deleted), None)
        if topic is None:
            return self._not_found()
        return web.Response(status=301, headers={"Location": f"{self.base_url}/t/{topic.id}.json"})

    # ------------------------------------------------------------------ search and create

    async def _search(self, request: web.Request) -> web.Response:
        term = request.query.get("q", "")
        words = term.lower().split()
        hits: list[tuple[FakeTopic, FakePost]] = []
        for topic in self._listed(None):
            for post in topic.visible_posts:
                text = f"{topic.title} {post.raw}".lower()
                if words and all(w in text for w in words):
                    hits.append((topic, post))
        hits = hits[:50]
        topics = list({t.id: t for t, _ in hits}.values())
        payload = {
            "posts": [{"id": p.id, "name": p.username.title(), "username": p.username,
                       "avatar_template": f"/user_avatar/x/{p.username}/{{size}}/1.png",
                       "created_at": iso(p.created_at), "like_count": 0, "blurb": html.escape(p.raw[:200]),
                       "post_number": p.post_number, "topic_title_headline": html.escape(t.title), "topic_id": t.id}
                      for t, p in hits],
            "topics": [self._suggested_item(t) for t in topics],
            "users": [], "categories": [], "tags": [], "groups": [],
            "grouped_search_result": {
                "more_posts": None, "more_users": None, "more_categories": None, "term": term,
                "search_log_id": len(self.requests), "more_full_page_results": None, "can_create_topic": True,
                "error": None, "post_ids": [p.id for _, p in hits], "user_ids": [], "category_ids": [],
                "tag_ids": [], "group_ids": [],
            },
        }
        return self._ok(("/search.json", "get"), payload)

    async def _create_post(self, request: web.Request) -> web.Response:
        try:
            body = json.loads(await request.read())
        except ValueError:
            return self._error(400, "The request body is not JSON.", error_type="invalid_parameters")
        problems = self.contract.errors(Contract.request_pointer("/posts.json", "post"), body)
        if problems:  # the client sent something the contract does not allow
            self.contract_violations.extend(f"request POST /posts.json: {p}" for p in problems)
            return self._error(400, *problems, error_type="invalid_parameters")
        title, raw = str(body.get("title", "")), str(body["raw"])
        errors = []
        if len(title.strip()) < self.min_title_length:
            errors.append(f"Title is too short (minimum is {self.min_title_length} characters)")
        if len(raw.strip()) < self.min_post_length:
            errors.append(f"Body is too short (minimum is {self.min_post_length} characters)")
        external_id = body.get("external_id")
        if external_id and any(t.external_id == external_id for t in self.topics.values()):
            errors.append("External ID has already been taken")
        category_id = body.get("category", 1)
        if category_id not in self.categories:
            errors.append("Category can't be blank")
        if errors:
            return self._error(422, *errors, action="create_post")
        topic = self.add_topic(title, raw, category_id=category_id, external_id=external_id)
        post = topic.posts[0]
        created = {k: v for k, v in self._post_json(post, topic).items()
                   if k not in ("link_counts", "read", "accepted_answer", "topic_accepted_answer")}
        created.update(raw=post.raw, posts_count=1, draft_sequence=0, reviewable_id=None,
                       post_url=f"/t/{topic.slug}/{topic.id}/1")
        return self._ok(("/posts.json", "post"), created)



    async def _create_upload(self, request: web.Request) -> web.Response:
        """POST /uploads.json as Discourse answers it with ``synchronous``: multipart with
        ``upload_type`` and ``file``, validated against the contract's multipart schema."""
        fields, files = _multipart(request.headers.get("Content-Type", ""), await request.read())
        if fields is None:
            return self._error(400, "The request is not multipart/form-data.", error_type="invalid_parameters")
        instance: dict[str, Any] = dict(fields)
        if "synchronous" in instance:
            instance["synchronous"] = instance["synchronous"] in ("true", "1")
        if "user_id" in instance and instance["user_id"].isdigit():
            instance["user_id"] = int(instance["user_id"])
        instance.update({name: "(binary)" for name in files})
        problems = self.contract.errors(Contract.request_pointer("/uploads.json", "post", "multipart/form-data"),
                                        instance)
        if problems:
            self.contract_violations.extend(f"request POST /uploads.json: {p}" for p in problems)
            return self._error(400, *problems, error_type="invalid_parameters")
        if "file" not in files:
            return self._error(422, "You must provide a file to upload.", action="create_upload")
        filename, content_type, data = files["file"]
        sha1 = hashlib.sha1(data).hexdigest()
        extension = filename.rsplit(".", 1)[-1].lower() if "." in filename else "bin"
        width, height = _png_size(data)
        upload = FakeUpload(id=len(self.uploads) + 1, original_filename=filename, content_type=content_type,
                            data=data, upload_type=fields["upload_type"],
                            url=f"/uploads/default/original/1X/{sha1}.{extension}",
                            short_url=f"upload://{sha1[:27]}.{extension}")
        self.uploads.append(upload)
        return self._ok(("/uploads.json", "post"), {
            "id": upload.id, "url": upload.url, "original_filename": filename, "filesize": len(data),
            "width": width, "height": height, "thumbnail_width": width, "thumbnail_height": height,
            "extension": extension, "short_url": upload.short_url,
            "short_path": f"/uploads/short-url/{sha1[:27]}.{extension}", "retain_hours": None,
            "human_filesize": f"{max(1, len(data) // 1024)} KB", "dominant_color": None,
        })


def _multipart(content_type: str, body: bytes) -> tuple[dict[str, str] | None, dict[str, tuple[str, str, bytes]]]:
    """A multipart/form-data body as (text fields, files), parsed by the stdlib's email
    package (the middleware has already read the stream, so aiohttp cannot parse it)."""
    import email.parser
    import email.policy

    if not content_type.lower().startswith("multipart/form-data"):
        return None, {}
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body)
    fields: dict[str, str] = {}
    files: dict[str, tuple[str, str, bytes]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not name:
            continue
        payload = part.get_payload(decode=True) or b""
        filename = part.get_filename()
        if filename is not None:
            files[str(name)] = (filename, part.get_content_type(), payload)
        else:
            fields[str(name)] = payload.decode("utf-8", "replace")
    return fields, files


def _png_size(data: bytes) -> tuple[int, int]:
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    return 0, 0
