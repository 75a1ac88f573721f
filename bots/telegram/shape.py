"""The shape an update must have before we act on it.

python-telegram-bot parses leniently: a message without its ``chat`` becomes one whose
``chat`` is None, a ``text`` that is an object stays an object. Our handlers then failed
with AttributeError/TypeError, and the router retried such an update five times, each
failure holding back the whole batch with the poll loop's backoff. Telegram never sends
these; a broken or hostile Bot API server (or a forged webhook POST that knows the secret)
can. So the fields the customer side and the desk read are checked here first, and an
update that does not fit is skipped at once, like one PTB cannot parse at all.

Only types and presence are checked, never content; unknown fields are ignored (new Bot
API versions add them all the time).
"""

from __future__ import annotations

from typing import Any

__all__ = ["update_problem"]

_MAX_ID = 2**63 - 1  # Telegram's ids fit in 52 bits; anything past 64 reaches no database


def _user(required: bool) -> dict[str, Any]:
    return {"id": (int, True), "is_bot": (bool, False), "first_name": (str, required), "last_name": (str, False),
            "username": (str, False), "language_code": (str, False)}


_USER = _user(required=True)
_CHAT = {"id": (int, True), "type": (str, True), "title": (str, False), "username": (str, False),
         "first_name": (str, False), "is_forum": (bool, False)}
_FILE = {"file_id": (str, True), "file_size": (int, False), "file_name": (str, False), "mime_type": (str, False)}
_MESSAGE: dict[str, Any] = {
    "message_id": (int, True), "date": (int, True), "chat": (_CHAT, True), "from": (_USER, False),
    "sender_chat": (_CHAT, False), "text": (str, False), "caption": (str, False), "message_thread_id": (int, False),
    "is_topic_message": (bool, False), "photo": ([_FILE], False), "document": (_FILE, False),
    "voice": (_FILE, False), "audio": (_FILE, False), "video": (_FILE, False), "video_note": (_FILE, False),
    "location": ({"latitude": (float, True), "longitude": (float, True)}, False),
    "contact": ({"first_name": (str, True), "last_name": (str, False), "phone_number": (str, True)}, False),
    "sticker": ({"emoji": (str, False)}, False),
}
# A reply's parent is a message too (checked one level deep: that is all we read of it).
_MESSAGE["reply_to_message"] = ({k: v for k, v in _MESSAGE.items()}, False)
_CALLBACK = {"id": (str, True), "from": (_USER, True), "data": (str, False), "message": (_MESSAGE, False),
             "chat_instance": (str, False)}
_KINDS = {"message": _MESSAGE, "edited_message": _MESSAGE, "callback_query": _CALLBACK}


def _problem(value: Any, spec: Any, path: str) -> str | None:
    if isinstance(spec, list):
        if not isinstance(value, list):
            return f"{path} is not a list"
        for i, item in enumerate(value[:100]):
            if problem := _problem(item, spec[0], f"{path}[{i}]"):
                return problem
        return None
    if isinstance(spec, dict):
        if not isinstance(value, dict):
            return f"{path} is not an object"
        for key, (inner, required) in spec.items():
            if key not in value or value[key] is None:
                if required:
                    return f"{path}.{key} is missing"
                continue
            if problem := _problem(value[key], inner, f"{path}.{key}"):
                return problem
        return None
    if spec is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif spec is int:
        ok = isinstance(value, int) and not isinstance(value, bool) and -_MAX_ID <= value <= _MAX_ID
    else:
        ok = isinstance(value, spec)
    return None if ok else f"{path} is not {spec.__name__}"


def update_problem(data: dict[str, Any]) -> str | None:
    """Why ``data`` is not an update we can act on, or None when it is (or when it is
    of a kind we do not handle: the router counts those as ignored)."""
    update_id = data.get("update_id")
    if not isinstance(update_id, int) or isinstance(update_id, bool) or not 0 <= update_id <= _MAX_ID:
        return "update_id is not a non-negative integer"
    for kind, spec in _KINDS.items():
        if kind in data:
            return _problem(data[kind], spec, kind)
    return None
