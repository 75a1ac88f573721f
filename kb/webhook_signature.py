"""Discourse webhooks: check they come from our forum, and reduce them to "topic N changed".

Discourse signs each delivery with ``X-Discourse-Event-Signature: sha256=<hex>``, the
HMAC-SHA256 of the raw body under the webhook's secret, and names the event in
``X-Discourse-Event`` (``topic_created``, ``post_edited``, ...). We only need to know which
topic to re-sync, so an event becomes a tiny frozen ``WebhookEvent``; the sync fetches the
topic itself instead of trusting the payload's copy.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
from dataclasses import dataclass

__all__ = ["InvalidWebhook", "WebhookEvent", "WebhookKind", "parse_webhook", "verify_webhook_signature"]

#: Our HTTP route caps the body too; this keeps the parser's cost bounded on its own.
MAX_WEBHOOK_BYTES = 1024 * 1024


def verify_webhook_signature(secret: str, body: bytes, header: str | None) -> bool:
    """True only if ``header`` is Discourse's signature of ``body`` under ``secret``.

    An empty secret verifies nothing: anyone can compute an HMAC with an empty key.
    """
    if not secret or not header:
        return False
    scheme, _, given = header.strip().partition("=")
    if scheme.lower() != "sha256" or not given:
        return False
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    # Bytes, because compare_digest refuses non-ASCII str and the header is attacker-controlled.
    return hmac.compare_digest(expected.encode(), given.strip().lower().encode("utf-8", "replace"))


class WebhookKind(enum.StrEnum):
    TOPIC_CREATED = "topic_created"
    TOPIC_EDITED = "topic_edited"
    TOPIC_DESTROYED = "topic_destroyed"
    TOPIC_RECOVERED = "topic_recovered"
    POST_CREATED = "post_created"
    POST_EDITED = "post_edited"


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    kind: WebhookKind
    topic_id: int


class InvalidWebhook(ValueError):
    """The delivery is signed but its body is not what Discourse sends; answer 400."""


def parse_webhook(event_header: str | None, body: bytes) -> WebhookEvent | None:
    """The topic an event is about, or None for events the KB does not care about (``ping``, users...).

    Topic events carry ``{"topic": {"id": N, ...}}``; post events ``{"post": {"topic_id": N, ...}}``.
    Call this only after ``verify_webhook_signature``.
    """
    try:
        kind = WebhookKind((event_header or "").strip())
    except ValueError:
        return None
    if len(body) > MAX_WEBHOOK_BYTES:
        raise InvalidWebhook("webhook body too large")
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: deeply nested arrays (was a 500)
        raise InvalidWebhook("webhook body is not JSON") from None
    if kind.value.startswith("topic_"):
        obj, key = (payload.get("topic") if isinstance(payload, dict) else None), "id"
    else:
        obj, key = (payload.get("post") if isinstance(payload, dict) else None), "topic_id"
    topic_id = obj.get(key) if isinstance(obj, dict) else None
    if not isinstance(topic_id, int) or isinstance(topic_id, bool) or topic_id <= 0:
        raise InvalidWebhook(f"{kind.value} webhook without a topic id")
    return WebhookEvent(kind=kind, topic_id=topic_id)
