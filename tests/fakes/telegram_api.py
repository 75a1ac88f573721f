"""A fake Telegram Bot API server for tests, speaking the real wire format.

The real python-telegram-bot library talks HTTP to it exactly as it would to api.telegram.org:
``{api_base_url}/bot<token>/<method>`` with form-encoded, multipart or JSON bodies, and
``{api_base_url}/file/bot<token>/<file_path>`` for downloads. Answers are Telegram's envelopes,
``{"ok": true, "result": ...}`` or ``{"ok": false, "error_code": N, "description": ...}``.

Every object the fake produces and every parameter it receives is checked against the Bot API
contract in ``tests/contracts/telegram-bot-api.json``. The fake is deliberately *stricter* than
Telegram in one way: unknown parameters are rejected (Telegram silently ignores them, which would
let a misspelt parameter pass every test). A shape the fake itself gets wrong is a bug in the fake:
it raises :class:`ContractViolation` at once when built by a test helper, or is kept in
``internal_errors`` and raised by :meth:`FakeTelegram.stop` when built while answering the bot.

Usage (or import the ``fake_telegram`` fixture into a conftest.py)::

    async with FakeTelegram() as tg:
        bot = telegram.Bot(**tg.bot_kwargs())       # token, base_url, base_file_url
        tg.private_text(42, "Hola")                  # queue an update for getUpdates
        call = await tg.wait_for_call("sendMessage")

Not modelled: MarkdownV2 parsing (text is kept as sent), message entities, media groups,
@username chat ids, and Telegram's refusal to let a bot write first to a user (unknown positive
chat ids become private chats, unknown negative ones forum supergroups).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from http import HTTPStatus
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

DEFAULT_CONTRACT = Path(__file__).resolve().parents[1] / "contracts" / "telegram-bot-api.json"

# Update kinds Telegram leaves out unless allowed_updates names them explicitly.
_OPT_IN_UPDATES = frozenset({"chat_member", "message_reaction", "message_reaction_count"})
_CHAT_ACTIONS = frozenset({
    "typing", "upload_photo", "record_video", "upload_video", "record_voice", "upload_voice",
    "upload_document", "choose_sticker", "find_location", "record_video_note", "upload_video_note",
})
_TOPIC_COLORS = frozenset({7322096, 16766590, 13338331, 9367192, 16749490, 16478047})
_HTML_TAGS = frozenset({
    "b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "span", "tg-spoiler", "a",
    "code", "pre", "blockquote", "tg-emoji",
})
_SECRET_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,256}")
_COMMAND = re.compile(r"[a-z0-9_]{1,32}")
_MAX_UPLOAD = 50 * 1024 * 1024  # Telegram's own limit for bot uploads
FIXTURES = Path(__file__).resolve().parent / "telegram_fixtures"


def load_fixture(name: str) -> dict[str, Any]:
    """A recorded-looking Bot API payload from ``telegram_fixtures/``, e.g. for push_update()."""
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


class ContractViolation(AssertionError):
    """A value does not match the Bot API contract."""


class BotApiContract:
    """Checks values against the ``methods`` and ``types`` of the Bot API contract JSON."""

    _PRIMITIVES: dict[str, Callable[[Any], bool]] = {
        "String": lambda v: isinstance(v, str),
        "Integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "Float": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        "Boolean": lambda v: isinstance(v, bool),
        "True": lambda v: v is True,
        # Only a reference can appear among parameters; the bytes travel as a multipart part.
        "InputFile": lambda v: isinstance(v, str) and v.startswith("attach://"),
    }

    def __init__(self, spec: dict[str, Any]) -> None:
        self.types: dict[str, Any] = spec["types"]
        # Telegram treats method names case-insensitively.
        self._methods = {name.lower(): m for name, m in spec["methods"].items()}

    @classmethod
    def load(cls, path: Path = DEFAULT_CONTRACT) -> BotApiContract:
        return cls(json.loads(path.read_text(encoding="utf-8")))

    def method(self, name: str) -> dict[str, Any] | None:
        return self._methods.get(name.lower())

    def errors(self, value: Any, types: list[str], path: str = "$", depth: int = 0) -> list[str]:
        """Problems of ``value`` against a union of contract types; empty when it conforms."""
        if depth > 40:
            return [f"{path}: nested too deeply"]
        best: list[str] | None = None
        for type_name in types:
            errs = self._errors_one(value, type_name, path, depth)
            if not errs:
                return []
            if best is None or len(errs) < len(best):
                best = errs
        return best or [f"{path}: no type allowed"]

    def check(self, value: Any, type_name: str, what: str = "") -> None:
        errs = self.errors(value, [type_name], what or type_name)
        if errs:
            raise ContractViolation(f"not a valid {type_name}: " + "; ".join(errs[:5]))

    def _errors_one(self, value: Any, type_name: str, path: str, depth: int) -> list[str]:
        if type_name.startswith("Array of "):
            if not isinstance(value, list):
                return [f"{path}: expected {type_name}, got {type(value).__name__}"]
            inner = [type_name.removeprefix("Array of ")]
            return [e for i, v in enumerate(value) for e in self.errors(v, inner, f"{path}[{i}]", depth + 1)]
        if type_name in self._PRIMITIVES:
            ok = self._PRIMITIVES[type_name](value)
            return [] if ok else [f"{path}: expected {type_name}, got {type(value).__name__}"]
        spec = self.types.get(type_name)
        if spec is None:
            return [f"{path}: unknown type {type_name}"]
        if "subtypes" in spec:
            return self.errors(value, spec["subtypes"], path, depth + 1)
        if not isinstance(value, dict):
            return [f"{path}: expected {type_name} object, got {type(value).__name__}"]
        fields = {f["name"]: f for f in spec.get("fields", [])}
        errs = [f"{path}: unknown field {k!r} in {type_name}" for k in value if k not in fields]
        for name, f in fields.items():
            if name in value:
                errs += self.errors(value[name], f["types"], f"{path}.{name}", depth + 1)
            elif f["required"]:
                errs.append(f"{path}: missing required field {name!r} of {type_name}")
        return errs


class TelegramApiError(Exception):
    """An error answer, in Telegram's own words."""

    def __init__(self, status: int, description: str, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.status, self.description, self.retry_after = status, description, retry_after

    def payload(self) -> dict[str, Any]:
        body: dict[str, Any] = {"ok": False, "error_code": self.status, "description": self.description}
        if self.retry_after is not None:
            body["parameters"] = {"retry_after": self.retry_after}
        return body


def _bad(description: str) -> TelegramApiError:
    return TelegramApiError(400, f"Bad Request: {description}")


@dataclass(frozen=True)
class UploadedFile:
    filename: str
    content: bytes
    content_type: str


@dataclass(frozen=True)
class RecordedCall:
    method: str                      # canonical name, e.g. "sendMessage"
    params: dict[str, Any]           # values JSON-decoded according to the contract
    files: dict[str, UploadedFile]   # multipart parts by part name
    status: int                      # HTTP status the fake answered


@dataclass
class _StoredFile:
    file_id: str
    file_unique_id: str
    file_path: str
    content: bytes


@dataclass
class _Failure:
    status: int
    description: str
    retry_after: int | None
    remaining: int = field(default=1)


class _TelegramHtml(HTMLParser):
    """Strips Telegram's HTML formatting the way the server does, and rejects what it rejects."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.text: list[str] = []
        self.open: list[str] = []

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag not in _HTML_TAGS:
            raise _bad(f'can\'t parse entities: Unsupported start tag "{tag}"')
        self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.open or self.open[-1] != tag:
            raise _bad(f'can\'t parse entities: Unexpected end tag "{tag}"')
        self.open.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _rendered_text(text: str, parse_mode: str | None) -> str:
    # MarkdownV2 escaping is not modelled: such text is kept as sent.
    if (parse_mode or "").upper() != "HTML":
        return text
    parser = _TelegramHtml()
    parser.feed(text)
    parser.close()
    if parser.open:
        raise _bad(f"can't parse entities: Can't find end tag corresponding to start tag \"{parser.open[-1]}\"")
    return "".join(parser.text)


class FakeTelegram:
    """A Bot API server on 127.0.0.1 with a random port; see the module docstring."""

    def __init__(
        self,
        *,
        token: str = "123456:TEST-token",
        bot_username: str = "posventa_bot",
        contract: BotApiContract | None = None,
        max_long_poll: float = 10.0,
    ) -> None:
        self.token = token
        self.contract = contract or BotApiContract.load()
        self.max_long_poll = max_long_poll  # long polls are bounded so a stuck test stays short
        self.bot_user = {"id": int(token.split(":")[0]), "is_bot": True, "first_name": "Posventa",
                         "username": bot_username}
        self.token_valid = True
        self.calls: list[RecordedCall] = []
        self.internal_errors: list[BaseException] = []
        self.messages: dict[tuple[int, int], dict[str, Any]] = {}
        self.topics: dict[tuple[int, int], dict[str, Any]] = {}
        self.commands: list[dict[str, Any]] = []
        self.answered_callbacks: dict[str, dict[str, Any]] = {}
        self.pending_updates: list[dict[str, Any]] = []
        self.confirmed_offset = 0
        self.webhook: dict[str, Any] | None = None
        self.waiting_polls = 0  # getUpdates requests currently held open
        self.held = 0  # calls waiting behind a hold()
        self.api_base_url = ""
        self._chats: dict[int, dict[str, Any]] = {}
        self._users: dict[int, dict[str, Any]] = {}
        self._last_message_id: dict[int, int] = {}
        self._files: dict[str, _StoredFile] = {}
        self._open_callbacks: set[str] = set()
        self._failures: dict[str, list[_Failure]] = {}
        self._blocked: set[int] = set()
        self._holds: dict[str, asyncio.Event] = {}
        self._allowed_updates: list[str] = []
        self._next_update_id = 1000
        self._poll_generation = 0
        self._wakeup = asyncio.Event()
        self._closing = False
        self._runner: web.AppRunner | None = None
        self._handlers: dict[str, Callable[[dict[str, Any], dict[str, UploadedFile]], Any]] = {
            "getMe": lambda p, f: self._checked(self.bot_user | {
                "can_join_groups": True, "can_read_all_group_messages": True,
                "supports_inline_queries": False}, "User"),
            "getUpdates": self._get_updates, "setWebhook": self._set_webhook,
            "deleteWebhook": self._delete_webhook, "getWebhookInfo": self._get_webhook_info,
            "sendMessage": self._send_message, "sendPhoto": functools.partial(self._send_media, "photo"),
            "sendDocument": functools.partial(self._send_media, "document"),
            "sendVoice": functools.partial(self._send_media, "voice"),
            "editMessageText": self._edit_message, "editMessageReplyMarkup": self._edit_message,
            "deleteMessage": self._delete_message, "getFile": self._get_file,
            "createForumTopic": self._create_forum_topic, "editForumTopic": self._edit_forum_topic,
            "answerCallbackQuery": self._answer_callback_query,
            "sendChatAction": self._send_chat_action, "setMyCommands": self._set_my_commands,
        }

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application(client_max_size=_MAX_UPLOAD)
        app.router.add_route("*", "/bot{token}/{method}", self._handle_method)
        app.router.add_get("/file/bot{token}/{path:.+}", self._handle_file)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.api_base_url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        self._closing = True
        self._wake()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self.internal_errors:
            raise self.internal_errors[0]

    async def __aenter__(self) -> FakeTelegram:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def bot_kwargs(self) -> dict[str, str]:
        """Keyword arguments for ``telegram.Bot`` pointing it at this server."""
        return {"token": self.token, "base_url": f"{self.api_base_url}/bot",
                "base_file_url": f"{self.api_base_url}/file/bot"}

    # -- inspecting what the bot did -----------------------------------------------------------

    def calls_to(self, method: str) -> list[RecordedCall]:
        return [c for c in self.calls if c.method.lower() == method.lower()]

    async def wait_for_call(
        self, method: str, predicate: Callable[[RecordedCall], bool] | None = None, timeout: float = 5.0
    ) -> RecordedCall:
        """The first call (already made or still to come) to ``method`` matching ``predicate``."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    woken = self._wakeup
                    for call in self.calls_to(method):
                        if predicate is None or predicate(call):
                            return call
                    await woken.wait()
        except TimeoutError:
            seen = [(c.method, c.status) for c in self.calls]
            raise AssertionError(f"no matching {method} call within {timeout}s; calls: {seen}") from None

    def sent_messages(self, chat_id: int | None = None, thread_id: int | None = None) -> list[dict[str, Any]]:
        """Messages the bot sent (and still exist), oldest first."""
        return [m for m in self.messages.values()
                if m.get("from", {}).get("id") == self.bot_user["id"]
                and (chat_id is None or m["chat"]["id"] == chat_id)
                and (thread_id is None or m.get("message_thread_id") == thread_id)]

    # -- failure injection ---------------------------------------------------------------------

    def fail_next(self, method: str, *, status: int = 429, retry_after: int | None = 3,
                  description: str | None = None, count: int = 1) -> None:
        if description is None:
            description = (f"Too Many Requests: retry after {retry_after}" if status == 429
                           else HTTPStatus(status).phrase)
        failure = _Failure(status, description, retry_after if status == 429 else None, count)
        self._failures.setdefault(method.lower(), []).append(failure)

    def block_user(self, chat_id: int) -> None:
        self._blocked.add(chat_id)

    def hold(self, method: str) -> asyncio.Event:
        """Hold calls to ``method`` once their body is read, until the returned event is set
        (a slow Bot API server). ``held`` counts the calls waiting."""
        gate = self._holds[method.lower()] = asyncio.Event()
        return gate

    # -- feeding updates -----------------------------------------------------------------------

    def push_update(self, update: dict[str, Any]) -> dict[str, Any]:
        """Queue an update (giving it the next update_id) as Telegram would for the bot."""
        update = {"update_id": self._next_update_id} | {k: v for k, v in update.items() if k != "update_id"}
        self._next_update_id += 1
        self.contract.check(update, "Update")
        kind = next((k for k in update if k != "update_id"), None)
        if kind is None:
            raise ValueError("an update needs one payload besides update_id")
        allowed = self._allowed_updates or [k for k in self._update_kinds() if k not in _OPT_IN_UPDATES]
        if kind in allowed:  # Telegram never creates updates of kinds the bot opted out of
            self.pending_updates.append(update)
            self._wake()
        return update

    def private_text(self, user_id: int, text: str, *, language_code: str = "es",
                     first_name: str = "Ana") -> dict[str, Any]:
        sender = self._customer(user_id, first_name, language_code)
        return self.push_update({"message": self._new_message(user_id, sender, text=text)})

    def private_photo(self, user_id: int, *, caption: str | None = None,
                      file_bytes: bytes = b"\xff\xd8\xff\xe0fake-jpeg\xff\xd9") -> dict[str, Any]:
        stored = self._store_file(file_bytes, "photos", "jpg")
        photo = [self._file_fields(stored) | {"width": 1280, "height": 960}]
        return self._private_media(user_id, caption, photo=photo)

    def private_document(self, user_id: int, *, file_name: str = "factura.pdf",
                         mime_type: str = "application/pdf", caption: str | None = None,
                         file_bytes: bytes = b"%PDF-1.4 fake\n%%EOF") -> dict[str, Any]:
        stored = self._store_file(file_bytes, "documents", file_name.rpartition(".")[2] or "bin")
        document = self._file_fields(stored) | {"file_name": file_name, "mime_type": mime_type}
        return self._private_media(user_id, caption, document=document)

    def private_voice(self, user_id: int, *, duration: int = 3,
                      file_bytes: bytes = b"OggS fake-opus") -> dict[str, Any]:
        stored = self._store_file(file_bytes, "voice", "oga")
        voice = self._file_fields(stored) | {"duration": duration, "mime_type": "audio/ogg"}
        return self._private_media(user_id, None, voice=voice)

    def edited_private_text(self, user_id: int, message_id: int, new_text: str) -> dict[str, Any]:
        original = self.messages.get((user_id, message_id))
        if original is None:
            raise ValueError(f"no message {message_id} in private chat {user_id}")
        # A new dict: the original may still sit, unconfirmed, in an earlier update.
        edited = original | {"text": new_text, "edit_date": int(time.time())}
        self.messages[(user_id, message_id)] = edited
        return self.push_update({"edited_message": edited})

    def callback(self, user_id: int, data: str, *, message_id: int | None = None,
                 chat_id: int | None = None) -> dict[str, Any]:
        """A button press; by default on the bot's latest message with a keyboard in that chat."""
        chat_id = user_id if chat_id is None else chat_id
        if message_id is None:
            keyboards = [m for m in self.sent_messages(chat_id) if "reply_markup" in m]
            if not keyboards:
                raise ValueError(f"the bot sent no inline keyboard to chat {chat_id}")
            message: dict[str, Any] = keyboards[-1]
        else:
            message = self.messages.get((chat_id, message_id)) or {
                "chat": self._chat(chat_id), "message_id": message_id, "date": 0}  # InaccessibleMessage
        query_id = str(secrets.randbelow(10**18))
        self._open_callbacks.add(query_id)
        sender = self._users.get(user_id) or self._customer(user_id, "Ana", "es")
        return self.push_update({"callback_query": {
            "id": query_id, "from": sender, "message": message, "chat_instance": f"ci{chat_id}", "data": data}})

    def group_text(self, chat_id: int, user_id: int, text: str, *, thread_id: int | None = None,
                   is_topic: bool = True, first_name: str = "Agente") -> dict[str, Any]:
        """A message in a supergroup; with ``thread_id`` and ``is_topic`` inside a forum topic."""
        self.forum(chat_id)
        if thread_id is not None and is_topic and (chat_id, thread_id) not in self.topics:
            # A topic opened by a human, not through the bot.
            self._last_message_id[chat_id] = max(self._last_message_id.get(chat_id, 0), thread_id)
            self.topics[(chat_id, thread_id)] = {"message_thread_id": thread_id, "name": f"Topic {thread_id}",
                                                 "icon_color": 7322096}
        sender = self._customer(user_id, first_name, "es")
        extra: dict[str, Any] = {"is_topic_message": True} if thread_id is not None and is_topic else {}
        msg = self._new_message(chat_id, sender, thread_id=thread_id, text=text, **extra)
        return self.push_update({"message": msg})

    def group_photo(self, chat_id: int, user_id: int, *, thread_id: int, caption: str | None = None,
                    file_bytes: bytes = b"\xff\xd8\xff\xe0fake-jpeg\xff\xd9", first_name: str = "Agente") -> dict[str, Any]:
        """A photo posted in a forum topic (Telegram sends it as a JPEG, in several sizes)."""
        stored = self._store_file(file_bytes, "photos", "jpg")
        small = self._store_file(file_bytes[: max(1, len(file_bytes) // 4)], "photos", "jpg")
        photo = [self._file_fields(small) | {"width": 320, "height": 240},
                 self._file_fields(stored) | {"width": 1280, "height": 960}]
        return self._group_media(chat_id, user_id, thread_id, first_name, caption, photo=photo)

    def group_document(self, chat_id: int, user_id: int, *, thread_id: int, file_name: str = "factura.pdf",
                       mime_type: str = "application/pdf", caption: str | None = None,
                       file_bytes: bytes = b"%PDF-1.4 fake\n%%EOF", file_size: int | None = None,
                       first_name: str = "Agente") -> dict[str, Any]:
        """A document posted in a forum topic; ``file_size`` overrides what Telegram reports."""
        stored = self._store_file(file_bytes, "documents", file_name.rpartition(".")[2] or "bin")
        document = self._file_fields(stored) | {"file_name": file_name, "mime_type": mime_type}
        if file_size is not None:
            document["file_size"] = file_size
        return self._group_media(chat_id, user_id, thread_id, first_name, caption, document=document)

    def _group_media(self, chat_id: int, user_id: int, thread_id: int, first_name: str, caption: str | None,
                     **media: Any) -> dict[str, Any]:
        self.forum(chat_id)
        if (chat_id, thread_id) not in self.topics:
            raise ValueError(f"no topic {thread_id} in chat {chat_id}")
        sender = self._customer(user_id, first_name, "es")
        content = media | ({"caption": caption} if caption else {})
        msg = self._new_message(chat_id, sender, thread_id=thread_id, is_topic_message=True, **content)
        return self.push_update({"message": msg})

    def forum(self, chat_id: int, *, title: str = "Agentes", is_forum: bool = True) -> dict[str, Any]:
        """Register (or return) a supergroup, by default one with topics enabled."""
        if chat_id not in self._chats:
            self._chats[chat_id] = {"id": chat_id, "type": "supergroup", "title": title, "is_forum": is_forum}
        return self._chats[chat_id]

    async def deliver_webhook(self, url: str, update: dict[str, Any], secret_token: str | None) -> int:
        """POST one update like Telegram does; a 2xx answer removes it from the pending queue."""
        headers = {"X-Telegram-Bot-Api-Secret-Token": secret_token} if secret_token else {}
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            async with session.post(url, json=update, headers=headers) as resp:
                await resp.read()
                status = resp.status
        if 200 <= status < 300:
            self.pending_updates = [u for u in self.pending_updates if u["update_id"] != update["update_id"]]
        return status

    async def deliver_pending_webhook(self) -> list[int]:
        """Deliver every pending update to the webhook the bot set, in order; returns statuses."""
        if self.webhook is None:
            raise AssertionError("the bot has not set a webhook")
        return [await self.deliver_webhook(self.webhook["url"], u, self.webhook.get("secret_token"))
                for u in list(self.pending_updates)]

    # -- HTTP ------------------------------------------------------------------------------------

    async def _handle_method(self, request: web.Request) -> web.Response:
        method, params, files = request.match_info["method"], {}, {}
        try:
            if not self.token_valid or request.match_info["token"] != self.token:
                raise TelegramApiError(401, "Unauthorized")
            spec = self.contract.method(method)
            if spec is None:
                raise TelegramApiError(404, "Not Found")
            method = spec["name"]
            params, files = await self._read_params(request, spec)
            self._check_params(spec, params, files)
            if (gate := self._holds.get(method.lower())) is not None:
                self.held += 1
                self._wake()
                try:
                    await gate.wait()
                finally:
                    self.held -= 1
            self._inject_failure(method)
            if isinstance(params.get("chat_id"), int) and params["chat_id"] in self._blocked:
                raise TelegramApiError(403, "Forbidden: bot was blocked by the user")
            handler = self._handlers.get(method)
            if handler is None:
                raise ContractViolation(f"the fake does not implement {method}")
            result = handler(params, files)
            if inspect.isawaitable(result):
                result = await result
            errs = self.contract.errors(result, spec["returns"], f"{method} result")
            if errs:
                raise ContractViolation("; ".join(errs[:5]))
            status, body = 200, {"ok": True, "result": result}
        except TelegramApiError as err:
            status, body = err.status, err.payload()
        except (ConnectionResetError, aiohttp.ClientConnectionResetError):
            # The bot hung up mid-request (it is shutting down): nobody to answer, and no
            # fault of the fake's.
            raise
        except Exception as err:  # a bug in the fake: answer, and fail the test at stop()
            self.internal_errors.append(err)
            status, body = 500, {"ok": False, "error_code": 500, "description": f"fake bug: {err!r}"}
        self.calls.append(RecordedCall(method, params, files, status))
        self._wake()
        return web.json_response(body, status=status)

    async def _handle_file(self, request: web.Request) -> web.Response:
        stored = next((f for f in self._files.values() if f.file_path == request.match_info["path"]), None)
        if not self.token_valid or request.match_info["token"] != self.token:
            return web.json_response(TelegramApiError(401, "Unauthorized").payload(), status=401)
        if stored is None:
            return web.json_response(TelegramApiError(404, "Not Found").payload(), status=404)
        return web.Response(body=stored.content, content_type="application/octet-stream")

    async def _read_params(self, request: web.Request, spec: dict[str, Any]) -> tuple[dict, dict]:
        raw: dict[str, Any] = dict(request.query)
        params: dict[str, Any] = {}
        files: dict[str, UploadedFile] = {}
        if request.can_read_body:
            if request.content_type == "application/json":
                try:
                    body = await request.json()
                except ValueError:
                    raise _bad("can't parse JSON body") from None
                if not isinstance(body, dict):
                    raise _bad("JSON body must be an object")
                params.update(body)  # JSON values arrive already typed
            elif request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
                for key, value in (await request.post()).items():
                    if isinstance(value, web.FileField):
                        # aiohttp spools each part to a temporary file and closes it only once
                        # the response is finished, which a handler cancelled by the bot
                        # hanging up never reaches; left open, it surfaces as a ResourceWarning
                        # in whichever test the garbage collector happens to run.
                        with value.file:
                            files[key] = UploadedFile(value.filename, value.file.read(), value.content_type)
                    else:
                        raw[key] = value
            else:
                raise _bad(f"unsupported Content-Type {request.content_type}")
        types = {f["name"]: f["types"] for f in spec.get("fields", [])}
        for key, value in raw.items():
            params[key] = self._decode(value, types.get(key, ["String"]))
        if isinstance(params.get("chat_id"), str) and re.fullmatch(r"-?\d+", params["chat_id"]):
            params["chat_id"] = int(params["chat_id"])  # Telegram takes "42" and 42 alike
        return params, files

    @staticmethod
    def _decode(value: str, types: list[str]) -> Any:
        """Form values are strings; non-string parameters hold JSON (PTB json.dumps them)."""
        if "String" in types:
            if "Integer" in types:  # chat_id: a number or an @username
                return int(value) if re.fullmatch(r"-?\d+", value) else value
            return value
        try:
            return json.loads(value)
        except ValueError:
            return value  # left as a string, the type check then answers 400

    def _check_params(self, spec: dict[str, Any], params: dict[str, Any], files: dict[str, UploadedFile]) -> None:
        fields = {f["name"]: f for f in spec.get("fields", [])}
        for name in params:
            if name not in fields:
                raise _bad(f"unknown parameter {name!r} for {spec['name']}")
        for name, f in fields.items():
            value = params.get(name)
            if value is None or value == "":
                if f["required"] and name not in files:
                    raise _bad(f"{name} is empty")
                continue
            errs = self.contract.errors(value, f["types"], name)
            if errs:
                raise _bad(f"can't parse {name}: {errs[0]}")
            if isinstance(value, str) and value.startswith("attach://") and value[9:] not in files:
                raise _bad(f"file {value} not found in the request")

    def _inject_failure(self, method: str) -> None:
        queue = self._failures.get(method.lower())
        if queue:
            failure = queue[0]
            failure.remaining -= 1
            if failure.remaining <= 0:
                queue.pop(0)
            raise TelegramApiError(failure.status, failure.description, failure.retry_after)

    # -- methods ---------------------------------------------------------------------------------

    async def _get_updates(self, p: dict[str, Any], _files: dict) -> list[dict[str, Any]]:
        if self.webhook is not None:
            raise TelegramApiError(409, "Conflict: can't use getUpdates method while webhook is active; "
                                        "use deleteWebhook to delete the webhook first")
        if "allowed_updates" in p:
            self._allowed_updates = list(p["allowed_updates"])
        if "offset" in p:
            self._confirm(p["offset"])
        limit = min(max(p.get("limit", 100), 1), 100)
        self._poll_generation += 1
        generation = self._poll_generation
        self._wake()  # an older long poll still waiting now ends with 409, as on Telegram
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(max(p.get("timeout", 0), 0), self.max_long_poll)
        self.waiting_polls += 1
        try:
            while not self.pending_updates and not self._closing and loop.time() < deadline:
                woken = self._wakeup
                try:
                    async with asyncio.timeout(deadline - loop.time()):
                        await woken.wait()
                except TimeoutError:
                    pass
                if generation != self._poll_generation:
                    raise TelegramApiError(409, "Conflict: terminated by other getUpdates request; "
                                                "make sure that only one bot instance is running")
        finally:
            self.waiting_polls -= 1
        return self.pending_updates[:limit]

    def _confirm(self, offset: int) -> None:
        if offset < 0:  # -N: keep only the last N updates, forget all earlier ones
            kept = self.pending_updates[offset:] if -offset <= len(self.pending_updates) else self.pending_updates
            offset = kept[0]["update_id"] if kept else self._next_update_id
        self.pending_updates = [u for u in self.pending_updates if u["update_id"] >= offset]
        self.confirmed_offset = max(self.confirmed_offset, offset)

    def _set_webhook(self, p: dict[str, Any], _files: dict) -> bool:
        if p["url"] == "":
            return self._delete_webhook(p, _files)
        if not p["url"].startswith(("https://", "http://")):
            raise _bad("bad webhook: An HTTPS URL must be provided for webhook")
        if "secret_token" in p and not _SECRET_TOKEN.fullmatch(p["secret_token"]):
            raise _bad("secret token contains unallowed characters")
        if p.get("drop_pending_updates"):
            self._confirm(self._next_update_id)
        if "allowed_updates" in p:
            self._allowed_updates = list(p["allowed_updates"])
        self.webhook = {k: p[k] for k in ("url", "secret_token", "max_connections") if k in p}
        self._wake()
        return True

    def _delete_webhook(self, p: dict[str, Any], _files: dict) -> bool:
        if p.get("drop_pending_updates"):
            self._confirm(self._next_update_id)
        self.webhook = None
        return True

    def _get_webhook_info(self, p: dict[str, Any], _files: dict) -> dict[str, Any]:
        info: dict[str, Any] = {"url": (self.webhook or {}).get("url", ""), "has_custom_certificate": False,
                                "pending_update_count": len(self.pending_updates)}
        if self.webhook and "max_connections" in self.webhook:
            info["max_connections"] = self.webhook["max_connections"]
        if self._allowed_updates:
            info["allowed_updates"] = self._allowed_updates
        return self._checked(info, "WebhookInfo")

    def _send_message(self, p: dict[str, Any], _files: dict) -> dict[str, Any]:
        text = _rendered_text(p["text"], p.get("parse_mode"))
        if not text.strip():
            raise _bad("message text is empty")
        if len(text) > 4096:
            raise _bad("message is too long")
        return self._bot_message(p, text=text)

    def _send_media(self, kind: str, p: dict[str, Any], files: dict[str, UploadedFile]) -> dict[str, Any]:
        ref = p.get(kind)
        upload = files.get(ref[9:]) if isinstance(ref, str) and ref.startswith("attach://") else files.get(kind)
        if upload is not None:
            stored = self._store_file(upload.content, f"{kind}s", upload.filename.rpartition(".")[2] or "bin")
        else:
            stored = self._files.get(ref)  # Telegram would fetch HTTP URLs; the fake cannot
            if stored is None:
                raise _bad("wrong file identifier/HTTP URL specified")
        media: Any = self._file_fields(stored)
        if kind == "photo":
            media = [media | {"width": 1280, "height": 960}]
        elif kind == "document":
            media |= {"file_name": upload.filename if upload else "file", "mime_type":
                      upload.content_type if upload else "application/octet-stream"}
        else:
            media |= {"duration": p.get("duration", 1)}
        content: dict[str, Any] = {kind: media}
        if p.get("caption"):
            caption = _rendered_text(p["caption"], p.get("parse_mode"))
            if len(caption) > 1024:
                raise _bad("message caption is too long")
            content["caption"] = caption
        return self._bot_message(p, **content)

    def _edit_message(self, p: dict[str, Any], _files: dict) -> dict[str, Any] | bool:
        if "inline_message_id" in p:
            return True
        msg = self.messages.get((p.get("chat_id"), p.get("message_id")))  # type: ignore[arg-type]
        if msg is None:
            raise _bad("message to edit not found")
        if msg.get("from", {}).get("id") != self.bot_user["id"]:
            raise _bad("message can't be edited")
        new = dict(msg)
        new.pop("reply_markup", None)  # an edit without reply_markup removes the keyboard
        if "text" in p and "text" not in msg:
            raise _bad("there is no text in the message to edit")
        if "text" in p:
            new["text"] = _rendered_text(p["text"], p.get("parse_mode"))
        if "inline_keyboard" in p.get("reply_markup", {}):
            new["reply_markup"] = p["reply_markup"]
        self._check_buttons(new.get("reply_markup"))
        if {k: v for k, v in new.items() if k != "edit_date"} == {k: v for k, v in msg.items() if k != "edit_date"}:
            raise _bad("message is not modified: specified new message content and reply markup are exactly "
                       "the same as a current content and reply markup of the message")
        new["edit_date"] = int(time.time())
        self.messages[(msg["chat"]["id"], msg["message_id"])] = self._checked(new, "Message")
        return new

    def _delete_message(self, p: dict[str, Any], _files: dict) -> bool:
        if self.messages.pop((p["chat_id"], p["message_id"]), None) is None:
            raise _bad("message to delete not found")
        return True

    def _get_file(self, p: dict[str, Any], _files: dict) -> dict[str, Any]:
        stored = self._files.get(p["file_id"])
        if stored is None:
            raise _bad("invalid file_id")
        return self._checked(self._file_fields(stored) | {"file_path": stored.file_path}, "File")

    def _create_forum_topic(self, p: dict[str, Any], _files: dict) -> dict[str, Any]:
        chat = self._chat(p["chat_id"])
        if not chat.get("is_forum"):
            raise _bad("the chat is not a forum")
        if not 1 <= len(p["name"]) <= 128:
            raise _bad("TOPIC_NAME_INVALID")
        color = p.get("icon_color", 7322096)
        if color not in _TOPIC_COLORS:
            raise _bad("TOPIC_ICON_COLOR_INVALID")
        created = {"name": p["name"], "icon_color": color}
        # The thread id of a topic is the id of its "topic created" service message.
        service = self._new_message(chat["id"], self.bot_user, forum_topic_created=created)
        topic = {"message_thread_id": service["message_id"], **created}
        service.update(message_thread_id=topic["message_thread_id"], is_topic_message=True)
        self.topics[(chat["id"], topic["message_thread_id"])] = topic
        return self._checked(dict(topic), "ForumTopic")

    def _edit_forum_topic(self, p: dict[str, Any], _files: dict) -> bool:
        topic = self.topics.get((p["chat_id"], p["message_thread_id"]))
        if topic is None:
            raise _bad("TOPIC_ID_INVALID")
        if p.get("name", topic["name"]) == topic["name"]:
            raise _bad("TOPIC_NOT_MODIFIED")
        topic["name"] = p["name"]
        return True

    def _answer_callback_query(self, p: dict[str, Any], _files: dict) -> bool:
        query_id = p["callback_query_id"]
        if query_id not in self._open_callbacks:
            raise _bad("query is too old and response timeout expired or query ID is invalid")
        self._open_callbacks.discard(query_id)
        self.answered_callbacks[query_id] = p
        return True

    def _send_chat_action(self, p: dict[str, Any], _files: dict) -> bool:
        self._chat(p["chat_id"])
        if p["action"] not in _CHAT_ACTIONS:
            raise _bad("wrong parameter action in request")
        return True

    def _set_my_commands(self, p: dict[str, Any], _files: dict) -> bool:
        for command in p["commands"]:
            if not _COMMAND.fullmatch(command["command"]) or not 1 <= len(command["description"]) <= 256:
                raise _bad("BOT_COMMAND_INVALID")
        self.commands = p["commands"]
        return True

    # -- building objects --------------------------------------------------------------------

    def _bot_message(self, p: dict[str, Any], **content: Any) -> dict[str, Any]:
        chat = self._chat(p["chat_id"])
        thread_id = p.get("message_thread_id")
        if thread_id is not None and (chat["id"], thread_id) not in self.topics:
            raise _bad("message thread not found")
        markup = p.get("reply_markup")
        if isinstance(markup, dict) and "inline_keyboard" in markup:
            self._check_buttons(markup)
            content["reply_markup"] = markup  # only inline keyboards are echoed in the Message
        reply_to = (p.get("reply_parameters") or {}).get("message_id")
        if reply_to is not None:
            original = self.messages.get((chat["id"], reply_to))
            if original is not None:  # Telegram quotes the original, but never nests further
                content["reply_to_message"] = {k: v for k, v in original.items() if k != "reply_to_message"}
            elif not p["reply_parameters"].get("allow_sending_without_reply"):
                raise _bad("message to be replied not found")
        extra = {"is_topic_message": True} if thread_id is not None else {}
        return self._new_message(chat["id"], self.bot_user, thread_id=thread_id, **extra, **content)

    @staticmethod
    def _check_buttons(markup: dict[str, Any] | None) -> None:
        for row in (markup or {}).get("inline_keyboard", []):
            for button in row:
                if "callback_data" in button and not 1 <= len(button["callback_data"].encode()) <= 64:
                    raise _bad("BUTTON_DATA_INVALID")

    def _new_message(self, chat_id: int, sender: dict[str, Any], *, thread_id: int | None = None,
                     **content: Any) -> dict[str, Any]:
        chat = self._chat(chat_id)
        message_id = self._last_message_id.get(chat_id, 0) + 1  # message ids count per chat
        self._last_message_id[chat_id] = message_id
        msg = {"message_id": message_id, "from": sender, "chat": chat, "date": int(time.time()), **content}
        if thread_id is not None:
            msg["message_thread_id"] = thread_id
        self.messages[(chat_id, message_id)] = self._checked(msg, "Message")
        return msg

    def _private_media(self, user_id: int, caption: str | None, **media: Any) -> dict[str, Any]:
        sender = self._users.get(user_id) or self._customer(user_id, "Ana", "es")
        content = media | ({"caption": caption} if caption else {})
        return self.push_update({"message": self._new_message(user_id, sender, **content)})

    def _customer(self, user_id: int, first_name: str, language_code: str) -> dict[str, Any]:
        user = {"id": user_id, "is_bot": False, "first_name": first_name, "language_code": language_code}
        self._users[user_id] = self._checked(user, "User")
        if user_id > 0:  # the private chat carries the user's current name
            self._chats[user_id] = {"id": user_id, "type": "private", "first_name": first_name}
        return user

    def _chat(self, chat_id: int | str) -> dict[str, Any]:
        """A known chat; unknown numeric ids are taken as private (> 0) or forum supergroups (< 0)."""
        if not isinstance(chat_id, int):
            raise _bad("chat not found")  # the fake knows no @usernames
        if chat_id not in self._chats:
            if chat_id > 0:
                self._chats[chat_id] = {"id": chat_id, "type": "private", "first_name": f"User {chat_id}"}
            else:
                self.forum(chat_id)
        return self._checked(self._chats[chat_id], "Chat")

    def _store_file(self, content: bytes, folder: str, ext: str) -> _StoredFile:
        n = len(self._files) + 1
        stored = _StoredFile(f"AgAC{n}{secrets.token_hex(8)}", f"AQAD{n}", f"{folder}/file_{n}.{ext}", content)
        self._files[stored.file_id] = stored
        return stored

    @staticmethod
    def _file_fields(stored: _StoredFile) -> dict[str, Any]:
        return {"file_id": stored.file_id, "file_unique_id": stored.file_unique_id,
                "file_size": len(stored.content)}

    def _checked(self, obj: dict[str, Any], type_name: str) -> dict[str, Any]:
        self.contract.check(obj, type_name)
        return obj

    def _update_kinds(self) -> list[str]:
        return [f["name"] for f in self.contract.types["Update"]["fields"] if f["name"] != "update_id"]

    def _wake(self) -> None:
        """Wake everything waiting for news (long polls, wait_for_call)."""
        self._wakeup.set()
        self._wakeup = asyncio.Event()


@pytest.fixture
async def fake_telegram() -> AsyncIterator[FakeTelegram]:
    """A running fake; import it into a conftest.py to use it as a fixture."""
    async with FakeTelegram() as fake:
        yield fake
