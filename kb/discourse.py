"""The Discourse API client: the knowledge base's one I/O seam.

Everything Discourse sends is untrusted. Responses are size-capped, parsed defensively
into frozen values, and every failure comes out as one of a small tree of errors, split
by what the caller does next::

    DiscourseError
    ├── DiscourseUnavailable(retry_after)  network error, timeout, 5xx, 429: try again later
    ├── DiscourseRejected(errors)          4xx: the request is wrong; retrying it as is won't help
    │   └── DiscourseNotFound              404: the topic/category is gone (sync drops it)
    ├── DiscourseAuthError                 401/403: the API key or user is wrong; tell an operator
    └── DiscourseBadResponse               200 but unusable: not JSON, too big, wrong shape, redirect

The session is injected (Home Assistant's "inject-websession" rule): the composition root
owns its lifecycle. Requests never follow redirects, because aiohttp would resend our
``Api-Key`` header to wherever the redirect points.

We throttle ourselves with a token bucket because Discourse limits admin API keys to 60
requests a minute site-wide (``DISCOURSE_MAX_ADMIN_API_REQS_PER_MINUTE``), shared with
every other integration on the forum; a 429 there blocks all of them, not just us.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

import aiohttp
import yarl

from posventa.core.errors import PosventaError
from posventa.core.plain_text import html_to_text
from posventa.core.rate_limit import TokenBucket

__all__ = [
    "CreatedTopic",
    "DiscourseAuthError",
    "DiscourseBadResponse",
    "DiscourseClient",
    "DiscourseError",
    "DiscourseNotFound",
    "DiscourseRejected",
    "DiscourseUnavailable",
    "SearchHit",
    "Throttle",
    "Topic",
    "TopicPage",
    "TopicSummary",
    "cooked_to_text",
]

log = logging.getLogger(__name__)

#: Discourse's own defaults (site settings min_topic_title_length / min_first_post_length).
DEFAULT_MIN_TITLE_LENGTH = 15
DEFAULT_MIN_POST_LENGTH = 20
#: Topic.external_id validation in Discourse: word characters and dashes, at most 50.
_EXTERNAL_ID = re.compile(r"[\w-]{1,50}", re.ASCII)
#: A redirect to a topic: /t/{id}.json, /t/{slug}/{id}.json, possibly under a subfolder.
_TOPIC_LOCATION = re.compile(r"/t/(?:[^/]+/)?(\d+)(?:\.json)?/?$")

_MAX_RETRY_AFTER = 3600.0  # a hostile or buggy Retry-After must not park us for days
_MAX_ERROR_MESSAGES = 20
_MAX_ERROR_CHARS = 500
_MAX_SEARCH_QUERY = 200
_MAX_STREAM_IDS = 100_000
_POSTS_PER_REQUEST = 20  # Discourse's chunk size; /t/{id}/posts.json takes about as many ids
_MAX_ANSWER_LOOKUPS = 3


# ---------------------------------------------------------------------------- errors


class DiscourseError(PosventaError):
    """Base of every error the Discourse client raises."""


class DiscourseUnavailable(DiscourseError):
    """Discourse could not answer now (network, timeout, 5xx, 429). Retry after ``retry_after`` s."""

    def __init__(self, message: str, *, retry_after: float | None = None):
        self.retry_after = retry_after
        super().__init__(message)


class DiscourseRejected(DiscourseError):
    """Discourse refused the request (4xx). ``errors`` are Discourse's messages, safe to show an agent."""

    def __init__(self, errors: Sequence[str], *, status: int | None = None):
        self.errors = tuple(errors)
        self.status = status
        super().__init__("; ".join(self.errors) or f"rejected by Discourse (HTTP {status})")


class DiscourseNotFound(DiscourseRejected):
    """404: the resource does not exist or is not visible to our API user."""


class DiscourseAuthError(DiscourseError):
    """401/403: the API key or username is wrong or lacks permission. Retrying won't help."""

    def __init__(self, message: str, *, status: int, errors: Sequence[str] = ()):
        self.status = status
        self.errors = tuple(errors)
        super().__init__(message)


class DiscourseBadResponse(DiscourseError):
    """Discourse answered, but with something we cannot use (not JSON, too big, wrong shape)."""


# ---------------------------------------------------------------------------- values


@dataclass(frozen=True, slots=True)
class TopicSummary:
    """One row of a topic list (/latest.json, /c/{slug}/{id}.json)."""

    id: int
    title: str
    slug: str
    category_id: int | None
    created_at: datetime
    bumped_at: datetime
    posts_count: int
    pinned: bool


@dataclass(frozen=True, slots=True)
class TopicPage:
    topics: tuple[TopicSummary, ...]
    has_more: bool


@dataclass(frozen=True, slots=True)
class Topic:
    """A KB article: the question (first post) and, when solved, the accepted answer, as text."""

    id: int
    title: str
    slug: str
    category_id: int | None
    tags: tuple[str, ...]
    url: str
    created_at: datetime
    #: The latest of: last reply, first-post edit, accepted-answer edit. Editing a post does not
    #: bump a topic in Discourse, so bumped_at alone would miss edits to the text we index.
    updated_at: datetime
    first_post_text: str
    accepted_answer_text: str | None


@dataclass(frozen=True, slots=True)
class SearchHit:
    topic_id: int
    post_id: int
    post_number: int
    title: str
    slug: str
    category_id: int | None
    tags: tuple[str, ...]
    blurb: str
    url: str


@dataclass(frozen=True, slots=True)
class CreatedTopic:
    topic_id: int
    post_id: int
    url: str


@dataclass(frozen=True, slots=True)
class Upload:
    """A file Discourse stored (POST /uploads.json). ``markdown_url`` is what a post
    refers to it by: the ``upload://`` short URL Discourse's own composer writes, which
    survives a move of the forum's storage, else the plain URL."""

    id: int
    url: str
    short_url: str | None = None

    @property
    def markdown_url(self) -> str:
        return self.short_url or self.url


# ---------------------------------------------------------------------------- throttle


class Throttle:
    """Spaces our requests out so Discourse's per-minute bucket never fills: a token
    bucket of our own (``core.rate_limit``) that each request waits on.

    In any 60-second window we send at most ``burst + per_minute`` requests, so the
    defaults (5 + 50) stay under Discourse's 60. ``clock`` and ``sleep`` are injected so
    tests advance time by hand instead of waiting.
    """

    def __init__(
        self,
        *,
        per_minute: int,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ):
        if per_minute < 1 or burst < 1:
            raise ValueError("per_minute and burst must be at least 1")
        self._bucket = TokenBucket.full(per_minute=per_minute, capacity=burst, now=clock())
        self._clock = clock
        self._sleep = sleep
        self._paused_until = 0.0
        # One waiter at a time, so concurrent callers are served in arrival order.
        self._lock = asyncio.Lock()

    def pause_until(self, moment: float) -> None:
        """Hold every request until ``moment`` (Discourse told us to wait) and empty the bucket."""
        self._paused_until = max(self._paused_until, moment)
        self._bucket.empty_until(moment)

    async def acquire(self) -> None:
        async with self._lock:
            while True:
                now = self._clock()
                if now < self._paused_until:
                    await self._sleep(self._paused_until - now)
                    continue
                wait = self._bucket.take(now)
                if not wait:
                    return
                await self._sleep(wait)


# ---------------------------------------------------------------------------- HTML → text


def cooked_to_text(html: str, *, max_html_chars: int = 1_000_000, max_text_chars: int = 100_000) -> str:
    """Plain text of Discourse's cooked HTML (core's one renderer, as for an email's HTML
    part), with the work bounded by ``max_html_chars``."""
    return html_to_text(html, max_chars=max_text_chars, max_input_chars=max_html_chars)


# ---------------------------------------------------------------------------- the client


@dataclass(frozen=True, slots=True)
class _Reply:
    status: int
    headers: Mapping[str, str]
    body: bytes


class DiscourseClient:
    """Talks to one Discourse forum with an admin (or scoped) API key.

    ``requests_per_minute`` and ``burst`` size the self-throttle; ``clock``/``sleep`` are for
    tests. The key is only ever put in request headers, never in a message or log line.
    """

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession,
        base_url: str,
        api_user: str,
        api_key: str,
        requests_per_minute: int = 50,
        burst: int = 5,
        timeout: float = 10.0,
        min_title_length: int = DEFAULT_MIN_TITLE_LENGTH,
        min_post_length: int = DEFAULT_MIN_POST_LENGTH,
        max_response_bytes: int = 5 * 1024 * 1024,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ):
        url = yarl.URL(base_url.rstrip("/"))
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"Discourse base_url must be an http(s) URL, got {base_url!r}")
        if not api_key or not api_user:
            raise ValueError("Discourse api_user and api_key are required")
        self._session = session
        self._base = str(url)
        self._headers = {"Api-Key": api_key, "Api-Username": api_user, "Accept": "application/json"}
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._min_title = min_title_length
        self._min_post = min_post_length
        self._max_bytes = max_response_bytes
        self._clock = clock
        self._throttle = Throttle(per_minute=requests_per_minute, burst=burst, clock=clock, sleep=sleep)
        # Category slugs never change often and /c/{slug}/{id}.json needs them; one lookup per id.
        self._category_slugs: dict[int, str] = {}

    def __repr__(self) -> str:  # deliberately without the key
        return f"DiscourseClient(base_url={self._base!r})"

    def topic_url(self, slug: str, topic_id: int) -> str:
        return f"{self._base}/t/{quote(slug or 'topic', safe='')}/{int(topic_id)}"

    # ------------------------------------------------------------------ listing

    async def latest(self, *, page: int = 0, category_id: int | None = None) -> TopicPage:
        """One page of topics, most recently bumped first (pinned topics may come first)."""
        if page < 0:
            raise ValueError("page must be >= 0")
        if category_id is None:
            path = "/latest.json"
        else:
            slug = await self._category_slug(int(category_id))
            path = f"/c/{quote(slug, safe='')}/{int(category_id)}.json"
        data = await self._get_json(path, params={"page": page})
        topic_list = _field(data, "topic_list", dict)
        rows = _field(topic_list, "topics", list)
        topics = tuple(_topic_summary(row) for row in rows)
        per_page = topic_list.get("per_page")
        # Discourse adds more_topics_url only when a page is full. The contract's category
        # list schema has no more_topics_url at all, so a full page counts as "maybe more"
        # too; at worst that costs one request for an empty page.
        full = isinstance(per_page, int) and per_page > 0 and len(rows) >= per_page
        return TopicPage(topics=topics, has_more=bool(rows) and ("more_topics_url" in topic_list or full))

    async def iter_topics(
        self,
        *,
        category_ids: Sequence[int] = (),
        bumped_since: datetime | None = None,
        max_pages: int = 10_000,
    ) -> AsyncIterator[TopicSummary]:
        """Every topic (of the given categories, or the whole forum), newest bump first.

        With ``bumped_since`` it stops at the first unpinned topic bumped before it: lists are
        ordered by bumped_at, so the rest is older. Pinned topics sit on top regardless of
        age and must not stop the walk. Topics bumped during the walk can shift between
        pages, so callers should overlap ``bumped_since`` by a margin; duplicates are dropped.
        """
        if bumped_since is not None and bumped_since.tzinfo is None:
            raise ValueError("bumped_since must be timezone-aware")
        listings: Sequence[int | None] = list(category_ids) or [None]
        seen: set[int] = set()
        for category_id in listings:
            for page in range(max_pages):
                result = await self.latest(page=page, category_id=category_id)
                fresh = [t for t in result.topics if t.id not in seen]
                reached_older = False
                for summary in fresh:
                    if bumped_since is not None and not summary.pinned and summary.bumped_at < bumped_since:
                        reached_older = True
                        break
                    seen.add(summary.id)
                    yield summary
                # A page with nothing new means the server is looping; stop rather than spin.
                if reached_older or not result.has_more or not fresh:
                    break

    async def _category_slug(self, category_id: int) -> str:
        slug = self._category_slugs.get(category_id)
        if slug is None:
            data = await self._get_json(f"/c/{category_id}/show.json")
            slug = _field(_field(data, "category", dict), "slug", str)
            self._category_slugs[category_id] = slug
        return slug

    # ------------------------------------------------------------------ one topic

    async def topic(self, topic_id: int) -> Topic:
        """The topic with its first post and accepted answer (discourse-solved) as plain text."""
        topic_id = int(topic_id)
        data = await self._get_json(f"/t/{topic_id}.json")
        stream_obj = _field(data, "post_stream", dict)
        posts = [p for p in _field(stream_obj, "posts", list) if isinstance(p, dict)]
        stream = [i for i in stream_obj.get("stream", [])[:_MAX_STREAM_IDS] if isinstance(i, int)]

        first = _post_by_number(posts, 1)
        if first is None and stream:
            # The first chunk normally starts at post 1; if it doesn't, stream[0] is the first post.
            fetched = await self._posts(topic_id, stream[:1])
            first = fetched[0] if fetched else None
        if first is None:
            raise DiscourseBadResponse(f"topic {topic_id} has no first post")

        answer_number = _accepted_post_number(data, posts)
        answer = None
        if answer_number is not None and answer_number > 1:
            answer = _post_by_number(posts, answer_number) or await self._find_post_number(
                topic_id, stream, answer_number
            )

        created_at = _time(data, "created_at")
        stamps = [created_at, _time(first, "updated_at")]
        if data.get("last_posted_at"):
            stamps.append(_time(data, "last_posted_at"))
        if answer is not None:
            stamps.append(_time(answer, "updated_at"))
        slug = _field(data, "slug", str)
        return Topic(
            id=topic_id,
            title=_field(data, "title", str),
            slug=slug,
            category_id=_optional_int(data.get("category_id")),
            tags=_tags(data.get("tags")),
            url=self.topic_url(slug, topic_id),
            created_at=created_at,
            updated_at=max(stamps),
            first_post_text=cooked_to_text(_field(first, "cooked", str)),
            accepted_answer_text=cooked_to_text(_field(answer, "cooked", str)) if answer is not None else None,
        )

    async def _posts(self, topic_id: int, post_ids: Sequence[int]) -> list[dict[str, Any]]:
        params = [("post_ids[]", str(int(i))) for i in post_ids]
        data = await self._get_json(f"/t/{topic_id}/posts.json", params=params)
        posts = _field(_field(data, "post_stream", dict), "posts", list)
        return [p for p in posts if isinstance(p, dict)]

    async def _find_post_number(self, topic_id: int, stream: Sequence[int], number: int) -> dict[str, Any] | None:
        """Fetch the post with ``number`` when only ids are known.

        ``stream`` lists post ids in post_number order, and deleted posts leave gaps in the
        numbering, never extra entries; so post N sits at index N-1 or earlier. Look at the
        window ending there and walk back, a bounded number of times.
        """
        end = min(number, len(stream))
        for _ in range(_MAX_ANSWER_LOOKUPS):
            if end <= 0:
                return None
            window = stream[max(0, end - _POSTS_PER_REQUEST) : end]
            posts = await self._posts(topic_id, window)
            found = _post_by_number(posts, number)
            numbers = [p["post_number"] for p in posts if isinstance(p.get("post_number"), int)]
            if found is not None or not numbers or min(numbers) < number:
                return found
            end -= _POSTS_PER_REQUEST
        return None

    # ------------------------------------------------------------------ search

    async def search(self, query: str) -> list[SearchHit]:
        """Discourse's full-text search, one hit per topic in Discourse's rank order."""
        query = " ".join(query.split())[:_MAX_SEARCH_QUERY]
        if not query:
            return []
        data = await self._get_json("/search.json", params={"q": query})
        topics = {
            t["id"]: t for t in data.get("topics") or [] if isinstance(t, dict) and isinstance(t.get("id"), int)
        }
        hits: list[SearchHit] = []
        seen: set[int] = set()
        for post in _field(data, "posts", list):
            if not isinstance(post, dict):
                continue
            topic = topics.get(post.get("topic_id"))  # type: ignore[arg-type]
            if topic is None or topic["id"] in seen:
                continue  # a post whose topic was not sent along cannot be shown usefully
            seen.add(topic["id"])
            slug = str(topic.get("slug") or "")
            hits.append(
                SearchHit(
                    topic_id=topic["id"],
                    post_id=_field(post, "id", int),
                    post_number=_field(post, "post_number", int),
                    title=_field(topic, "title", str),
                    slug=slug,
                    category_id=_optional_int(topic.get("category_id")),
                    tags=_tags(topic.get("tags")),
                    blurb=cooked_to_text(str(post.get("blurb") or ""), max_text_chars=2000),
                    url=self.topic_url(slug, topic["id"]),
                )
            )
        return hits

    # ------------------------------------------------------------------ publishing

    async def create_topic(self, *, title: str, raw: str, category: int | None, external_id: str) -> CreatedTopic:
        """Create a topic, at most once per ``external_id``.

        The outbox retries after timeouts, when Discourse may well have created the topic
        already. So we look the external_id up first, and if the create is refused (e.g.
        the id is taken because a concurrent attempt won) we look it up again before failing.
        """
        problems = []
        if len(title.strip()) < self._min_title:
            problems.append(f"Title is too short: at least {self._min_title} characters are needed.")
        if len(raw.strip()) < self._min_post:
            problems.append(f"Body is too short: at least {self._min_post} characters are needed.")
        if not _EXTERNAL_ID.fullmatch(external_id):
            problems.append("external_id must be 1-50 letters, digits, '_' or '-'.")
        if problems:
            raise DiscourseRejected(problems)

        existing = await self.topic_by_external_id(external_id)
        if existing is not None:
            return existing
        body: dict[str, Any] = {"title": title, "raw": raw, "external_id": external_id}
        if category is not None:
            body["category"] = int(category)
        try:
            data = await self._request_json("POST", "/posts.json", json_body=body)
        except DiscourseRejected:
            existing = await self.topic_by_external_id(external_id)
            if existing is not None:
                return existing
            raise
        topic_id = _field(data, "topic_id", int)
        return CreatedTopic(
            topic_id=topic_id,
            post_id=_field(data, "id", int),
            url=self.topic_url(str(data.get("topic_slug") or ""), topic_id),
        )

    async def upload(self, data: bytes, *, filename: str, content_type: str) -> Upload:
        """Store an image on the forum for a post to show (``upload_type=composer``)."""
        form = aiohttp.FormData()
        form.add_field("upload_type", "composer")
        form.add_field("synchronous", "true")
        form.add_field("file", data, filename=filename, content_type=content_type)
        stored = await self._request_json("POST", "/uploads.json", form=form)
        short_url = stored.get("short_url")
        return Upload(id=_field(stored, "id", int), url=_field(stored, "url", str),
                      short_url=short_url if isinstance(short_url, str) and short_url.startswith("upload://") else None)

    async def topic_by_external_id(self, external_id: str) -> CreatedTopic | None:
        """The topic created with ``external_id``, or None. Discourse answers with a redirect."""
        if not _EXTERNAL_ID.fullmatch(external_id):
            return None
        reply = await self._send("GET", f"/t/external_id/{external_id}.json")
        if reply.status == 404:
            return None
        if reply.status not in (301, 302, 303, 307, 308):
            self._raise_for_status(reply)
            raise DiscourseBadResponse(f"expected a redirect for external_id, got HTTP {reply.status}")
        match = _TOPIC_LOCATION.search(yarl.URL(reply.headers.get("Location", "")).path)
        if match is None:
            raise DiscourseBadResponse("external_id redirect does not point at a topic")
        topic_id = int(match.group(1))
        # We re-ask our own base URL rather than following the Location, wherever it points.
        try:
            data = await self._get_json(f"/t/{topic_id}.json")
        except DiscourseNotFound:
            return None
        stream = _field(_field(data, "post_stream", dict), "stream", list)
        if not stream or not isinstance(stream[0], int):
            raise DiscourseBadResponse(f"topic {topic_id} has no posts")
        return CreatedTopic(topic_id=topic_id, post_id=stream[0], url=self.topic_url(_field(data, "slug", str), topic_id))

    # ------------------------------------------------------------------ HTTP

    async def _get_json(self, path: str, *, params: Any = None) -> dict[str, Any]:
        return await self._request_json("GET", path, params=params)

    async def _request_json(
        self, method: str, path: str, *, params: Any = None, json_body: Any = None,
        form: aiohttp.FormData | None = None,
    ) -> dict[str, Any]:
        reply = await self._send(method, path, params=params, json_body=json_body, form=form)
        self._raise_for_status(reply)
        if reply.status != 200:
            raise DiscourseBadResponse(f"{method} {path}: unexpected HTTP {reply.status}")
        try:
            data = _loads(reply.body)
        except ValueError:
            raise DiscourseBadResponse(f"{method} {path}: response is not JSON") from None
        if not isinstance(data, dict):
            raise DiscourseBadResponse(f"{method} {path}: response is not a JSON object")
        return data

    async def _send(self, method: str, path: str, *, params: Any = None, json_body: Any = None,
                    form: aiohttp.FormData | None = None) -> _Reply:
        await self._throttle.acquire()
        try:
            async with self._session.request(
                method,
                self._base + path,
                params=params,
                json=json_body,
                data=form,
                headers=self._headers,
                timeout=self._timeout,
                allow_redirects=False,
            ) as resp:
                body = await self._read_capped(resp, method, path)
                reply = _Reply(status=resp.status, headers=dict(resp.headers), body=body)
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            # str(exc) can carry the URL but never headers, so the key cannot leak here.
            log.info("discourse %s %s failed: %s", method, path, type(exc).__name__)
            raise DiscourseUnavailable(f"Discourse unreachable ({type(exc).__name__})") from exc
        log.debug("discourse %s %s -> %s", method, path, reply.status)
        return reply

    async def _read_capped(self, resp: aiohttp.ClientResponse, method: str, path: str) -> bytes:
        if resp.content_length is not None and resp.content_length > self._max_bytes:
            raise DiscourseBadResponse(f"{method} {path}: response of {resp.content_length} bytes is too large")
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.content.iter_chunked(64 * 1024):
            size += len(chunk)
            if size > self._max_bytes:
                raise DiscourseBadResponse(f"{method} {path}: response exceeds {self._max_bytes} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def _raise_for_status(self, reply: _Reply) -> None:
        status = reply.status
        if status < 400:
            return
        errors, wait_seconds = _error_details(reply.body)
        if status == 429 or status >= 500:
            retry_after = _retry_after(reply.headers.get("Retry-After"), wait_seconds)
            if status == 429 and retry_after is not None:
                # Everyone sharing this client backs off, not just the caller that got the 429.
                self._throttle.pause_until(self._clock() + retry_after)
            detail = f": {errors[0]}" if errors else ""
            raise DiscourseUnavailable(f"Discourse answered HTTP {status}{detail}", retry_after=retry_after)
        if status in (401, 403):
            raise DiscourseAuthError(
                f"Discourse refused our API credentials (HTTP {status})", status=status, errors=errors
            )
        if status == 404:
            raise DiscourseNotFound(errors or ("Not found.",), status=status)
        raise DiscourseRejected(errors, status=status)


# ---------------------------------------------------------------------------- parsing helpers


def _loads(body: bytes) -> Any:
    return json.loads(body)


def _error_details(body: bytes) -> tuple[tuple[str, ...], float | None]:
    """Messages from Discourse's error bodies, whichever of its shapes they come in.

    ``{"errors": [...], "error_type": ..., "extras": {"wait_seconds": N}}`` (most errors, 429),
    ``{"action": "create_post", "errors": [...]}`` (422 from POST /posts.json) and
    ``{"failed": "FAILED", "message": "..."}`` / ``{"error": "..."}``; anything else (an HTML
    page from a proxy) yields no messages.
    """
    try:
        data = _loads(body)
    except ValueError:
        return (), None
    if not isinstance(data, dict):
        return (), None
    raw: list[Any] = []
    if isinstance(data.get("errors"), list):
        raw.extend(data["errors"])
    for key in ("error", "message"):
        if isinstance(data.get(key), str):
            raw.append(data[key])
    errors = tuple(str(e)[:_MAX_ERROR_CHARS] for e in raw[:_MAX_ERROR_MESSAGES] if isinstance(e, str | int | float))
    extras = data.get("extras")
    wait = extras.get("wait_seconds") if isinstance(extras, dict) else None
    wait_seconds = float(wait) if isinstance(wait, int | float) and not isinstance(wait, bool) else None
    return errors, wait_seconds


def _retry_after(header: str | None, wait_seconds: float | None) -> float | None:
    candidates = [w for w in (wait_seconds,) if w is not None]
    if header:
        try:
            candidates.append(float(header.strip()))
        except ValueError:
            pass  # HTTP-date form: Discourse never sends it; the body's wait_seconds covers us
    valid = [c for c in candidates if c == c and c >= 0]  # drop NaN and negatives
    return min(max(valid), _MAX_RETRY_AFTER) if valid else None


def _field(obj: Any, key: str, kind: type) -> Any:
    value = obj.get(key) if isinstance(obj, dict) else None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise DiscourseBadResponse(f"Discourse response lacks {key!r} ({kind.__name__})")
    return value


def _optional_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _time(obj: dict[str, Any], key: str) -> datetime:
    try:
        moment = datetime.fromisoformat(_field(obj, key, str))
    except ValueError:
        raise DiscourseBadResponse(f"Discourse response has a malformed {key!r}") from None
    if moment.tzinfo is None:
        raise DiscourseBadResponse(f"Discourse response has {key!r} without a time zone")
    return moment


def _tags(value: Any) -> tuple[str, ...]:
    """Tags as names: older Discourse sends strings, newer sends {id, name, slug} objects."""
    if not isinstance(value, list):
        return ()
    names = (t if isinstance(t, str) else t.get("name") if isinstance(t, dict) else None for t in value)
    return tuple(n for n in names if isinstance(n, str) and n)


def _topic_summary(row: Any) -> TopicSummary:
    if not isinstance(row, dict):
        raise DiscourseBadResponse("Discourse topic list holds a non-object")
    created_at = _time(row, "created_at")
    bumped_key = "bumped_at" if isinstance(row.get("bumped_at"), str) else "last_posted_at"
    bumped_at = _time(row, bumped_key) if isinstance(row.get(bumped_key), str) else created_at
    return TopicSummary(
        id=_field(row, "id", int),
        title=_field(row, "title", str),
        slug=str(row.get("slug") or ""),
        category_id=_optional_int(row.get("category_id")),
        created_at=created_at,
        bumped_at=bumped_at,
        posts_count=_optional_int(row.get("posts_count")) or 0,
        pinned=row.get("pinned") is True,
    )


def _post_by_number(posts: Sequence[dict[str, Any]], number: int) -> dict[str, Any] | None:
    return next((p for p in posts if p.get("post_number") == number), None)


def _accepted_post_number(topic: dict[str, Any], posts: Sequence[dict[str, Any]]) -> int | None:
    """discourse-solved marks the answer on the topic (``accepted_answer.post_number``) and on the post."""
    accepted = topic.get("accepted_answer")
    if isinstance(accepted, dict):
        number = _optional_int(accepted.get("post_number"))
        if number is not None:
            return number
    marked = next((p for p in posts if p.get("accepted_answer") is True), None)
    return _optional_int(marked.get("post_number")) if marked else None
